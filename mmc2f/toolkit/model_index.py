# Copyright (c) mmc2f contributors. All rights reserved.
"""The metafiles and the README tables, generated from :mod:`mmc2f.paper`
(the paper's numbers) and :mod:`mmc2f.zoo` (the released files, our counts,
the configs beyond the paper): the one source of every figure they show.

A markdown file holds a generated table between
``<!-- BEGIN generated: NAME -->`` and ``<!-- END generated: NAME -->``;
:data:`TABLES` names them. ``tools/misc/generate_model_index.py`` writes
them, ``--check`` reports what differs.
"""
import glob
import os.path as osp
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from ..paper import DOWNSTREAM, IMAGENET, ISOTROPIC, DownstreamResult
from ..zoo import (AUTHORS_CODE, BEYOND_THE_PAPER, COUNTED, RELEASED,
                   BeyondThePaper, Counted)

PAPER_TITLE = ('Conv2Former: A Simple Transformer-Style ConvNet for Visual '
               'Recognition')
PAPER_URL = 'https://arxiv.org/abs/2211.11943'
PRETRAIN = {'in1k': 'ImageNet-1k', 'in21k': 'ImageNet-22k'}
_CONVERT = 'python tools/model_converters/conv2former_to_mmc2f.py FILE '
_NOT_RUN = 'not run'
_MARKER = re.compile(
    r'(<!-- BEGIN generated: (?P<name>[\w-]+) -->\n).*?'
    r'(<!-- END generated: (?P=name) -->)', re.S)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def _counted(key: str, params: str = '{:.2f}M / ', flops: str = '{:.2f}G'
             ) -> str:
    count: Counted = COUNTED[key]
    text = ('' if count.params is None else params.format(count.params)) + \
        flops.format(count.flops)
    return f'{text} {count.note}'.rstrip()


def imagenet_table() -> str:
    rows = []
    for r in IMAGENET:
        params = f'{r.params:.1f}M'
        if r.published_params is not None:
            params += f' (released file: {r.published_params:.1f}M)'
        flops = f'{r.flops:.1f}G'
        if r.counted_flops_differ:
            flops += f' (published code: {r.published_flops:g}G)'
        ours = (_counted(r.config), _NOT_RUN) if r.config else (
            'no released file, no config', '-')
        rows.append((r.name, PRETRAIN[r.pretrain], f'{r.resolution}', params,
                     flops, f'{r.top1}', *ours))
    return _table(('model', 'pre-training', 'resolution', 'params', 'FLOPs',
                   'top-1 (paper)', 'ours: params / FLOPs', 'ours: top-1'),
                  rows)


def isotropic_table() -> str:
    embeds = {'conv': 'one 16x16 conv', 'conv3': 'three convs'}
    return _table(
        ('model', 'patch embedding', 'params', 'FLOPs', 'top-1 (paper)',
         'ours: params / FLOPs'),
        ((r.name, embeds[r.patch_embed], f'{r.params:g}M', f'{r.flops:.1f}G',
          f'{r.top1}', _counted(f'isotropic/{r.arch}/{r.patch_embed}'))
         for r in ISOTROPIC))


def _ours(method: Optional[str] = None) -> List[DownstreamResult]:
    return [r for r in DOWNSTREAM if r.ours
            and (method is None or r.method == method)]


def coco_table(method: str) -> str:
    return _table(
        ('detector', 'backbone', 'FLOPs (paper)', 'APb', 'APm', 'ours: FLOPs',
         'ours: AP'),
        ((r.method, r.backbone, f'{r.flops:g}G', f'{r.metrics["box AP"]}',
          f'{r.metrics["mask AP"]}', _counted(r.config, flops='{:g}G'),
          _NOT_RUN) for r in _ours(method)))


def ade_table() -> str:
    return _table(
        ('backbone', 'pre-training', 'crop', 'params / FLOPs (paper)', 'mIoU',
         'ours: params / FLOPs', 'ours: mIoU'),
        ((r.backbone, PRETRAIN[r.pretrain], f'{r.crop}',
          f'{r.params:g}M / {r.flops:g}G', f'{r.metrics["mIoU"]}',
          _counted(r.config, '{:.1f}M / ', '{:g}G'), _NOT_RUN)
         for r in _ours('UperNet')))


def zoo_table() -> str:
    return _table(
        ('released file', "authors' model", 'top-1 (authors)', 'download',
         'convert', 'config'),
        ((ckpt.title, f'`{ckpt.released_as}`', f'{ckpt.top1}',
          f'[Baidu Netdisk]({ckpt.url})',
          f'`{_CONVERT}{ckpt.converted_path}`', f'`{ckpt.config}`')
         for ckpt in RELEASED))


