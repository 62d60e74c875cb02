# Copyright (c) mmc2f contributors. All rights reserved.
"""Effective receptive field (ERF) of each backbone stage (paper Table 5 and
Fig. 4), computed the way RepLKNet (Ding et al., CVPR 2022) computes it.

    python tools/analysis/erf.py --model conv2former-t [--checkpoint CKPT]
        [--images DIR] [--num-images 50] [--size 1024] [--out erf.png]
    python tools/analysis/erf.py --model convnext-t ...

For each image (resized to ``--size`` x ``--size``, bicubic, ImageNet
mean/std), the backbone's stage outputs are computed; for each stage the
centre position's channels, after a ReLU, are summed, and the gradient of that
sum w.r.t. the input is taken. RepLKNet's ``visualize_erf.py`` keeps the
positive part of the gradient (``relu(grad)``) summed over the channels
(``--grad relu``, the default; ``--grad abs`` sums ``|grad|`` instead). The
maps are averaged over the images (RepLKNet's ``AverageMeter``).

The heatmap shows ``log10(contribution + 1)`` rescaled to [0, 1]. The table is
RepLKNet's ``analyze_erf.py`` metric: for a threshold t, the side of the
smallest centred square holding more than a fraction t of the total
contribution, and its area ratio ``side^2 / (size * size)``. RepLKNet
measures it on the log-rescaled map above (``--metric-on log``, the default);
``--metric-on raw`` measures it on the contribution itself. Printed for
t = 0.5, 0.75 and the mean over t = 0.5, 0.55, ..., 0.9 (the paper's Table 5
columns). Squares start at side 1 (RepLKNet's loop starts at 3); a threshold
not reached by the largest centred square inside the image gives the whole
image (side ``size``, 100%).

Models: ``conv2former-{n,t,s,b,l}`` (``mmc2f.Conv2Former``) and
``convnext-{t,s,b}`` (``mmpretrain.ConvNeXt``), random-initialised (each
model's own initialisation) unless ``--checkpoint`` is given: a converted
mmc2f / mmpretrain checkpoint whose backbone keys start with ``--prefix``
(default ``backbone.``). The stage outputs are taken before any output norm,
as RepLKNet's ``forward_features`` does for its models.

Without ``--images``, the sample photos shipped with installed packages
(matplotlib's, scikit-learn's, and any OpenMMLab ``demo`` images) are used,
so no download is needed (three photos here; with fewer images than
``--num-images``, their mirror images are added, up to twice as many);
RepLKNet used 50 ImageNet validation images.
"""
import argparse
import glob
import importlib.util
import os
import os.path as osp
import sys
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
# Table 5's columns: t = 0.5, t = 0.75 and the mean over 0.5..0.9 step 0.05.
MEAN_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.9 + 1e-9, 0.05), 2))

CONV2FORMER_ARCHS = {'n': 'nano', 't': 'tiny', 's': 'small', 'b': 'base',
                     'l': 'large'}
CONVNEXT_ARCHS = {'t': 'tiny', 's': 'small', 'b': 'base'}
MODELS = ([f'conv2former-{k}' for k in CONV2FORMER_ARCHS] +
          [f'convnext-{k}' for k in CONVNEXT_ARCHS])

# Photos shipped with installed packages, relative to the package's folder.
_PACKAGE_IMAGES = {
    'mmdet': ('.mim/demo', 'demo'),
    'mmseg': ('.mim/demo', 'demo'),
    'mmpretrain': ('.mim/demo', 'demo'),
    'mmcv': ('.mim/demo', 'demo'),
    'matplotlib': ('mpl-data/sample_data/grace_hopper.jpg', ),
    'sklearn': ('datasets/images', ),
}


def _package_dir(name: str) -> Optional[str]:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def list_images(folder: str) -> List[str]:
    return sorted(
        p for p in glob.glob(osp.join(folder, '**', '*'), recursive=True)
        if p.lower().endswith(IMAGE_EXTS) and osp.isfile(p))


def default_images() -> List[str]:
    """Natural photos that installed packages ship (no download)."""
    found = []
    for package, rel_paths in _PACKAGE_IMAGES.items():
        root = _package_dir(package)
        if root is None:
            continue
        for rel in rel_paths:
            path = osp.join(root, rel)
            if osp.isfile(path):
                found.append(path)
            elif osp.isdir(path):
                found.extend(list_images(path))
    return found


