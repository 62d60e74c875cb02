"""A config's data_root and classes variables against what its dataloaders
read, and a detection config's classes against its COCO annotation files and
its heads: each mismatch the libraries accept silently is an error before the
model is built, through tools/train.py as a user runs it."""
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from typing import Tuple

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmc2f.toolkit.checks import (check_classification_classes,
                                  check_config_variables,
                                  check_detection_classes,
                                  check_segmentation_labels)
from mmc2f.toolkit.checks.datasets import leaf_datasets
from mmc2f.toolkit.synthetic_data import make_ade_shapes
from tests.test_e2e.helpers import REPO, load

FINETUNE = ('configs/mask_rcnn/finetune/'
            'mask-rcnn_conv2former-t_fpn_amp-ms-crop-1x_custom-coco.py')
CASCADE = ('configs/cascade_mask_rcnn/'
           'cascade-mask-rcnn_conv2former-t_fpn_4conv1fc-giou_amp-ms-crop-'
           '3x_coco.py')
# The shapes set's categories, in its files' order.
SHAPES = ('rectangle', 'ellipse', 'triangle')


@pytest.fixture
def data_root(coco_shapes) -> str:
    return coco_shapes


def finetune(data_root: str, classes=SHAPES) -> Config:
    """The fine-tuning config on ``data_root`` with ``classes``, its heads
    sized to them, as a user edits it."""
    cfg = load(FINETUNE)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.update(data_root=data_root,
                                   metainfo=dict(classes=classes))
    for head in ('bbox_head', 'mask_head'):
        cfg.model.roi_head[head].num_classes = len(classes)
    return cfg


def test_the_shipped_configs_pass(data_root):
    check_detection_classes(finetune(data_root))
    check_detection_classes(load(FINETUNE))  # its data not written yet
    check_detection_classes(load(CASCADE))  # COCO's own classes


def test_classes_in_another_order_than_the_file(data_root):
    with pytest.raises(ValueError) as error:
        check_detection_classes(
            finetune(data_root, ('triangle', 'rectangle', 'ellipse')))
    assert str(error.value) == (
        "train_dataloader.dataset.metainfo.classes lists ['triangle', "
        f"'rectangle', 'ellipse'], but {data_root}annotations/"
        "instances_train.json has them in the order ['rectangle', "
        "'ellipse', 'triangle']: MMDetection numbers the labels in the "
        "file's order, so every prediction would carry another class's "
        "name. Set classes = ('rectangle', 'ellipse', 'triangle')")


def test_a_subset_in_the_files_order_passes(data_root):
    check_detection_classes(finetune(data_root, ('rectangle', 'triangle')))


def test_a_class_the_file_lacks(data_root):
    with pytest.raises(ValueError, match=(
            r"classes names \['rectangel'\], which .*instances_train.json "
            r"does not have: its categories are \['rectangle', 'ellipse', "
            r"'triangle'\]")):
        check_detection_classes(
            finetune(data_root, ('rectangel', 'ellipse', 'triangle')))


def test_heads_counting_other_classes(data_root):
    cfg = finetune(data_root)
    cfg.model.roi_head.mask_head.num_classes = 80
    with pytest.raises(ValueError, match=(
            r'model.roi_head.mask_head.num_classes=80, but train_dataloader'
            r'.dataset.metainfo has 3 \(thing\) classes: set num_classes=3')):
        check_detection_classes(cfg)


def test_classes_from_a_file(tmp_path, data_root):
    """mmengine reads a str ``classes`` as a file of names."""
    names = tmp_path / 'classes.txt'
    names.write_text('triangle\nrectangle\nellipse\n')
    with pytest.raises(ValueError, match="lists \\['triangle', 'rectangle'"):
        check_detection_classes(finetune(data_root, str(names)))


def test_a_panoptic_sets_heads_count_its_things(data_root):
    cfg = finetune(data_root)
    cfg.train_dataloader.dataset.update(
        type='CocoPanopticDataset',
        metainfo=dict(classes=SHAPES, thing_classes=SHAPES[:2],
                      stuff_classes=SHAPES[2:]))
    with pytest.raises(ValueError, match='metainfo has 2 .thing. classes'):
        check_detection_classes(cfg)
    for head in ('bbox_head', 'mask_head'):
        cfg.model.roi_head[head].num_classes = 2
    check_detection_classes(cfg)