def zoo_summary() -> str:
    return _table(
        ('released file', 'top-1 (authors)', 'config'),
        ((f'[{ckpt.title}](configs/imagenet/README.md#model-zoo)',
          f'{ckpt.top1}', f'`{ckpt.config}`') for ckpt in RELEASED))


def _metric_text(r: DownstreamResult) -> str:
    return ', '.join(f'{name} {value}' for name, value in r.metrics.items())


def summary_table() -> str:
    """One row per paper result: the README's overview."""
    rows = [(f'{r.name} ({PRETRAIN[r.pretrain]}, {r.resolution} px)',
             'ImageNet-1k classification', f'top-1 {r.top1}',
             _NOT_RUN if r.config else 'no config')
            for r in IMAGENET]
    rows += [(f'{r.method}, {r.backbone}',
              'COCO' if r.method != 'UperNet' else 'ADE20k',
              _metric_text(r), _NOT_RUN) for r in _ours()]
    return _table(('model', 'task', 'paper', 'ours'), rows)


def _mega(count: int, digits: int = 1) -> str:
    return f'{count / 1e6:.{digits}f}M'


def beyond_table() -> str:
    return _table(
        ('config', 'head, data', 'ours: params / FLOPs',
         "the library's, same head: params / FLOPs", 'result'),
        ((f'`{osp.basename(b.config)}`', b.head,
          f'{_mega(b.params)} / {b.flops / 1e9:.0f}G', b.library, _NOT_RUN)
         for b in BEYOND_THE_PAPER))


# Each generated table by the name its markers carry.
TABLES: Dict[str, Callable[[], str]] = {
    'imagenet': imagenet_table,
    'isotropic': isotropic_table,
    'zoo': zoo_table,
    'zoo-summary': zoo_summary,
    'summary': summary_table,
    'mask_rcnn': lambda: coco_table('Mask R-CNN'),
    'cascade_mask_rcnn': lambda: coco_table('Cascade Mask R-CNN'),
    'upernet': ade_table,
    'beyond': beyond_table,
}

_GENERATED = ('# Generated by tools/misc/generate_model_index.py from '
              'mmc2f/paper.py and mmc2f/zoo.py: edit those and rerun it.')
_PAPER_NOTE = ("# Results are the paper's (Hou et al., TPAMI 2024); they have "
               'not been reproduced with these configs yet.')
_BEYOND_NOTE = ('# Beyond the paper: no result, as these configs have not '
                'been trained on the real data yet and the paper has\n# no '
                'number to compare with. Parameters and FLOPs are ours, from '
                'tools/analysis/get_flops.py.')


def _collection(name: str, folder: str) -> List[str]:
    return [
        'Collections:', f'  - Name: {name}', '    Metadata:',
        '      Training Techniques: [AdamW, Layer Scale, Stochastic Depth, '
        'Mixup, CutMix, RandAugment, Label Smoothing]',
        '      Architecture: [Convolutional Modulation, Depthwise '
        'Convolution, Layer Normalization, GELU]', '    Paper:',
        f"      Title: '{PAPER_TITLE}'", f'      URL: {PAPER_URL}',
        f'    README: configs/{folder}/README.md', 'Models:'
    ]


def _model(name: str, collection: str, config: str,
           metadata: Sequence[str]) -> List[str]:
    return [f'  - Name: {name}', f'    In Collection: {collection}',
            f'    Config: {config}', '    Metadata:'] + [
                f'      {line}' for line in metadata]


def _results(results: Sequence[tuple]) -> List[str]:
    lines = ['    Results:']
    for task, dataset, metrics in results:
        lines += [f'      - Task: {task}', f'        Dataset: {dataset}',
                  '        Metrics:']
        lines += [f'          {k}: {v}' for k, v in metrics.items()]
    return lines


def _imagenet_metafile() -> List[str]:
    lines = [_GENERATED, "# The authors' released ImageNet checkpoints, one "
             "row each, with the paper's figures for it. Convert a", '# file '
             "with tools/model_converters/conv2former_to_mmc2f.py; the row's "
             'Config loads it.'] + _collection('Conv2Former', 'imagenet')
    for ckpt in RELEASED:
        data = ('ImageNet-1k' if ckpt.pretrain == 'in1k' else
                '[ImageNet-21k, ImageNet-1k]')
        lines += _model(ckpt.name, 'Conv2Former', ckpt.config, (
            f'Training Data: {data}',
            f'Parameters: {round(ckpt.params * 1e6)}',
            f'FLOPs: {round(ckpt.flops * 1e9)}'))
        lines += _results([('Image Classification', 'ImageNet-1k',
                            {'Top 1 Accuracy': ckpt.top1})])
        lines += ['    Converted From:', f'      Weights: {ckpt.url}',
                  f'      Code: {AUTHORS_CODE}',
                  f'      Model: {ckpt.released_as}']
    return lines


