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
    listed = set()
    for metafile in imports:
        with open(osp.join(REPO, metafile)) as f:
            models = yaml.safe_load(f)['Models']
        for model in models:
            assert osp.isfile(osp.join(REPO, model['Config'])), model['Name']
            assert model['Name'] == osp.splitext(
                osp.basename(model['Config']))[0]
            assert model['Results'][0]['Metrics']
            listed.add(model['Config'])
    # Every config with a result in the paper is listed.
    configs = {
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
    }
    assert configs - listed == {
        'configs/mask_rcnn/mask-rcnn_conv2former-n_fpn_amp-ms-crop-3x_coco.py'
    }