def test_every_cascade_stage_is_counted():
    cfg = load(CASCADE)
    cfg.train_dataloader.dataset.metainfo = dict(classes=SHAPES)
    cfg.model.roi_head.mask_head.num_classes = 3
    for stage in cfg.model.roi_head.bbox_head[:2]:
        stage.num_classes = 3
    with pytest.raises(ValueError,
                       match=r'model.roi_head.bbox_head.2.num_classes=80'):
        check_detection_classes(cfg)


def test_wrapped_datasets_are_checked(data_root):
    cfg = finetune(data_root, ('ellipse', 'rectangle'))
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', times=2, dataset=dict(
            type='ConcatDataset',
            datasets=[cfg.val_dataloader.dataset,
                      cfg.train_dataloader.dataset]))
    cfg.val_dataloader = cfg.test_dataloader = None
    with pytest.raises(ValueError, match=(
            r'train_dataloader.dataset.dataset.datasets.0.metainfo.classes '
            r"lists \['ellipse', 'rectangle'\]")):
        check_detection_classes(cfg)


def test_an_annotation_file_that_is_not_coco(tmp_path, data_root):
    cfg = finetune(data_root)
    bad = tmp_path / 'bad.json'
    bad.write_text('{"images": []')
    cfg.train_dataloader.dataset.ann_file = str(bad)
    with pytest.raises(ValueError, match=f'{bad} is not valid JSON'):
        check_detection_classes(cfg)
    bad.write_text(json.dumps({'images': []}))
    with pytest.raises(ValueError, match='has no "categories" list'):
        check_detection_classes(cfg)


def test_train_py_stops_before_the_model_is_built(tmp_path, data_root):
    """A user who changed data_root to their own files and left the shipped
    classes: before, numpy's "need at least one array to concatenate" after
    the model was built."""
    own = tmp_path / 'own'
    os.makedirs(own / 'annotations')
    with open(osp.join(data_root, 'annotations/instances_train.json')) as f:
        data = json.load(f)
    for category, name in zip(data['categories'], ('cat', 'dog', 'bird')):
        category['name'] = name
    (own / 'annotations/instances_train.json').write_text(json.dumps(data))
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/train.py'), FINETUNE,
         '--work-dir', str(tmp_path / 'work'), '--cfg-options',
         f'train_dataloader.dataset.data_root={own}/', 'val_cfg=None',
         'val_dataloader=None', 'val_evaluator=None',
         'model.backbone.init_cfg=None'],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: train_dataloader.dataset.metainfo.classes names "
        f"['rectangle', 'ellipse', 'triangle'], which {own}/annotations/"
        "instances_train.json does not have: its categories are ['cat', "
        "'dog', 'bird']. Set classes to names of its categories")


def _edited_copy(tmp_path, data_root: str, edit) -> str:
    """A copy of the shapes set whose train annotations ``edit`` changed."""
    root = tmp_path / 'edited'
    shutil.copytree(data_root, root)
    path = root / 'annotations/instances_train.json'
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return f'{root}/'


def assert_refused(tmp_path, data_root: str, edit, message: str) -> None:
    """The fine-tuning config on an edited copy of the shapes set is refused
    with ``message`` (a regular expression)."""
    with pytest.raises(ValueError, match=message):
        check_detection_classes(
            finetune(_edited_copy(tmp_path, data_root, edit)))