def _downstream_metafile(folder: str, method: str) -> List[str]:
    collection = f'Conv2Former {method}'
    lines = [_GENERATED, _PAPER_NOTE] + _collection(collection, folder)
    for r in _ours(method):
        if method == 'UperNet':
            meta = ['Training Data: ADE20K', 'Iterations: 160000',
                    f'Crop Size: ({r.crop}, {r.crop})']
            results = [('Semantic Segmentation', 'ADE20K', r.metrics)]
        else:
            meta = ['Training Data: COCO', 'Epochs: 36']
            results = [('Object Detection', 'COCO',
                        {'box AP': r.metrics['box AP']}),
                       ('Instance Segmentation', 'COCO',
                        {'mask AP': r.metrics['mask AP']})]
        if r.params is not None:
            meta.append(f'Parameters: {round(r.params * 1e6)}')
        meta.append(f'FLOPs: {round(r.flops * 1e9)}')
        name = osp.splitext(osp.basename(r.config))[0]
        lines += _model(name, collection, r.config, meta) + _results(results)
    return lines


def _beyond_metafile(folder: str, rows: List[BeyondThePaper]) -> List[str]:
    collection = f'Conv2Former {rows[0].collection} (beyond the paper)'
    lines = [_GENERATED, _BEYOND_NOTE] + _collection(collection, folder)
    for b in rows:
        data = 'ADE20K' if 'ade20k' in b.config else 'COCO'
        meta = [f'Training Data: {data}', f'{b.schedule[0]}: {b.schedule[1]}']
        if data == 'ADE20K':
            meta.append('Crop Size: (512, 512)')
        meta += [f'Parameters: {b.params}', f'FLOPs: {b.flops}']
        name = osp.splitext(osp.basename(b.config))[0]
        lines += _model(name, collection, b.config, meta)
        lines.append('    Results: null')
    return lines


def metafiles() -> Dict[str, str]:
    """Each ``configs/<folder>/metafile.yml`` by its path."""
    files = {
        'imagenet': _imagenet_metafile(),
        'mask_rcnn': _downstream_metafile('mask_rcnn', 'Mask R-CNN'),
        'cascade_mask_rcnn': _downstream_metafile('cascade_mask_rcnn',
                                                  'Cascade Mask R-CNN'),
        'upernet': _downstream_metafile('upernet', 'UperNet'),
    }
    beyond: Dict[str, List[BeyondThePaper]] = {}
    for b in BEYOND_THE_PAPER:
        if b.collection is not None:
            beyond.setdefault(b.config.split('/')[1], []).append(b)
    files.update((folder, _beyond_metafile(folder, rows))
                 for folder, rows in beyond.items())
    return {f'configs/{folder}/metafile.yml': '\n'.join(lines) + '\n'
            for folder, lines in files.items()}


def model_index() -> str:
    return 'Import:\n' + ''.join(f'  - {path}\n' for path in metafiles())


def fill_tables(text: str) -> str:
    """``text`` with each marked table regenerated; an unknown name is an
    error."""

    def table(match: re.Match) -> str:
        name = match['name']
        if name not in TABLES:
            raise KeyError(f'no generated table {name!r}; known: '
                           f'{sorted(TABLES)}')
        return match.group(1) + TABLES[name]() + match.group(3)

    return _MARKER.sub(table, text)


def generated_files(repo: str) -> Dict[str, str]:
    """Every generated file's path (relative to ``repo``) and content: the
    metafiles, ``model-index.yml``, and each markdown file with markers."""
    files = dict(metafiles())
    files['model-index.yml'] = model_index()
    for path in ['README.md'] + sorted(
            glob.glob(osp.join(repo, 'configs', '**', 'README.md'),
                      recursive=True) +
            glob.glob(osp.join(repo, 'docs', '*.md'))):
        path = osp.relpath(osp.join(repo, path), repo)
        with open(osp.join(repo, path)) as f:
            text = f.read()
        if _MARKER.search(text):
            files[path] = fill_tables(text)
    return files
