# Copyright (c) mmc2f contributors. All rights reserved.
"""Building the benchmarked models and their inputs.

``--models`` names (letters n t s b l = nano tiny small base large):

* A ``+cp`` suffix (``conv2former-t+cp``) turns on gradient checkpointing
  for that model only, so one run compares a model with and without it.
* A ``+compile`` suffix (``conv2former-t+compile``, ``convnext-t+compile``,
  also ``conv2former-t+cp+compile``) times the model through
  ``torch.compile(module, dynamic=False)`` (default mode, static shapes);
  the entry's ``module`` stays the uncompiled one (``.to()``, ``train()``,
  parameters), which the compiled one shares. It compiles at its first
  call in each mode (grad or inference, autocast or not, train or eval):
  in the output check and the
  warm-up, both untimed, so the timed rounds run compiled code.
* A ``+unfused`` suffix (``conv2former-t+unfused``) runs mmc2f's model
  with its fast paths off (``mmc2f.ops.forced('reference')``: neither the
  Triton op of the modulation nor the fused CPU engine): the same model's
  reference ops, in the same run.
* ``conv2former-X``: mmc2f's :class:`~mmc2f.models.Conv2Former`, all four
  stage outputs, no output norms (``out_norm=False``, as the released code).
* ``released-X``: the authors' released forward pass, as re-implemented in
  :mod:`mmc2f.toolkit.released_reference` (plain ``torch.nn.functional``,
  five-pass channels-first layer norm), backbone only (no classifier head).
* ``convnext-{t,s,b,l}`` / ``swin-{t,s,b,l}``: mmpretrain's ``ConvNeXt`` and
  ``SwinTransformer``, all four stage outputs with their output norms, as
  detection uses them (Swin with ``pad_small_map=True``: feature maps are
  padded to the 7x7 window, so any input size works).

A config (``--config``) is timed as its whole model, no checkpoint, on a
synthetic batch that went through its data preprocessor once (not timed):
``mode='predict'`` for inference, ``mode='loss'`` (random targets) with
``--train``. It is labelled by its file name.

Same weights: every ``conv2former-X`` and ``released-X`` loads one random
released-format state dict per arch (``make_released_state_dict``, O(1)
values so every path matters).
"""
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmc2f.toolkit.released_reference import released_stages

from .spec import RunSpec, parse_model_name


class ReleasedBackbone(nn.Module):
    """A released-format state dict as a module (``.to()``, parameters for
    ``--train``), running the released stem and stages."""

    def __init__(self, sd: Dict[str, torch.Tensor], depths: Sequence[int]):
        super().__init__()
        self.depths = list(depths)
        self.names: List[Tuple[str, str]] = []
        for key, value in sd.items():
            if not key.startswith(('downsample_layers', 'stages')):
                continue
            name = key.replace('.', '__')
            if key.rsplit('.', 1)[-1] in ('running_mean', 'running_var',
                                          'num_batches_tracked'):
                self.register_buffer(name, value.clone())
            else:
                self.register_parameter(name, nn.Parameter(value.clone()))
            self.names.append((key, name))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        sd = {key: getattr(self, name) for key, name in self.names}
        return tuple(released_stages(sd, x, self.depths))