def test_box_only_annotations_for_a_mask_head(tmp_path, data_root):
    """Valid COCO without masks: MMDetection's KeyError: 'mask' in a
    dataloader worker, after the model was built. The error names the
    box-only configs, and the fine-tuning one takes the same files."""
    def drop_masks(data):
        for annotation in data['annotations']:
            del annotation['segmentation']

    root = _edited_copy(tmp_path, data_root, drop_masks)
    with pytest.raises(ValueError) as error:
        check_detection_classes(finetune(root))
    named = re.fullmatch(
        r'(\d+) of the \1 annotations of .*instances_train.json have no '
        r'"segmentation" \(e.g. ids \[\d+, \d+, \d+\]\), but '
        r"train_dataloader.dataset's pipeline loads masks .* use a box-only "
        r'detector config: (configs/\S+\.py) on your own data \(the Mask '
        r'R-CNN fine-tuning config without masks\), (configs/\S+\.py) on '
        r'COCO', str(error.value))
    assert named, error.value
    assert load(named.group(3)).model.roi_head.mask_head is None
    box_only = load(named.group(2))
    for loader in LOADERS:
        box_only[loader].dataset.data_root = root
    check_detection_classes(box_only)


@pytest.mark.parametrize('edit', [
    lambda data: data['annotations'][0].update(bbox=[10, '10', 5, 5]),
    lambda data: data['annotations'][0].update(area=None),
    lambda data: data['images'].append('photo.jpg'),
])
def test_malformed_entries_name_the_file(tmp_path, data_root, edit):
    assert_refused(tmp_path, data_root, edit, (
        r'instances_train.json has an entry of an unexpected form '
        r'\(\w+Error: .*\): it is not a well-formed COCO annotation file'))


def test_a_box_outside_its_image_needs_no_mask(tmp_path, data_root):
    """CocoDataset drops a box outside its image before loading masks."""
    def outside(data):
        annotation = data['annotations'][0]
        del annotation['segmentation']
        annotation['bbox'] = [100, 100, 5, 5]

    check_detection_classes(
        finetune(_edited_copy(tmp_path, data_root, outside)))


def test_images_without_their_size(tmp_path, data_root):
    def drop_height(data):
        del data['images'][0]['height']

    assert_refused(tmp_path, data_root, drop_height, (
        r'1 of the 2 images of .*instances_train.json lack "height" or '
        r'"width" \(e.g. \[\'.*\'\]\)'))


def test_photos_annotated_at_their_stored_size_but_turned_by_exif(
        tmp_path, data_root):
    """A phone photo stored 48x32 with EXIF orientation 6 (shown 32x48),
    annotated at 48x32: the loader turns the image and not the masks
    (BitmapMasks' "all input arrays must have the same shape")."""
    turned = {}

    def store_turned(data):
        info = data['images'][0]
        turned['file'] = info['file_name']
        info.update(width=48, height=32)

    root = _edited_copy(tmp_path, data_root, store_turned)
    photo = Image.new('RGB', (48, 32))
    exif = photo.getexif()
    exif[0x0112] = 6
    photo.save(osp.join(root, 'train', turned['file']), format='JPEG',
               exif=exif)
    with pytest.raises(ValueError, match=(
            r'is stored 48x32 with EXIF orientation 6, which the image loader '
            r'applies \(it reads 32x48\), but .*instances_train.json gives it '
            r"the stored size: .* Set color_type='color_ignore_orientation' "
            r'.*--cfg-options train_dataloader.dataset.pipeline.0.color_type='
            r'color_ignore_orientation')):
        check_detection_classes(finetune(root))
    # Loaders that leave the orientation: the stored size is right.
    for setting in (dict(color_type='color_ignore_orientation'),
                    dict(color_type='unchanged'),
                    dict(imdecode_backend='turbojpeg')):
        cfg = finetune(root)
        for loader in LOADERS:
            cfg[loader].dataset.pipeline[0].update(setting)
        check_detection_classes(cfg)


def train_py(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/train.py'), *args],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
        text=True, timeout=600, **kwargs)


def test_every_shipped_config_reads_its_own_variables():
    for path in glob.glob(osp.join(REPO, 'configs/**/*.py'), recursive=True):
        check_config_variables(Config.fromfile(path))


