"""The data files a run opens first: a missing annotation file or image
folder stops tools/train.py and tools/test.py with the key and the keys that
move it, only for the data that run reads, and never where the library
itself would have read the data."""
import os
import os.path as osp
import re
import runpy
import shutil
import sys

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmc2f.toolkit.checks import ConfigCheckError, check_data_files
from mmc2f.toolkit.cli import library_file
from mmc2f.toolkit.synthetic_data import make_ade_shapes
from tests.test_e2e.helpers import REPO, imagenet_layout, load

MASK_RCNN = 'configs/mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py'  # noqa: E501
FINETUNE = ('configs/mask_rcnn/finetune/'
            'mask-rcnn_conv2former-t_fpn_amp-ms-crop-1x_custom-coco.py')
UPERNET = 'configs/upernet/upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py'  # noqa: E501
IMAGENET = 'configs/imagenet/conv2former-n_8xb128_in1k.py'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def finetune(root: str) -> Config:
    """The fine-tuning config with its data_root moved to ``root``, as the
    error's own advice sets it."""
    cfg = load(FINETUNE)
    cfg.merge_from_dict({f'{loader}.dataset.data_root': root
                         for loader in LOADERS})
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = root + 'annotations/instances_val.json'
    return cfg


def test_a_paper_config_without_its_data(tmp_path, monkeypatch):
    """tools/train.py in a folder without COCO: before, the dataset's
    FileNotFoundError traceback, once the model was built; now this line
    alone (SystemExit with a message: exit status 1)."""
    monkeypatch.chdir(tmp_path)
    train = osp.join(REPO, 'tools/train.py')
    monkeypatch.setattr(sys, 'argv', [train, osp.join(REPO, MASK_RCNN),
                                      '--work-dir', str(tmp_path / 'work')])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(train, run_name='__main__')
    assert exited.value.code == (
        'error: train_dataloader.dataset reads the file data/coco/'
        'annotations/instances_train2017.json, which does not exist '
        f'(relative to the working directory, {tmp_path}). Put the data '
        'there, or point the config at them with the same keys in a config '
        'that inherits it or with --cfg-options '
        'train_dataloader.dataset.data_root=DIR/ '
        'val_dataloader.dataset.data_root=DIR/ '
        'val_evaluator.ann_file=DIR/annotations/instances_val2017.json')


def test_only_the_data_of_the_run(tmp_path, coco_shapes):
    """Testing needs the test data alone; training, its training data and,
    where the config validates, the validation data."""
    root = str(tmp_path / 'data') + '/'
    shutil.copytree(coco_shapes, root)
    cfg = finetune(root)
    for loops in (['train'], ['test'], ['train', 'test']):
        check_data_files(cfg, loops)
    os.remove(root + 'annotations/instances_train.json')
    check_data_files(cfg, ['test'])
    with pytest.raises(ConfigCheckError, match=re.escape(
            f'train_dataloader.dataset reads the file {root}annotations/'
            'instances_train.json, which does not exist. ')):
        check_data_files(cfg, ['train'])
    os.remove(root + 'annotations/instances_val.json')
    cfg.train_dataloader.dataset.data_root = coco_shapes
    with pytest.raises(ConfigCheckError, match='^val_dataloader.dataset '):
        check_data_files(cfg, ['train'])
    # Without validation, the training data alone.
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    check_data_files(cfg, ['train'])


def test_the_metrics_annotation_file(coco_shapes):
    cfg = finetune(coco_shapes)
    cfg.test_evaluator.ann_file = 'data/elsewhere/instances_val.json'
    with pytest.raises(ConfigCheckError, match=re.escape(
            'test_evaluator reads the file data/elsewhere/instances_val.json'
    )) as error:
        check_data_files(cfg, ['test'])
    assert str(error.value).endswith(
        '--cfg-options test_dataloader.dataset.data_root=DIR/ '
        'test_evaluator.ann_file=DIR/FILE')