def load_image(path: str, size: int, mirror: bool = False) -> torch.Tensor:
    """(1, 3, size, size) float tensor: RGB, bicubic resize, ImageNet
    mean/std (RepLKNet's transform); ``mirror`` flips it left-right."""
    from PIL import Image
    with Image.open(path) as img:
        img = img.convert('RGB').resize((size, size), Image.BICUBIC)
        if mirror:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        array = np.asarray(img, dtype=np.float32) / 255.
    array = (array - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(array.transpose(2, 0, 1).copy())[None]


def quiet_mmengine_logger() -> None:
    """A current mmengine logger at WARNING level, so init_weights does not
    print one line per parameter (warnings of partial loads still show)."""
    from mmengine.logging import MMLogger
    MMLogger.get_instance(f'erf-{os.getpid()}', log_level='WARNING')


def build_backbone(model: str, checkpoint: Optional[str],
                   prefix: str) -> nn.Module:
    quiet_mmengine_logger()
    family, _, size = model.partition('-')
    if family == 'conv2former' and size in CONV2FORMER_ARCHS:
        from mmc2f.models import Conv2Former
        init_cfg = None
        if checkpoint:
            init_cfg = dict(type='Pretrained', checkpoint=checkpoint,
                            prefix=prefix or None)
        backbone = Conv2Former(CONV2FORMER_ARCHS[size],
                               out_indices=(0, 1, 2, 3), init_cfg=init_cfg)
        backbone.init_weights()  # loads the checkpoint, if any
    elif family == 'convnext' and size in CONVNEXT_ARCHS:
        import mmc2f  # noqa: F401  (safe local checkpoint loading)
        from mmc2f.checkpoint import load_pretrained
        from mmpretrain.models import ConvNeXt
        backbone = ConvNeXt(CONVNEXT_ARCHS[size], out_indices=(0, 1, 2, 3),
                            gap_before_final_norm=False)
        backbone.init_weights()
        if checkpoint:
            load_pretrained(backbone, checkpoint, prefix or None)
    else:
        raise ValueError(f'unknown model {model!r}; choose from {MODELS}')
    if checkpoint:
        print(f'Loaded the {model} backbone from {checkpoint}')
    backbone.eval()  # no stochastic depth; fixed norms
    return backbone


def stage_outputs(backbone: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """The raw output of every stage (before any output norm): both
    Conv2Former and mmpretrain's ConvNeXt are ``downsample_layers[i]``
    followed by ``stages[i]``."""
    outs = []
    for down, stage in zip(backbone.downsample_layers, backbone.stages):
        x = stage(down(x))
        outs.append(x)
    return outs


def input_grad_maps(backbone: nn.Module, x: torch.Tensor,
                    stages: Sequence[int], grad_mode: str) -> List[np.ndarray]:
    """Per stage, the (H, W) contribution of the input pixels to the ReLU'd
    centre position of the stage's output (RepLKNet's get_input_grad)."""
    x = x.clone().requires_grad_(True)
    outs = stage_outputs(backbone, x)
    maps = []
    for n, i in enumerate(stages):
        out = outs[i]
        h, w = out.shape[2:]
        central_point = torch.relu(out[:, :, h // 2, w // 2]).sum()
        (grad, ) = torch.autograd.grad(
            central_point, x, retain_graph=n < len(stages) - 1)
        grad = torch.relu(grad) if grad_mode == 'relu' else grad.abs()
        maps.append(grad.sum((0, 1)).cpu().double().numpy())
    return maps


def log_rescale(contribution: np.ndarray) -> np.ndarray:
    """``log10(x + 1)`` rescaled to [0, 1] (RepLKNet's analyze_erf)."""
    data = np.log10(contribution + 1)
    peak = data.max()
    return data / peak if peak > 0 else data


def get_rectangle(data: np.ndarray, thresh: float) -> Tuple[int, float]:
    """Side of the smallest centred square whose share of ``data.sum()``
    exceeds ``thresh``, and its area ratio ``side^2 / (H * W)``."""
    h, w = data.shape
    total = data.sum()
    if total > 0:
        for i in range(0, min(h, w) // 2):
            square = data[h // 2 - i:h // 2 + i + 1, w // 2 - i:w // 2 + i + 1]
            if square.shape != (2 * i + 1, 2 * i + 1):
                break  # the square no longer fits in the image
            if square.sum() / total > thresh:
                side = 2 * i + 1
                return side, side * side / (h * w)
    return min(h, w), 1.0


def analyze_erf(data: np.ndarray) -> dict:
    """Table 5's numbers: side and area ratio at t = 0.5, 0.75 and their
    means over t = 0.5..0.9 step 0.05."""
    results = {t: get_rectangle(data, t) for t in MEAN_THRESHOLDS}
    return dict(
        side=(results[0.5][0], results[0.75][0],
              float(np.mean([r[0] for r in results.values()]))),
        ratio=(results[0.5][1], results[0.75][1],
               float(np.mean([r[1] for r in results.values()]))))


def format_table(rows: Sequence[Tuple[int, dict]]) -> str:
    lines = [
        '| stage | side t=0.5 | side t=0.75 | side mean(0.5:0.9) '
        '| area t=0.5 (%) | area t=0.75 (%) | area mean(0.5:0.9) (%) |',
        '|---|---|---|---|---|---|---|',
    ]
    for stage, m in rows:
        side, ratio = m['side'], m['ratio']
        lines.append(
            f'| {stage} | {side[0]} | {side[1]} | {side[2]:.1f} '
            f'| {100 * ratio[0]:.1f} | {100 * ratio[1]:.1f} '
            f'| {100 * ratio[2]:.1f} |')
    return '\n'.join(lines)


def save_heatmaps(heatmaps: Sequence[np.ndarray], titles: Sequence[str],
                  out: str, suptitle: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    # RepLKNet's look: seaborn's RdYlGn centred at 0, so that [0, 1] spans
    # its yellow-to-green half.
    cmap = ListedColormap(plt.get_cmap('RdYlGn')(np.linspace(0.5, 1, 256)))
    n = len(heatmaps)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 4.3), squeeze=False,
                             layout='constrained')
    for ax, data, title in zip(axes[0], heatmaps, titles):
        im = ax.imshow(data, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes[0]), orientation='horizontal',
                 fraction=0.05, shrink=0.5)
    fig.suptitle(suptitle, fontsize=11)
    out_dir = osp.dirname(osp.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Effective receptive field per stage (RepLKNet method)')
    parser.add_argument('--model', default='conv2former-t', choices=MODELS)
    parser.add_argument('--checkpoint', help='converted checkpoint; random '
                        'init without it')
    parser.add_argument('--prefix', default='backbone.',
                        help='key prefix of the backbone in the checkpoint '
                        '("" for a bare backbone state dict)')
    parser.add_argument('--images', help='folder of images (searched '
                        'recursively); default: photos of installed packages')
    parser.add_argument('--num-images', type=int, default=50,
                        help='images to average over (RepLKNet: 50)')
    parser.add_argument('--size', type=int, default=1024,
                        help='input side after resizing (RepLKNet: 1024)')
    parser.add_argument('--stages', type=int, nargs='+', default=[0, 1, 2, 3])
    parser.add_argument('--grad', choices=('relu', 'abs'), default='relu',
                        help='keep the positive gradient (RepLKNet) or its '
                        'absolute value')
    parser.add_argument('--metric-on', choices=('log', 'raw'), default='log',
                        help='measure the squares on log10(x+1)/max '
                        '(RepLKNet) or on the raw contribution')
    parser.add_argument('--out', default='erf.png', help='heatmap PNG')
    parser.add_argument('--save-npy', help='save the averaged contribution '
                        'maps (stages x H x W) to this .npy file')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the random initialisation')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error('--num-images must be >= 1')
    if args.size < 32:
        parser.error('--size must be >= 32 (four stages downsample 32x)')
    if any(not 0 <= s <= 3 for s in args.stages):
        parser.error('--stages must be in 0..3')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    stages = sorted(set(args.stages))
    if args.images:
        images = list_images(args.images)
        if not images:
            sys.exit(f'no image ({", ".join(IMAGE_EXTS)}) under {args.images}')
    else:
        images = default_images()
        if not images:
            sys.exit('no package sample image found; pass --images DIR')
    # (path, mirrored): with too few images, their mirror images follow.
    samples = [(p, False) for p in images] + [(p, True) for p in images]
    if len(images) < args.num_images:
        print(f'Warning: only {len(images)} images available; '
              f'{min(args.num_images, 2 * len(images)) - len(images)} of '
              'their mirror images used as well')
    samples = samples[:args.num_images]

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    backbone = build_backbone(args.model, args.checkpoint,
                              args.prefix).to(device)
    init = (f'checkpoint {args.checkpoint}' if args.checkpoint else
            'random init')

    sums = [None] * len(stages)
    count = 0
    start = time.time()
    for path, mirror in samples:
        x = load_image(path, args.size, mirror).to(device)
        maps = input_grad_maps(backbone, x, stages, args.grad)
        if any(np.isnan(m.sum()) for m in maps):
            print(f'NaN gradient on {path}, skipped')
            continue
        sums = [m if s is None else s + m for s, m in zip(sums, maps)]
        count += 1
    if count == 0:
        sys.exit('every image gave NaN gradients')
    contributions = [s / count for s in sums]  # RepLKNet averages

    heatmaps = [log_rescale(c) for c in contributions]
    measured = heatmaps if args.metric_on == 'log' else contributions
    rows = [(stage, analyze_erf(data)) for stage, data in
            zip(stages, measured)]

    print(f'ERF of {args.model} ({init}), {count} image(s) at '
          f'{args.size}x{args.size}, grad={args.grad}, squares measured on '
          f'{"log10(x+1)/max" if args.metric_on == "log" else "raw"} '
          f'contribution ({time.time() - start:.1f} s)')
    print(format_table(rows))

    titles = [
        f'stage {s}: side {m["side"][0]} / {m["side"][1]} px (t=0.5/0.75)'
        for s, m in rows
    ]
    save_heatmaps(heatmaps, titles, args.out,
                  f'ERF {args.model} ({init}), {count} image(s), '
                  f'{args.size}px, log10(x+1) rescaled')
    print(f'Saved {len(heatmaps)} heatmap panels to {args.out}')
    if args.save_npy:
        np.save(args.save_npy, np.stack(contributions))
        print(f'Saved contribution maps to {args.save_npy}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