def test_a_child_config_setting_data_root_and_classes(tmp_path):
    """The README's "set data_root and classes in a copy": a config that
    inherits the fine-tuning one and sets only the variables trained on the
    base's data before, silently."""
    child = tmp_path / 'pets.py'
    child.write_text(f"_base_ = {osp.join(REPO, FINETUNE)!r}\n"
                     "data_root = 'data/pets/'\n")
    result = train_py(str(child), '--work-dir', str(tmp_path / 'work'))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: The config sets data_root='data/pets/', but the "
        "dataloaders read train_dataloader.dataset.data_root='data/my_coco/'"
    ), last
    assert 'Set it where it is used (--cfg-options ' \
        'train_dataloader.dataset.data_root=... ' in last
    assert not (tmp_path / 'work').exists()
    # Setting the datasets too is what the message asks: that passes.
    child.write_text(
        child.read_text() + "classes = ('cat', 'dog')\n"
        "train_dataloader = dict(dataset=dict(data_root=data_root, "
        "metainfo=dict(classes=classes)))\n"
        "val_dataloader = dict(dataset=dict(data_root=data_root, "
        "metainfo=dict(classes=classes)))\n"
        "test_dataloader = val_dataloader\n")
    check_config_variables(Config.fromfile(str(child)))


LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
PETS_ROOTS = {f'{loader}.dataset.data_root': 'data/pets/'
              for loader in LOADERS}


def test_cfg_options_setting_a_variable_or_the_datasets():
    cfg = Config.fromfile(osp.join(REPO, FINETUNE))
    with pytest.raises(ValueError, match=(
            r"sets classes=\('cat', 'dog'\), but the dataloaders read "
            r"train_dataloader.dataset.metainfo.classes=\('rectangle', ")):
        check_config_variables(cfg, {'classes': ('cat', 'dog')})
    # Options that set the datasets' own keys leave the file's variable
    # behind: the file used it, the options moved the datasets.
    check_config_variables(cfg, PETS_ROOTS)


def test_a_child_root_above_the_bases_is_not_followed(tmp_path):
    """data_root='data/' over the base's 'data/my_coco/': the datasets'
    'data/my_coco/' starts with it but follows the base."""
    child = tmp_path / 'up.py'
    child.write_text(f"_base_ = {osp.join(REPO, FINETUNE)!r}\n"
                     "data_root = 'data/'\n")
    with pytest.raises(ValueError, match=(
            r"^The config sets data_root='data/', but the dataloaders read "
            r"train_dataloader.dataset.data_root='data/my_coco/'")):
        check_config_variables(Config.fromfile(str(child)))


def test_child_configs_that_set_the_datasets_pass(tmp_path):
    """The usual way to point a config at your data (the datasets' keys, not
    the variable), the error's own advice given as options, and a root
    variable the datasets extend (``data_root + 'coco/'``)."""
    base = f"_base_ = {osp.join(REPO, FINETUNE)!r}\n"
    balloon = tmp_path / 'balloon.py'
    balloon.write_text(base + ''.join(
        f"{loader} = dict(dataset=dict(data_root='data/balloon/', "
        "metainfo=dict(classes=('balloon', ))))\n" for loader in LOADERS))
    check_config_variables(Config.fromfile(str(balloon)))
    only_root = tmp_path / 'only_root.py'
    only_root.write_text(base + "data_root = 'data/pets/'\n")
    check_config_variables(Config.fromfile(str(only_root)), PETS_ROOTS)
    under = tmp_path / 'under.py'
    under.write_text(base + "data_root = 'data/'\n" + ''.join(
        f"{loader} = dict(dataset=dict(data_root=data_root + 'pets/'))\n"
        for loader in LOADERS))
    check_config_variables(Config.fromfile(str(under)))


MASK_RCNN = 'configs/mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py'  # noqa: E501


def dumped(cfg: Config, path) -> Config:
    """The config as mmengine dumps it into a run's work_dir, read back."""
    cfg.dump(str(path))
    return Config.fromfile(str(path))


def test_a_work_dirs_dumped_config(tmp_path):
    """A run that followed the error's own advice (the datasets' data_root
    as options) dumps a flat file with data_root='data/coco/' and datasets
    reading the options' root: no base had the variable, so the file's
    datasets and its variable were read together; tools/test.py on it was
    refused. The dump of the config as shipped still refuses a variable the
    options set where its datasets read the old value."""
    as_shipped = dumped(Config.fromfile(osp.join(REPO, MASK_RCNN)),
                        tmp_path / 'as_shipped.py')
    cfg = Config.fromfile(osp.join(REPO, MASK_RCNN))
    cfg.merge_from_dict(PETS_ROOTS)
    moved = dumped(cfg, tmp_path / 'moved.py')
    assert moved.data_root == 'data/coco/'
    check_config_variables(moved)
    # No dataset reads 'data/coco/' any more: a new value is no mistake.
    check_config_variables(moved, {'data_root': 'data/dogs/'})
    with pytest.raises(ValueError, match=(
            r"^The config sets data_root='data/dogs/', but the dataloaders "
            r"read train_dataloader.dataset.data_root='data/coco/'")):
        check_config_variables(as_shipped, {'data_root': 'data/dogs/'})