def _mean_loss(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(out.float().mean() for out in outputs)


class Entry:
    """One benchmarked model: the module, how to call it and its input, and
    what was measured of it."""

    def __init__(self, label: str, kind: str, module: nn.Module,
                 inputs: tuple, batch: int, input_desc: str,
                 forward: Optional[Callable] = None,
                 loss: Optional[Callable] = None,
                 arch: Optional[str] = None, with_cp: bool = False):
        self.label, self.kind, self.module = label, kind, module
        self.inputs, self.batch, self.input_desc = inputs, batch, input_desc
        # Not `forward or ...`: a compiled module's truth calls len().
        self.forward = forward if forward is not None else (
            lambda *xs: module(*xs))
        self.loss = loss or _mean_loss
        self.arch, self.with_cp = arch, with_cp
        self.times: List[float] = []
        self.err: Optional[float] = None
        self.amp_err: Optional[float] = None
        self.peak_mib: Optional[float] = None
        self.peak_note = ''


_STATE_DICTS: Dict[str, dict] = {}


def released_state_dict(arch: str) -> dict:
    """One random released-format state dict per arch, shared by the
    conv2former and released models of that arch."""
    if arch not in _STATE_DICTS:
        from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
        from mmc2f.toolkit.released_reference import make_released_state_dict
        s = ARCH_SETTINGS[arch]
        _STATE_DICTS[arch] = make_released_state_dict(
            s['channels'], s['depths'], s['kernel_size'], seed=0)
    return _STATE_DICTS[arch]


def build_backbone(name: str, with_cp: bool) -> Tuple[nn.Module, str, bool]:
    """(module, arch, whether it checkpoints) for a --models name."""
    family, arch, cp_suffix, *_ = parse_model_name(name)
    with_cp = with_cp or cp_suffix
    if family in ('conv2former', 'released'):
        from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
        sd = released_state_dict(arch)
        if family == 'released':
            return ReleasedBackbone(sd, ARCH_SETTINGS[arch]['depths']), \
                arch, False
        from mmc2f.models import Conv2Former
        model = Conv2Former(arch, out_indices=(0, 1, 2, 3), with_cp=with_cp)
        model.load_state_dict({
            k: v
            for k, v in sd.items()
            if k.startswith(('downsample_layers', 'stages'))
        })
        return model, arch, with_cp
    torch.manual_seed(0)
    if family == 'convnext':
        from mmpretrain.models import ConvNeXt
        return ConvNeXt(arch=arch, out_indices=(0, 1, 2, 3),
                        gap_before_final_norm=False, drop_path_rate=0.,
                        with_cp=with_cp), arch, with_cp
    from mmpretrain.models import SwinTransformer
    return SwinTransformer(arch=arch, out_indices=(0, 1, 2, 3),
                           drop_path_rate=0., pad_small_map=True,
                           with_cp=with_cp), arch, with_cp


def _unfused(forward: Callable) -> Callable:
    """``forward`` with the reference ops only."""
    from mmc2f.ops import forced

    def call(*inputs: torch.Tensor):
        with forced('reference'):
            return forward(*inputs)
    return call


def shape_str(shape: Sequence[int]) -> str:
    return 'x'.join(map(str, shape))


def build_config_entry(path: str, run: RunSpec,
                       device: torch.device) -> Entry:
    """The whole model of a config with a preprocessed synthetic batch."""
    from mmc2f.toolkit.config_model import build_model, load_config
    cfg = load_config(path, run.cfg_options)
    if run.with_cp:
        cfg.model.backbone.with_cp = True
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    scope = cfg.default_scope
    n, c, h, w = run.shape
    data = _config_batch(model, scope, n, c, h, w)
    data = model.data_preprocessor(data, training=run.train)
    inputs, samples = data['inputs'], data['data_samples']
    mode = 'loss' if run.train else 'predict'

    def forward(x: torch.Tensor, data_samples: list):
        return model(x, data_samples, mode=mode)

    def loss(losses: dict) -> torch.Tensor:
        return model.parse_losses(losses)[0]

    label = osp.splitext(osp.basename(path))[0]
    return Entry(label, 'config', model, (inputs, samples), n,
                 shape_str(inputs.shape), forward, loss,
                 with_cp=run.with_cp)


def _config_batch(model: nn.Module, scope: str, n: int, c: int, h: int,
                  w: int) -> dict:
    """A batch as the dataloader gives it, with random targets."""
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (c, h, w), dtype=torch.uint8,
                            generator=g) for _ in range(n)]
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        data = demo_mm_inputs(n, [(c, h, w)] * n, num_items=[3] * n,
                              num_classes=2, with_mask=True)
        for sample in data['data_samples']:  # class 0: valid for any head
            sample.gt_instances.labels.zero_()
        data['inputs'] = images
        return data
    samples = []
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        classes = model.decode_head.num_classes
        for _ in range(n):
            sample = SegDataSample(metainfo=meta)
            sample.gt_sem_seg = PixelData(data=torch.randint(
                0, classes, (1, h, w), generator=g))
            samples.append(sample)
    else:
        from mmpretrain.structures import DataSample
        classes = model.head.num_classes
        for _ in range(n):
            # num_classes: for the preprocessor's one-hot labels (mixup).
            samples.append(DataSample(
                metainfo=dict(meta, num_classes=classes)).set_gt_label(
                int(torch.randint(0, classes, (1, ), generator=g))))
    return dict(inputs=images, data_samples=samples)


def build_entries(run: RunSpec, device: torch.device,
                  only: Optional[int] = None) -> List[Entry]:
    """The entries of the run's models then configs (only the one at
    `only`), on the device, in the run's memory format."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*run.shape, generator=g)
    if run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.to(device)
    entries = []
    names = [('model', n) for n in run.models] + \
        [('config', c) for c in run.configs]
    for i, (what, name) in enumerate(names):
        if only is not None and i != only:
            continue
        if what == 'config':
            entries.append(build_config_entry(name, run, device))
            continue
        module, arch, cp = build_backbone(name, run.with_cp)
        parsed = parse_model_name(name)
        module = module.to(device)
        # Static shapes: a benchmark times one shape, and an earlier
        # compile of the same code at another shape would otherwise make
        # dynamo recompile with symbolic sizes (slower kernels, and an
        # Inductor failure in the backward pass of torch 2.14).
        forward = torch.compile(module, dynamic=False) \
            if parsed.compile else None
        if parsed.unfused:
            forward = _unfused(forward if forward is not None else module)
        entries.append(Entry(name, parsed.family, module, (x, ),
                             run.shape[0], shape_str(run.shape), forward,
                             arch=arch, with_cp=cp))
    for entry in entries:
        if run.channels_last:
            entry.module.to(memory_format=torch.channels_last)
            if entry.kind == 'config':
                entry.inputs = (entry.inputs[0].contiguous(
                    memory_format=torch.channels_last), ) + entry.inputs[1:]
    return entries
