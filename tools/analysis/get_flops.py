# Copyright (c) mmc2f contributors. All rights reserved.
"""Parameters and FLOPs of the model of an mmc2f config.

    python tools/analysis/get_flops.py CONFIG [--shape H W] [--cfg-options ..]
    python tools/analysis/get_flops.py --paper

``--paper`` measures every config with a number in the paper against it,
the numbers read from :mod:`mmc2f.paper`.

FLOPs are multiply-adds, as the paper and MMDetection / MMSegmentation /
MMPretrain count them: mmengine's jit-traced ``FlopAnalyzer`` (what
``mmengine.analysis.get_model_complexity_info`` returns as ``flops``; it is
called directly here to skip that function's second, activation-counting
trace). Convolutions, linear layers and matmuls count one FLOP per
multiply-add; norms about 5 per element (2 for eval BN); bilinear upsampling 4
per output element; element-wise ops (GELU, the Hadamard product A*V, adds)
and custom autograd ops (mmcv's RoIAlign, NMS) are not counted. The ops left
uncounted are listed after the numbers.

What is counted follows each library's own ``get_flops.py`` (in its
``.mim/tools/analysis_tools``), dispatched on the config's ``default_scope``:

* mmdet: a packed image (``--shape``, default H=800 W=1280, the Swin/ConvNeXt
  convention) goes through the data preprocessor, then ``forward(mode=
  'tensor')`` (``_forward``): backbone, neck, RPN head, the RPN's proposals
  (up to its test ``max_per_img``, 1000) through the RoI heads, masks on the
  first 100 RoIs. mmdet 3.3's ``CascadeRoIHead.forward`` runs its mask
  heads on all the RoIs (x10 mask FLOPs: Cascade Mask R-CNN T 2168G instead
  of 738G), where its ``StandardRoIHead.forward`` and mmdet 2.x's
  ``forward_dummy`` (which counted the paper's, Swin's and ConvNeXt's
  numbers) take the first 100: the cascade's mask heads also get the first
  100 here, unless ``--all-mask-rois``.
* mmseg: ``forward(mode='tensor')`` of a random image (default H=512 W=2048)
  without the auxiliary head, which mmseg's tool drops (also from params);
  for a mask-classification head (Mask2Former), which mmseg's tool refuses,
  the backbone and the head given the image's sample.
* mmpretrain: the whole ``ImageClassifier`` (backbone, neck, head) at 224.

The backbone's ``init_cfg`` is cleared (no checkpoint is loaded): weights do
not change the count, except through the number of RPN proposals, which
is printed.
"""
import argparse
import importlib
import inspect
import os.path as osp
import sys
import time
from collections import Counter
from functools import partial
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction

from mmc2f.toolkit.config_model import build_model, load_config
from mmc2f.paper import DOWNSTREAM, IMAGENET

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Input (H, W) by library when --shape is not given.
DEFAULT_SHAPES: Dict[str, Tuple[int, int]] = {
    'mmdet': (800, 1280),
    'mmseg': (512, 2048),
    'mmpretrain': (224, 224),
}


class PaperTarget(NamedTuple):
    """A config that ``--paper`` measures, and the figures to compare."""
    config: str  # under the repository, or 'mmdet::' / 'mmseg::' ...
    params: Optional[float]  # M; None: the paper gives none
    flops: float  # G (multiply-adds) at `shape`
    shape: Tuple[int, int]  # input (H, W)
    also: Sequence[Tuple[int, int]]  # further inputs, for comparison only
    source: str


def paper_targets() -> List[PaperTarget]:
    """The configs with a paper number (mmc2f.paper), in its order: the
    ImageNet models counted on the published code, against that count (for
    N 2.33G, where the paper's text says 2.2G), then the downstream configs
    (ours, then the ConvNeXt-T baselines, which check the convention)."""
    targets = []
    for r in IMAGENET:
        if r.published_flops is None:
            continue
        source = r.source
        if r.counted_flops_differ:
            source += f'; FLOPs of the published code (paper: {r.flops:g}G)'
        targets.append(PaperTarget(
            r.config, r.published_params or r.params, r.published_flops,
            (r.resolution, r.resolution), (), source))
    targets += [
        PaperTarget(r.config, r.params, r.flops, r.shape, r.also, r.source)
        for r in DOWNSTREAM
    ]
    return targets