IMAGENET = 'configs/imagenet/conv2former-n_8xb128_in1k.py'


def _image_folder(root, classes=('cat', 'dog', 'bird')) -> None:
    """The ImageFolder layout: one sub-folder of images per class."""
    for name in classes:
        os.makedirs(root / name)
        (root / name / '0.jpg').write_bytes(b'')


def own_classes(data_root: str, **options) -> Config:
    """The ImageNet config on your own class folders (data_root/train/CLASS,
    data_root/val/CLASS), as the README says to set it."""
    cfg = load(IMAGENET)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    cfg.merge_from_dict(options)
    return cfg


THREE = {f'{loader}.dataset.metainfo.classes': ('bird', 'cat', 'dog')
         for loader in ('train_dataloader', 'val_dataloader',
                        'test_dataloader')}


def test_a_classifier_for_other_classes_than_the_folders(tmp_path):
    """A 1000-class head trained silently on three folders, and the
    inferencer then failed on an index its three classes lack."""
    for split in ('train', 'val'):
        _image_folder(tmp_path / split)
    root = str(tmp_path)
    with pytest.raises(ValueError) as error:
        check_classification_classes(own_classes(root))
    assert str(error.value) == (
        "train_dataloader.dataset names 1000 classes (ImageNet's), but "
        f"{root}/train has 3 class sub-folders ['bird', 'cat', 'dog']: set "
        'train_dataloader.dataset.metainfo.classes to their 3 names, in this '
        '(sorted) order, which MMPretrain numbers them in')
    with pytest.raises(ValueError) as error:
        check_classification_classes(own_classes(root, **THREE))
    assert str(error.value) == (
        'model.head.num_classes=1000, but train_dataloader.dataset has 3 '
        'classes (its metainfo.classes): set model.head.num_classes=3 and '
        'data_preprocessor.num_classes=3 (the Mixup/CutMix targets)')
    with pytest.raises(ValueError,
                       match=r'^data_preprocessor.num_classes=1000, but '):
        check_classification_classes(
            own_classes(root, **THREE, **{'model.head.num_classes': 3}))
    with pytest.raises(ValueError, match=(
            r'^val_evaluator has topk=\(1, 5\), but the model scores 3 '
            r'classes: set val_evaluator.topk to values up to 3')):
        check_classification_classes(
            own_classes(root, **THREE, **{'model.head.num_classes': 3,
                                          'data_preprocessor.num_classes': 3}))
    check_classification_classes(
        own_classes(root, **THREE, **{'model.head.num_classes': 3,
                                      'data_preprocessor.num_classes': 3,
                                      'val_evaluator.topk': (1, ),
                                      'test_evaluator.topk': (1, 3)}))


def test_classifier_classes_from_an_annotation_file(tmp_path):
    """A CustomDataset's labels in a file give a lower bound: a head with
    more passes, one with fewer does not."""
    (tmp_path / 'train.txt').write_text('a.jpg 0\nb.jpg 4\n')
    cfg = load(IMAGENET)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset = dict(
            type='CustomDataset', data_root=str(tmp_path),
            ann_file='train.txt', pipeline=cfg[loader].dataset.pipeline)
    check_classification_classes(cfg)  # 1000 >= 5
    cfg.merge_from_dict({'model.head.num_classes': 4,
                         'data_preprocessor.num_classes': 4})
    with pytest.raises(ValueError, match=(
            r'model.head.num_classes=4, but train_dataloader.dataset has 5 '
            r'classes \(labels up to 4 in .*train.txt\)')):
        check_classification_classes(cfg)