def test_folder_datasets(tmp_path):
    """ADE20k's and ImageNet's layouts have no annotation file: the
    dataset lists its image folder."""
    upernet = load(UPERNET)
    with pytest.raises(ConfigCheckError, match=(
            r'^test_dataloader.dataset reads the folder data/ade/'
            r'ADEChallengeData2016/images/validation, which does not exist')):
        check_data_files(upernet, ['test'])
    make_ade_shapes(str(tmp_path / 'ade'), num_train=1, num_val=1,
                    size=(32, 32))
    upernet.merge_from_dict({f'{loader}.dataset.data_root': str(
        tmp_path / 'ade') for loader in LOADERS})
    check_data_files(upernet, ['train', 'test'])

    imagenet = load(IMAGENET)
    with pytest.raises(ConfigCheckError, match=(
            '^train_dataloader.dataset reads the folder data/imagenet/train,'
    )):
        check_data_files(imagenet, ['train'])
    imagenet.merge_from_dict(imagenet_layout(str(tmp_path / 'in1k')))
    check_data_files(imagenet, ['train', 'test'])  # meta/{train,val}.txt


@pytest.mark.parametrize('key, value', [
    ('ann_file', 's3://bucket/coco/train.json'),
    ('backend_args', {'backend': 'petrel'}),
])
def test_other_storage_is_left_to_its_backend(tmp_path, key, value):
    cfg = finetune(str(tmp_path / 'nothing') + '/')
    cfg.val_cfg = None
    cfg.train_dataloader.dataset[key] = value
    check_data_files(cfg, ['train'])


def test_the_fix_moves_what_the_config_gives(tmp_path):
    """An absolute annotation file is moved by its own key, not data_root."""
    cfg = finetune(str(tmp_path / 'nothing') + '/')
    cfg.val_cfg = None
    cfg.train_dataloader.dataset.ann_file = str(tmp_path / 'ann/train.json')
    with pytest.raises(ConfigCheckError) as error:
        check_data_files(cfg, ['train'])
    assert str(error.value).endswith(
        '--cfg-options train_dataloader.dataset.ann_file=DIR/FILE')


def _named_dataset(cfg: Config, where: str) -> dict:
    node = cfg
    for key in where.split('.'):
        node = node[int(key)] if isinstance(node, (list, tuple)) else node[key]
    return node


@pytest.mark.parametrize('library, config', [
    ('mmdet', 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'),
    ('mmdet', 'atss/atss_r50_fpn_8xb8-amp-lsj-200e_coco.py'),  # wrapped
    ('mmdet', 'pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py'),  # concat
    ('mmdet', 'lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py'),
    ('mmseg', 'upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'),
    ('mmseg', 'pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py'),
    ('mmseg', 'deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'),
    ('mmpretrain', 'resnet/resnet50_8xb32_in1k.py'),
    ('mmpretrain', 'resnet/resnet18_8xb16_cifar10.py'),  # downloads its data
])
def test_a_refusal_only_where_the_library_fails(tmp_path, monkeypatch,
                                                library, config):
    """The libraries' own configs in a folder without their data: each
    dataset the check names fails to build in its library too; the others
    build (CIFAR downloads its set, and is not refused)."""
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(library_file(library, 'configs', config))
    init_default_scope(cfg.default_scope)
    try:
        check_data_files(cfg, ['train', 'test'])
    except ConfigCheckError as error:
        where = str(error).split(' ', 1)[0]
        if where.split('.')[0].endswith('_evaluator'):
            return  # a COCO metric's file; the dataset's was refused first
        from mmengine.registry import DATASETS
        dataset = dict(_named_dataset(cfg, where), pipeline=[])
        # OSError: a missing file or folder; AssertionError: VOC's check of
        # both; ImportError: LVIS's API, not installed here, which reads it.
        with pytest.raises((OSError, AssertionError, ImportError)):
            DATASETS.build(dataset)
    else:
        assert config.endswith('cifar10.py'), 'no data, yet not refused'