PAPER: List[PaperTarget] = paper_targets()


def config_path(name: str) -> str:
    """A PAPER config as a file: in this repository, or 'pkg::' in pkg's
    .mim."""
    if '::' not in name:
        return osp.join(REPO, name)
    package, name = name.split('::')
    root = osp.dirname(importlib.import_module(package).__file__)
    return osp.join(root, '.mim', 'configs', name)


def _data_sample(scope: str, shape: Tuple[int, int]):
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape)
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        return DetDataSample(metainfo=dict(meta, scale_factor=(1.0, 1.0)))
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return SegDataSample(metainfo=meta)
    from mmpretrain.structures import DataSample
    return DataSample(metainfo=meta)


# RoIs the mask heads see in the mmdet count (StandardRoIHead.forward's and
# mmdet 2.x forward_dummy's rois[:100]).
MASK_ROIS = 100


def _cascade_forward(head, x, rpn_results_list, batch_data_samples) -> tuple:
    """mmdet 3.3's ``CascadeRoIHead.forward`` with every stage's mask head
    on the first ``MASK_ROIS`` RoIs, as mmdet 2.x's ``forward_dummy``."""
    from mmdet.structures.bbox import bbox2roi
    metas = [sample.metainfo for sample in batch_data_samples]
    proposals = [results.bboxes for results in rpn_results_list]
    rois, cls_scores, bbox_preds = head._refine_roi(
        x, bbox2roi(proposals), metas, tuple(len(p) for p in proposals))
    outs = (cls_scores, bbox_preds)
    if head.with_mask:
        mask_rois = torch.cat(rois)[:MASK_ROIS]
        for stage in range(head.num_stages):
            outs += (head._mask_forward(stage, x, mask_rois)['mask_preds'], )
    return outs


def _uncounted(analyzer) -> str:
    ops = Counter(analyzer.unsupported_ops())
    return ', '.join(f'{op} x{n}' for op, n in ops.most_common()) or '-'