def test_unlabelled_test_images_count_no_classes(tmp_path):
    """Testing on a flat folder of images (no labels, no train data here)."""
    (tmp_path / 'a.jpg').write_bytes(b'')
    cfg = load(IMAGENET)
    for loader in LOADERS:
        cfg[loader].dataset = dict(
            type='CustomDataset', data_root=str(tmp_path), with_label=False,
            pipeline=cfg[loader].dataset.pipeline)
    cfg.model.head.num_classes = 10
    check_classification_classes(cfg)


def test_the_imagenet_configs_pass():
    for path in glob.glob(osp.join(REPO, 'configs/imagenet/*.py')):
        check_classification_classes(Config.fromfile(path))


UPERNET = ('configs/upernet/'
           'upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py')


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory) -> str:
    """Label maps 1 (background) and 2..4 (shapes): 0..3 after
    reduce_zero_label."""
    return make_ade_shapes(str(tmp_path_factory.mktemp('ade')), num_train=3,
                           num_val=1, size=(32, 32))['data_root']


def upernet(data_root: str, **options) -> Config:
    cfg = load(UPERNET)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    cfg.merge_from_dict(options)
    return cfg


def test_segmentation_heads_and_classes(ade_root):
    check_segmentation_labels(upernet(ade_root))
    with pytest.raises(ValueError, match=(
            r'^The heads count other classes: model.decode_head.num_classes='
            r'4, model.auxiliary_head.num_classes=150: set the same')):
        check_segmentation_labels(
            upernet(ade_root, **{'model.decode_head.num_classes': 4}))
    four = {'model.decode_head.num_classes': 4,
            'model.auxiliary_head.num_classes': 4}
    with pytest.raises(ValueError, match=(
            r"^train_dataloader.dataset has 150 classes \(ADE20KDataset's\), "
            r'but model.decode_head.num_classes=4: set train_dataloader.'
            r'dataset.metainfo.classes=\(...\) to the names of your 4 '
            r'classes')):
        check_segmentation_labels(upernet(ade_root, **four))
    classes = {f'{loader}.dataset.metainfo.classes':
               ('wall', 'rectangle', 'ellipse', 'triangle')
               for loader in ('train_dataloader', 'val_dataloader',
                              'test_dataloader')}
    check_segmentation_labels(upernet(ade_root, **four, **classes))


def own_segmentation(num_classes: int, classes: Tuple[str, ...]) -> dict:
    """The README's options for your own ADE20k-layout classes."""
    options = {'model.decode_head.num_classes': num_classes,
               'model.auxiliary_head.num_classes': num_classes}
    for loader in LOADERS:
        options.update({f'{loader}.dataset.type': 'BaseSegDataset',
                        f'{loader}.dataset.reduce_zero_label': True,
                        f'{loader}.dataset.metainfo.classes': classes})
    return options


def test_labels_beyond_the_heads(ade_root):
    """Three classes for labels 0..3: on a GPU a device-side assert, on a
    CPU "Target 3 is out of bounds", both after the model was built."""
    with pytest.raises(ValueError, match=(
            r'annotations/training/\w+\.png has label 3 \(after '
            r'reduce_zero_label, which ignores 0: set it False where 0 is a '
            r'class\), but model.decode_head.num_classes=3')):
        check_segmentation_labels(
            upernet(ade_root, **own_segmentation(3, ('a', 'b', 'c'))))
    # One name more than the heads (a background counted) is left to the
    # label maps, which still tell.
    with pytest.raises(ValueError, match=r'has label 3 '):
        check_segmentation_labels(
            upernet(ade_root, **own_segmentation(3, ('a', 'b', 'c', 'd'))))
    check_segmentation_labels(
        upernet(ade_root, **own_segmentation(4, ('a', 'b', 'c', 'd'))))


