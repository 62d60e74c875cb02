import glob
import os.path as osp

import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


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
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    zoo = readme[readme.index('## Model zoo'):]
    zoo = zoo[:zoo.index('\n## ', 1)]
    rows = [line for line in zoo.splitlines() if line.startswith('| ')][1:]
    assert len(rows) == len(RELEASED)
    for row, ckpt in zip(rows, RELEASED):
        for fact in (ckpt.released_as, f'{ckpt.top1}', ckpt.url, ckpt.config,
                     ckpt.converted_path):
            assert fact in row, (ckpt.name, fact)
