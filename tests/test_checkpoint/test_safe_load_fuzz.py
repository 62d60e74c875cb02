"""Damaged checkpoints of arbitrary content: each gives the clear error that
names the file, whatever part of the zip reader or the unpickler trips on it
(before, some random byte strings escaped as ``IndexError: pop from empty
list``, and some flipped bits loaded as wrong weights)."""
import random
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

import mmc2f  # noqa: F401  registers the safe loaders
from mmc2f.checkpoint import CheckpointLoadError, safe_torch_load

PER_KIND = 40


def original() -> dict:
    """What a Runner checkpoint holds: tensors, numpy, a HistoryBuffer."""
    generator = torch.Generator().manual_seed(0)
    history = HistoryBuffer()
    history.update(0.5)
    return dict(
        state_dict={f'w{i}': torch.randn(64, generator=generator)
                    for i in range(4)},
        meta=dict(seed=np.int64(3), hist=np.arange(8, dtype=np.float32)),
        message_hub=dict(log_scalars={'loss': history}))


def damaged_files(good: bytes) -> List[Tuple[str, bytes]]:
    """(kind, content): empty, random bytes (some opening like a pickle or
    a zip, to reach deeper into the readers), truncated at spread offsets,
    and 1 to 4 flipped bits."""
    rng = random.Random(0)
    files = [('empty', b'')]
    for i in range(PER_KIND):
        noise = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 500)))
        files.append(('random', [b'', b'\x80\x02', b'PK\x03\x04'][i % 3]
                      + noise))
    for i in range(PER_KIND):
        end = (i + 1) * len(good) // (PER_KIND + 1)
        files.append(('truncated', good[:end]))
    for _ in range(PER_KIND):
        flipped = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            flipped[rng.randrange(len(good))] ^= 1 << rng.randrange(8)
        files.append(('flipped', bytes(flipped)))
    return files


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, HistoryBuffer):
        return same(a.data, b.data)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return np.array_equal(a, b)


# Random bytes may name any pickle protocol; torch warns before it fails.
@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
def test_every_damaged_file_is_a_clear_error(tmp_path):
    good_path = tmp_path / 'good.pth'
    torch.save(original(), good_path)
    good = good_path.read_bytes()
    files = damaged_files(good)
    assert len(files) >= 100
    outcomes: Dict[str, Dict[str, int]] = {}
    for i, (kind, content) in enumerate(files):
        path = str(tmp_path / f'{kind}_{i}.pth')
        with open(path, 'wb') as f:
            f.write(content)
        try:
            # mmengine's entry point, as Pretrained, --resume and test use.
            loaded = CheckpointLoader.load_checkpoint(path)
        except CheckpointLoadError as e:
            assert path in str(e) and 'truncated or corrupt' in str(e), e
            outcome = 'refused'
        else:
            # Only a flip in bytes that no reader uses (a zip timestamp, the
            # padding) may load, and then it must load the original.
            assert kind == 'flipped', (kind, i)
            assert same(loaded, safe_torch_load(str(good_path))), i
            outcome = 'harmless'
        outcomes.setdefault(kind, {}).setdefault(outcome, 0)
        outcomes[kind][outcome] += 1
    # Most flips land in data the checksums cover.
    assert outcomes['flipped'].get('harmless', 0) < PER_KIND // 4, outcomes


def test_flipped_tensor_bit_is_caught_by_the_checksum(tmp_path):
    """torch.load itself would return the wrong weight."""
    path = str(tmp_path / 'w.pth')
    torch.save({'w': torch.zeros(1000)}, path)
    data = bytearray(open(path, 'rb').read())
    # Within the 4000 zero bytes of the tensor's record.
    start = bytes(data).index(bytes(4000))
    data[start + 2001] ^= 0x40
    with open(path, 'wb') as f:
        f.write(data)
    assert torch.load(path)['w'].abs().sum() > 0  # silently wrong
    with pytest.raises(CheckpointLoadError, match='Bad CRC-32') as e:
        safe_torch_load(path)
    assert path in str(e.value)


def test_checkpoint_saved_without_crc_still_loads(tmp_path):
    """A file written with torch's CRC-32 turned off has zeros for its
    checksums; they are not taken for damage."""
    path = str(tmp_path / 'nocrc.pth')
    torch.serialization.set_crc32_options(False)
    try:
        torch.save({'w': torch.arange(4.)}, path)
    finally:
        torch.serialization.set_crc32_options(True)
    assert torch.equal(safe_torch_load(path)['w'], torch.arange(4.))
