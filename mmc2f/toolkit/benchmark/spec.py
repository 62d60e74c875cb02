# Copyright (c) mmc2f contributors. All rights reserved.
"""One benchmark run as data: what the command line's options say, checked
and completed once (:meth:`RunSpec.resolved`), then read by every part."""
import dataclasses
import os.path as osp
import re
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

SIZES = dict(n='nano', t='tiny', s='small', b='base', l='large')
# Model families of --models and the sizes each has.
FAMILIES = {
    'conv2former': 'ntsbl',
    'released': 'ntsbl',
    'convnext': 'tsbl',
    'swin': 'tsbl',
}


class ModelName(NamedTuple):
    """A ``--models`` name, parsed."""
    family: str
    arch: str
    cp: bool  # ``+cp``: gradient checkpointing
    compile: bool  # ``+compile``: timed through ``torch.compile``
    unfused: bool = False  # ``+unfused``: without the Triton kernel


def parse_model_name(name: str) -> ModelName:
    """``family-X`` with the suffixes ``+cp``, ``+compile`` and ``+unfused``,
    each at most once, in any order."""
    match = re.fullmatch(
        r'([a-z0-9]+)-([a-z])((?:\+cp|\+compile|\+unfused)*)', name)
    suffixes = match.group(3).split('+')[1:] if match else []
    if not match or match.group(1) not in FAMILIES or \
            match.group(2) not in FAMILIES[match.group(1)] or \
            len(set(suffixes)) != len(suffixes):
        valid = ', '.join(f'{f}-{{{",".join(s)}}}'
                          for f, s in FAMILIES.items())
        raise ValueError(f'Unknown model {name!r}; valid: {valid}, each '
                         'with the optional suffixes +compile, +cp (not '
                         'released-*) and +unfused (conv2former-* only), in '
                         'any order')
    if 'cp' in suffixes and match.group(1) == 'released':
        raise ValueError(f'{name}: the released code has no gradient '
                         'checkpointing')
    if 'unfused' in suffixes and match.group(1) != 'conv2former':
        raise ValueError(f'{name}: +unfused turns off the Triton kernel of '
                         "mmc2f's conv2former-*, which the others lack")
    return ModelName(match.group(1), SIZES[match.group(2)],
                     'cp' in suffixes, 'compile' in suffixes,
                     'unfused' in suffixes)


@dataclass(frozen=True)
class RunSpec:
    """One run: models and configs timed side by side on one input, or
    (``floor``) one arch's depthwise conv and modulation against the
    memory-bandwidth floor.

    Attributes:
        models: ``--models`` names (see :mod:`.models`).
        configs: Config files whose whole model is timed (``--config``).
        cfg_options: Overrides for the configs.
        shape: Input N C H W (H W before :meth:`resolved`: N=1, C=3).
        repeats: Timed rounds (every model once per round).
        warmup: Untimed calls per model before the rounds.
        baseline: The label the ratios divide by (default: the first).
        channels_last: Models and input in channels-last memory format.
        cudnn_benchmark: ``torch.backends.cudnn.benchmark``: cuDNN times
            its algorithms at each new shape (in the warm-up) and keeps the
            fastest, instead of choosing by heuristics.
        amp: Under autocast, in ``amp_dtype`` (default: bf16 on CPU, fp16
            on CUDA).
        device: ``'cpu'`` or ``'cuda'``.
        threads: ``torch.set_num_threads`` (None: torch's).
        train: A forward and backward per call, and peak memory.
        with_cp: Gradient checkpointing for every model that has it.
        markdown: Tables in markdown.
        floor: Instead of models, the arch (a Conv2Former preset or its
            letter) whose depthwise conv and modulation are profiled
            against the memory-bandwidth floor (``--floor``, :mod:`.floor`).
        op: Instead of models, the arch whose ``dwconv_modulate`` is timed
            forward and backward, every way, against its floors (``--op``,
            :mod:`.op`).
    """
    models: Tuple[str, ...] = ()
    configs: Tuple[str, ...] = ()
    cfg_options: Optional[dict] = None
    shape: Tuple[int, ...] = (1, 3, 224, 224)
    repeats: int = 10
    warmup: int = 3
    baseline: Optional[str] = None
    channels_last: bool = False
    cudnn_benchmark: bool = False
    amp: bool = False
    amp_dtype: Optional[str] = None
    device: str = 'cpu'
    threads: Optional[int] = None
    train: bool = False
    with_cp: bool = False
    markdown: bool = False
    floor: Optional[str] = None
    op: Optional[str] = None

    def labels(self) -> List[str]:
        """The table's model labels: the --models names, then the configs'
        file names."""
        return list(self.models) + [
            osp.splitext(osp.basename(c))[0] for c in self.configs
        ]

    def resolved(self) -> 'RunSpec':
        """The run checked (ValueError says what is wrong) and its defaults
        filled in."""
        shape = tuple(self.shape)
        if len(shape) == 2:
            shape = (1, 3) + shape
        if len(shape) != 4:
            raise ValueError('--shape takes N C H W (or H W)')
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError('--repeats must be >= 1 and --warmup >= 0')
        amp_dtype = self.amp_dtype or ('fp16' if self.device == 'cuda' else
                                       'bf16')
        if self.floor is not None or self.op is not None:
            return self._resolved_profile(shape, amp_dtype)
        if not self.models and not self.configs:
            raise ValueError('nothing to time: give --models and/or --config')
        names = [parse_model_name(name) for name in self.models]
        if self.warmup < 1 and any(name.compile for name in names):
            raise ValueError('+compile needs --warmup >= 1: the first calls '
                             'compile')
        labels = self.labels()
        if len(set(labels)) != len(labels):
            raise ValueError(f'a model is named twice: {labels}')
        baseline = self.baseline or labels[0]
        if baseline not in labels:
            raise ValueError(f'--baseline {baseline} is not among {labels}')
        return dataclasses.replace(self, shape=shape, amp_dtype=amp_dtype,
                                   baseline=baseline)

    def _resolved_profile(self, shape: Tuple[int, ...],
                          amp_dtype: str) -> 'RunSpec':
        """The floor or op profile: one arch, nothing else timed (the op
        profile times the backward itself)."""
        option = '--floor' if self.floor is not None else '--op'
        if self.floor is not None and self.op is not None:
            raise ValueError('--floor and --op are two runs: give one')
        if self.models or self.configs or self.train:
            raise ValueError(f'{option} profiles one arch: no --models, '
                             '--config or --train with it')
        if min(shape[2:]) < 32:
            raise ValueError(f'{option} needs H and W >= 32 (the last '
                             "stage's stride)")
        name = self.floor if self.floor is not None else self.op
        arch = SIZES.get(name, name)
        if arch not in SIZES.values():
            raise ValueError(f'{option} {name}: not one of '
                             f'{", ".join(SIZES.values())} (or n t s b l)')
        which = 'floor' if self.floor is not None else 'op'
        return dataclasses.replace(self, shape=shape, amp_dtype=amp_dtype,
                                   **{which: arch})