def measure(cfg: Config, shape: Optional[Sequence[int]] = None,
            seed: int = 0, all_mask_rois: bool = False) -> dict:
    """Params and FLOPs of cfg's model on one image of `shape` (H, W)."""
    from mmengine.analysis import FlopAnalyzer, parameter_count
    scope = cfg.default_scope
    shape = tuple(shape or DEFAULT_SHAPES[scope])
    torch.manual_seed(seed)
    model = build_model(cfg)
    # A packed input as the dataloader gives it, then the preprocessor
    # (normalisation, padding to the size divisor), as mmdet's tool does.
    image = torch.randint(0, 256, (3, ) + shape, dtype=torch.uint8)
    data = model.data_preprocessor(
        dict(inputs=[image], data_samples=[_data_sample(scope, shape)]),
        training=False)
    inputs, samples = data['inputs'], data['data_samples']
    result = dict(scope=scope, input_shape=tuple(inputs.shape[1:]))

    forward = model.forward
    if scope == 'mmdet':
        # Record how many RPN proposals reach the RoI heads.
        proposals = []
        predict = model.rpn_head.predict if getattr(
            model, 'with_rpn', False) else None
        if predict is not None:
            def _predict(*args, **kwargs):
                out = predict(*args, **kwargs)
                proposals.append(len(out[0]))
                return out
            model.rpn_head.predict = _predict
        from mmdet.models.roi_heads import CascadeRoIHead
        head = getattr(model, 'roi_head', None)
        if isinstance(head, CascadeRoIHead) and not all_mask_rois:
            head.forward = partial(_cascade_forward, head)
            result['mask_rois'] = f'first {MASK_ROIS} per stage'

        def model_forward(x):
            return forward(x, samples, mode='tensor')
    elif scope == 'mmseg' and 'batch_data_samples' in inspect.signature(
            model.decode_head.forward).parameters:
        # A mask-classification head (Mask2Former's) takes the samples,
        # which the segmentor's tensor forward does not pass to it.
        def model_forward(x):
            return model.decode_head.forward(model.extract_feat(x), samples)
    else:
        def model_forward(x):
            return forward(x, mode='tensor')
    model.forward = model_forward

    start = time.perf_counter()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (inputs, ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        # A float where an op's handle gives one (Mask2Former's).
        result['flops'] = int(analyzer.total())
    result['seconds'] = time.perf_counter() - start
    result['params'] = parameter_count(model)['']
    result['uncounted'] = _uncounted(analyzer)
    if scope == 'mmdet' and proposals:
        result['proposals'] = proposals[-1]
    return result


def report(config: str, result: dict) -> str:
    lines = ['=' * 30, f'Config: {config}', f'Scope: {result["scope"]}',
             f'Input shape: {result["input_shape"]}',
             f'Params: {result["params"] / 1e6:.4f} M ({result["params"]})',
             f'FLOPs: {result["flops"] / 1e9:.4f} G ({result["flops"]})']
    if 'proposals' in result:
        lines.append(f'RPN proposals: {result["proposals"]}')
    if 'mask_rois' in result:
        lines.append(f'Mask head RoIs: {result["mask_rois"]}')
    lines += [f'Not counted: {result["uncounted"]}',
              f'Time: {result["seconds"]:.1f} s', '=' * 30]
    return '\n'.join(lines)


def _diff(ours: float, paper: Optional[float]) -> str:
    return '-' if paper is None else f'{(ours / paper - 1) * 100:+.1f}%'


def _num(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:g}'


def paper_table(out=sys.stdout) -> List[dict]:
    """Measures every PAPER config, printing one row per input as it goes."""
    width = max(len(osp.basename(t.config)) for t in PAPER) - 3
    header = (f'{"config":<{width}} {"input HxW":>9} {"params":>7} '
              f'{"paper":>6} {"diff":>6} {"FLOPs":>8} {"paper":>7} '
              f'{"diff":>7}')
    print(header, file=out)
    print('-' * len(header), file=out)
    rows, notes = [], []
    for ref in PAPER:
        name = ref.config
        for shape in [ref.shape] + list(ref.also):
            res = measure(load_config(config_path(name)), shape)
            params, flops = res['params'] / 1e6, res['flops'] / 1e9
            paper_params = ref.params if shape == ref.shape else None
            paper_flops = ref.flops if shape == ref.shape else None
            print(f'{osp.basename(name)[:-3]:<{width}} '
                  f'{shape[0]:>4}x{shape[1]:<4} {params:>7.2f} '
                  f'{_num(paper_params):>6} {_diff(params, paper_params):>6} '
                  f'{flops:>8.2f} {_num(paper_flops):>7} '
                  f'{_diff(flops, ref.flops):>7}', file=out, flush=True)
            rows.append(dict(config=name, shape=shape, **res))
        notes.append(f'  {osp.basename(name)[:-3]}: {ref.source}')
    print('\nparams in M, FLOPs in G (multiply-adds); diff = ours / paper - 1;'
          ' rows with no paper value: another input, diff against the '
          "paper's FLOPs.\nDetection: 1000 RPN proposals, masks on the first "
          f'{MASK_ROIS} RoIs per stage. Segmentation: no auxiliary head.\n'
          'Sources:', file=out)
    print('\n'.join(notes), file=out)
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Params and FLOPs of an mmc2f config\'s model')
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument(
        '--shape', type=int, nargs='+',
        help='input H W (one value: square); default by library: '
        + ', '.join(f'{k} {h}x{w} (HxW)'
                    for k, (h, w) in DEFAULT_SHAPES.items()))
    parser.add_argument(
        '--paper', action='store_true',
        help='measure every config with a paper number and compare')
    parser.add_argument(
        '--all-mask-rois', action='store_true',
        help='mmdet cascades: run the mask heads on all the RoIs, as mmdet '
        '3.3\'s CascadeRoIHead.forward (default: the first 100)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. model.backbone.arch=nano')
    args = parser.parse_args(argv)
    if not args.paper and args.config is None:
        parser.error('a config, or --paper, is required')
    if args.shape is not None:
        if len(args.shape) == 1:
            args.shape = args.shape * 2
        if len(args.shape) != 2:
            parser.error('--shape takes H W, or one value for both')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine').setLevel('ERROR')
    if args.paper:
        start = time.perf_counter()
        paper_table()
        print(f'\nTotal time: {time.perf_counter() - start:.0f} s')
        return
    cfg = load_config(args.config, args.cfg_options)
    print(report(args.config,
                 measure(cfg, args.shape, all_mask_rois=args.all_mask_rois)))


if __name__ == '__main__':
    main()