def test_what_mmsegmentation_maps_away_is_no_label(tmp_path, ade_root):
    """255 stays ignored under reduce_zero_label (not label 254), and a
    subset of ADE20K's classes maps the others to 255."""
    root = tmp_path / 'ade'
    shutil.copytree(ade_root, root)
    for path in (root / 'annotations/training').iterdir():
        labels = np.asarray(Image.open(path)).copy()
        labels[0, 0] = 255
        Image.fromarray(labels).save(path)
    check_segmentation_labels(
        upernet(str(root), **own_segmentation(4, ('a', 'b', 'c', 'd'))))
    subset = {'model.decode_head.num_classes': 3,
              'model.auxiliary_head.num_classes': 3}
    subset.update({f'{loader}.dataset.metainfo.classes':
                   ('wall', 'building', 'sky') for loader in LOADERS})
    check_segmentation_labels(upernet(str(root), **subset))


def test_a_boundary_head_beside_the_auxiliary_heads(ade_root):
    """STDC's auxiliary heads: a list with a 2-class boundary head."""
    cfg = upernet(ade_root)
    cfg.model.auxiliary_head = [
        dict(cfg.model.auxiliary_head),
        dict(type='STDCHead', num_classes=2, in_channels=256, channels=64)]
    check_segmentation_labels(cfg)


def test_label_maps_are_those_of_the_images(tmp_path, ade_root):
    """A colour preview beside each label map (a_vis.png) is not read:
    MMSegmentation pairs each image with its own map."""
    root = tmp_path / 'ade'
    shutil.copytree(ade_root, root)
    for path in list((root / 'annotations/training').iterdir()):
        Image.open(path).convert('RGB').save(
            path.with_name(path.stem + '_vis.png'))
    check_segmentation_labels(upernet(str(root)))


def test_colour_label_maps(tmp_path, ade_root):
    root = tmp_path / 'ade'
    shutil.copytree(ade_root, root)
    for path in (root / 'annotations/training').iterdir():
        Image.open(path).convert('RGB').save(path)
    with pytest.raises(ValueError, match=(
            r'\.png is a RGB colour image: MMSegmentation reads label maps '
            r'as one class index per pixel')):
        check_segmentation_labels(upernet(str(root)))


@pytest.mark.parametrize('library, config', [
    # A mask-classification head for VOC's 20 classes beside background.
    ('mmseg', 'san/san-vit-b16_voc12aug-640x640.py'),
    # A dataset whose label map needs its data (and an optional package).
    ('mmseg', 'dsdl/voc.py'),
    # A 21k-class head on an ImageNet-type set whose labels are in a file.
    ('mmpretrain', 'efficientnet_v2/efficientnetv2-s_8xb32_in21k.py'),
    # Roots the datasets extend (data_root + 'coco/'), some datasets keeping
    # the base's.
    ('mmdet', 'mm_grounding_dino/odinw/'
     'grounding_dino_swin-t_pretrain_odinw35.py'),
    # data_root set again to the base's value over the base's datasets.
    ('mmdet', 'centernet/centernet_r18-dcnv2_8xb16-crop512-140e_coco.py'),
])
def test_library_configs_of_other_conventions_pass(library, config):
    from mmc2f.toolkit.cli import library_file
    cfg = Config.fromfile(library_file(library, 'configs', config))
    for check in (check_config_variables, check_detection_classes,
                  check_classification_classes, check_segmentation_labels):
        check(cfg)


@pytest.mark.parametrize('library, config', [
    # A wrapped training set (RepeatDataset).
    ('mmdet', 'atss/atss_r50_fpn_8xb8-amp-lsj-200e_coco.py'),
    ('mmseg', 'upernet/upernet_r18_4xb4-160k_ade20k-512x512.py'),
    ('mmpretrain', 'mocov3/mocov3_resnet50_8xb512-amp-coslr-100e_in1k.py'),
])
def test_library_configs_dumped_after_moving_their_datasets(
        tmp_path, library, config):
    """The libraries' configs as a work_dir holds them after a run whose
    options moved every dataset: their data_root variable no longer read."""
    from mmc2f.toolkit.cli import library_file
    cfg = Config.fromfile(library_file(library, 'configs', config))
    cfg.merge_from_dict({f'{where}.data_root': 'data/mine/'
                         for where, _ in leaf_datasets(cfg)})
    moved = dumped(cfg, tmp_path / 'moved.py')
    assert moved.data_root not in ('data/mine/', None)
    check_config_variables(moved)
