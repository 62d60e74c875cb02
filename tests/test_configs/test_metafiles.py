import glob
import os.path as osp
import re
from typing import List

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BEYOND = ' (beyond the paper)'


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


def test_generated_files_are_up_to_date():
    """The metafiles, model-index.yml and the marked README tables are what
    tools/misc/generate_model_index.py writes from mmc2f/paper.py and
    mmc2f/zoo.py, their one source."""
    from mmc2f.toolkit.model_index import generated_files
    stale = []
    for path, text in generated_files(REPO).items():
        with open(osp.join(REPO, path)) as f:
            if f.read() != text:
                stale.append(path)
    assert not stale, (
        f'{stale} differ from mmc2f/paper.py and mmc2f/zoo.py: run python '
        'tools/misc/generate_model_index.py')


def test_every_generated_table_is_shown():
    """Each table the generator knows is placed in some markdown file, and
    a marker naming no table is an error."""
    from mmc2f.toolkit.model_index import TABLES, fill_tables
    shown = set()
    for path in glob.glob(osp.join(REPO, '**', '*.md'), recursive=True):
        if '.venv' not in path:
            with open(path) as f:
                shown |= set(re.findall(r'<!-- BEGIN generated: ([\w-]+)',
                                        f.read()))
    assert shown == set(TABLES)
    with pytest.raises(KeyError, match="no generated table 'nope'"):
        fill_tables('<!-- BEGIN generated: nope -->\n'
                    '<!-- END generated: nope -->')


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
