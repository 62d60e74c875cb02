import glob
import os.path as osp
from typing import List

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PRETRAIN = {'in1k': 'ImageNet-1k', 'in21k': 'ImageNet-22k'}
BEYOND = ' (beyond the paper)'


def readme_tables(section: str) -> List[List[List[str]]]:
    """The tables of a README section: rows of cells, header row and
    separator dropped."""
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    text = readme[readme.index(f'## {section}\n'):]
    text = text[:text.index('\n## ', 1)]
    tables, rows = [], None
    for line in text.splitlines() + ['']:
        if line.startswith('|'):
            rows = [] if rows is None else rows
            rows.append([c.strip() for c in line.strip('|').split('|')])
        elif rows is not None:
            tables.append(rows[2:])
            rows = None
    return tables


def test_model_index_lists_existing_configs():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    assert sorted(imports) == sorted(
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml')))
    listed, names = set(), []
    for metafile in imports:
        with open(osp.join(REPO, metafile)) as f:
            models = yaml.safe_load(f)['Models']
        for model in models:
            assert osp.isfile(osp.join(REPO, model['Config'])), model['Name']
            # A model trained here is named after its config; a converted
            # third-party file is its config's name with '3rdparty' in it.
            config_name = osp.splitext(osp.basename(model['Config']))[0]
            if '3rdparty' not in model['Name']:
                assert model['Name'] == config_name
            # A model beyond the paper has no result yet (not trained on
            # the real data); every other, the paper's.
            if model['Results'] is None:
                assert model['In Collection'].endswith(BEYOND), model['Name']
            else:
                assert model['Results'][0]['Metrics']
            listed.add(model['Config'])
            names.append(model['Name'])
    assert len(names) == len(set(names))
    # Every config with a result in the paper is listed.
    configs = {
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
    }
    assert configs - listed == {
        'configs/mask_rcnn/mask-rcnn_conv2former-n_fpn_amp-ms-crop-3x_coco.py'
    }


def test_imagenet_metafile_lists_every_released_file():
    """One row per released file, with the figures of mmc2f.zoo."""
    from mmc2f.zoo import AUTHORS_CODE, RELEASED
    with open(osp.join(REPO, 'configs/imagenet/metafile.yml')) as f:
        models = yaml.safe_load(f)['Models']
    assert [m['Name'] for m in models] == [c.name for c in RELEASED]
    for model, ckpt in zip(models, RELEASED):
        assert model['Config'] == ckpt.config
        assert model['Metadata']['Parameters'] == round(ckpt.params * 1e6)
        assert model['Metadata']['FLOPs'] == round(ckpt.flops * 1e9)
        top1 = model['Results'][0]['Metrics']['Top 1 Accuracy']
        assert top1 == ckpt.top1
        assert model['Converted From'] == dict(
            Weights=ckpt.url, Code=AUTHORS_CODE, Model=ckpt.released_as)
        data = model['Metadata']['Training Data']
        assert ('ImageNet-21k' in data) == (ckpt.pretrain == 'in21k')


def test_readme_zoo_table_lists_every_released_file():
    """The README's model zoo: a row per released file with its released
    name, top-1, download link, convert command and config."""
    from mmc2f.zoo import RELEASED
    rows, = readme_tables('Model zoo')
    assert len(rows) == len(RELEASED)
    for row, ckpt in zip(rows, RELEASED):
        row = ' | '.join(row)
        for fact in (ckpt.released_as, f'{ckpt.top1}', ckpt.url, ckpt.config,
                     ckpt.converted_path):
            assert fact in row, (ckpt.name, fact)


def test_downstream_metafiles_hold_the_papers_numbers():
    """Every downstream metafile model is a result of mmc2f.paper, in its
    order, with its FLOPs, parameters, accuracies and crop."""
    from mmc2f.paper import DOWNSTREAM
    ours = {r.config: r for r in DOWNSTREAM if r.ours}
    listed = []
    for task in ('mask_rcnn', 'cascade_mask_rcnn', 'upernet'):
        with open(osp.join(REPO, 'configs', task, 'metafile.yml')) as f:
            models = yaml.safe_load(f)['Models']
        for model in models:
            result = ours[model['Config']]
            meta = model['Metadata']
            assert meta['FLOPs'] == round(result.flops * 1e9)
            assert meta.get('Parameters') == (
                None if result.params is None else round(result.params * 1e6))
            metrics = {
                name: value
                for res in model['Results']
                for name, value in res['Metrics'].items()
            }
            assert metrics == result.metrics, model['Name']
            if result.crop is not None:
                assert meta['Crop Size'] == f'({result.crop}, {result.crop})'
            listed.append(model['Config'])
    assert listed == list(ours)


def test_readme_results_tables_hold_the_papers_numbers():
    """The paper's columns of the README's results tables, row by row, are
    mmc2f.paper's results (N's FLOPs with the published code's count)."""
    from mmc2f.paper import DOWNSTREAM, IMAGENET, ISOTROPIC
    # The fifth table is beyond the paper.
    imagenet, isotropic, coco, ade = readme_tables(
        'Results of the paper and our status')[:4]

    assert len(imagenet) == len(IMAGENET)
    for row, r in zip(imagenet, IMAGENET):
        params = f'{r.params:.1f}M'
        if r.published_params is not None:
            params += f' (released file: {r.published_params:.1f}M)'
        flops = f'{r.flops:.1f}G'
        if r.counted_flops_differ:
            flops += f' (published code: {r.published_flops:g}G)'
        assert row[:6] == [r.name, PRETRAIN[r.pretrain], f'{r.resolution}',
                           params, flops, f'{r.top1}']

    embeds = {'conv': 'one 16x16 conv', 'conv3': 'three convs'}
    assert [row[:5] for row in isotropic] == [[
        r.name, embeds[r.patch_embed], f'{r.params:g}M', f'{r.flops:.1f}G',
        f'{r.top1}'
    ] for r in ISOTROPIC]

    assert [row[:5] for row in coco] == [[
        r.method, r.backbone, f'{r.flops:g}G', f'{r.metrics["box AP"]}',
        f'{r.metrics["mask AP"]}'
    ] for r in DOWNSTREAM if r.ours and r.method != 'UperNet']

    assert [row[:5] for row in ade] == [[
        r.backbone, PRETRAIN[r.pretrain], f'{r.crop}',
        f'{r.params:g}M / {r.flops:g}G', f'{r.metrics["mIoU"]}'
    ] for r in DOWNSTREAM if r.ours and r.method == 'UperNet']


def beyond_the_paper() -> List[dict]:
    """The metafile models beyond the paper (no result yet)."""
    with open(osp.join(REPO, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    models = []
    for metafile in imports:
        with open(osp.join(REPO, metafile)) as f:
            models += [m for m in yaml.safe_load(f)['Models']
                       if m['Results'] is None]
    return models


def test_readme_rows_beyond_the_paper_are_the_metafiles():
    """Each metafile model beyond the paper has its README row with the
    metafile's parameters and FLOPs and no result; none is a config of
    mmc2f.paper."""
    from mmc2f.paper import DOWNSTREAM
    rows = {row[0].strip('`'): row for row in readme_tables(
        'Results of the paper and our status')[4]}
    models = beyond_the_paper()
    assert len(models) == 4
    for model in models:
        meta = model['Metadata']
        row = rows[osp.basename(model['Config'])]
        assert row[2] == (f'{meta["Parameters"] / 1e6:.1f}M / '
                          f'{meta["FLOPs"] / 1e9:.0f}G'), model['Name']
        assert row[4] == 'not run'
        assert model['Config'] not in {r.config for r in DOWNSTREAM}


@pytest.mark.slow
@pytest.mark.parametrize('model', beyond_the_paper(),
                         ids=lambda model: model['Name'])
def test_counts_beyond_the_paper_are_measured(model):
    """The metafile's parameters and FLOPs are what get_flops.py measures
    (about a minute in all)."""
    from mmc2f.toolkit.config_model import load_config
    from tests.test_e2e.helpers import tool_module
    tool = tool_module(osp.join(REPO, 'tools/analysis/get_flops.py'))
    result = tool.measure(load_config(osp.join(REPO, model['Config'])))
    assert (result['params'], result['flops']) == (
        model['Metadata']['Parameters'], model['Metadata']['FLOPs'])
