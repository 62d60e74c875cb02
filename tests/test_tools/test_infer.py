"""tools/infer.py on real photographs shipped with installed packages, with a
checkpoint of each kind of model (detection, segmentation, classification)
saved the way mmengine's Runner saves one: the weights of a freshly built
model and the dataset's metainfo. The weights are not trained, so the test
checks what is drawn and written, not what is recognised."""
import importlib
import importlib.util
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image
from pycocotools import mask as mask_utils

from mmc2f.toolkit.overrides import SMALL_UPERNET, to_cli
from tests.test_e2e.helpers import REPO, imagenet_layout, tool_module

INFER = osp.join(REPO, 'tools/infer.py')
DET_CONFIG = 'configs/mask_rcnn/mask-rcnn_conv2former-n_fpn_amp-ms-crop-3x_coco.py'
SEG_CONFIG = ('configs/upernet/'
              'upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py')
CLS_CONFIG = 'configs/imagenet/conv2former-n_8xb128_in1k.py'
# An untrained detector scores every class about 1/81, below Mask R-CNN's
# test threshold of 0.05: keep all its 100 detections to have some to draw
# (test settings only: the weights are those of the config as it is).
DET_OPTIONS = {'model.test_cfg.rcnn.score_thr': 0.0}
SEG_OPTIONS = SMALL_UPERNET  # a narrower UperNet, quicker on a CPU


def photo(package: str, path: str) -> str:
    spec = importlib.util.find_spec(package)
    assert spec is not None, f'{package} (requirements/lock.txt) is missing'
    file = osp.join(osp.dirname(spec.origin), path)
    assert osp.isfile(file), file
    return file


PERSON = photo('matplotlib', 'mpl-data/sample_data/grace_hopper.jpg')
TEMPLE = photo('sklearn', 'datasets/images/china.jpg')
FLOWER = photo('sklearn', 'datasets/images/flower.jpg')


def runner_checkpoint(config: str, options: dict, path) -> list:
    """Save a freshly initialised model of the config as a Runner checkpoint
    (``meta.dataset_meta`` from the test dataset's class); its classes."""
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.merge_from_dict(dict(options, **{'model.backbone.init_cfg': None}))
    init_default_scope(cfg.default_scope)
    registry = importlib.import_module(f'{cfg.default_scope}.registry')
    torch.manual_seed(0)
    model = registry.MODELS.build(cfg.model)
    model.init_weights()
    dataset = registry.DATASETS.get(cfg.test_dataloader.dataset.type)
    meta = dict(dataset.METAINFO)
    torch.save(dict(meta=dict(dataset_meta=meta),
                    state_dict=model.state_dict()), path)
    return list(meta['classes'])


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Lazily saved checkpoints, one per (config, options), with classes."""
    folder = tmp_path_factory.mktemp('checkpoints')
    saved = {}

    def get(config: str, options: dict):
        key = (config, repr(sorted(options.items())))
        if key not in saved:
            path = folder / f'{len(saved)}.pth'
            saved[key] = path, runner_checkpoint(config, options, path)
        return saved[key]

    return get


def infer(*args) -> str:
    result = subprocess.run([sys.executable, INFER, *map(str, args)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[
        -3000:]
    return result.stdout


def read_outputs(out_dir, image: str):
    stem = osp.splitext(osp.basename(image))[0]
    with open(osp.join(out_dir, 'preds', stem + '.json')) as f:
        pred = json.load(f)
    picture = np.asarray(Image.open(osp.join(out_dir, 'vis', stem + '.png')))
    return pred, picture


def assert_drawn_on(picture: np.ndarray, image: str) -> None:
    original = np.asarray(Image.open(image).convert('RGB'))
    assert picture.shape == original.shape
    # Something was drawn over the photograph, which is still there.
    changed = np.abs(picture.astype(int) - original).max(-1) > 8
    assert 0.001 < changed.mean() < 1


def test_detection_boxes_and_masks(tmp_path, checkpoints):
    checkpoint, classes = checkpoints(DET_CONFIG, {})
    out_dir = tmp_path / 'out'
    stdout = infer(PERSON, DET_CONFIG, checkpoint, '--out-dir', out_dir,
                   '--device', 'cpu', '--score-thr', 0, '--cfg-options',
                   *to_cli(DET_OPTIONS))
    assert '100 instances, 100 scoring >= 0.0' in stdout, stdout
    pred, picture = read_outputs(out_dir, PERSON)
    assert pred['task'] == 'detection' and pred['image'] == PERSON
    n = len(pred['labels'])
    assert n == 100
    assert (len(pred['scores']) == len(pred['bboxes']) == len(pred['masks'])
            == len(pred['label_names']) == n)
    assert pred['label_names'] == [classes[i] for i in pred['labels']]
    assert pred['scores'] == sorted(pred['scores'], reverse=True)
    height, width = Image.open(PERSON).size[::-1]
    boxes = np.array(pred['bboxes'])
    assert boxes.shape == (n, 4)
    assert (boxes[:, :2] <= boxes[:, 2:]).all()
    assert boxes.min() >= 0 and (boxes[:, [0, 2]] <= width).all() and (
        boxes[:, [1, 3]] <= height).all()
    masks = mask_utils.decode(
        [dict(m, counts=m['counts'].encode()) for m in pred['masks']])
    assert masks.shape == (height, width, n) and masks.any()
    assert_drawn_on(picture, PERSON)


def test_segmentation_map(tmp_path, checkpoints):
    checkpoint, classes = checkpoints(SEG_CONFIG, SEG_OPTIONS)
    out_dir = tmp_path / 'out'
    stdout = infer(TEMPLE, SEG_CONFIG, checkpoint, '--out-dir', out_dir,
                   '--device', 'cpu', '--cfg-options', *to_cli(SEG_OPTIONS))
    assert 'largest classes: ' in stdout
    pred, picture = read_outputs(out_dir, TEMPLE)
    assert pred['task'] == 'segmentation'
    height, width = Image.open(TEMPLE).size[::-1]
    assert (pred['height'], pred['width']) == (height, width)
    segments = pred['segments']
    assert segments and all(s['label_name'] == classes[s['label']]
                            for s in segments)
    # The segments tile the image: one class per pixel.
    masks = [
        mask_utils.decode(mask_utils.frPyObjects(s['rle'], height, width))
        for s in segments
    ]
    assert [int(m.sum()) for m in masks] == [s['area'] for s in segments]
    assert (np.sum(masks, axis=0) == 1).all()
    assert_drawn_on(picture, TEMPLE)


def test_large_photos_scores_upsampled_in_groups_of_classes(tmp_path):
    """A photograph's label map from class scores upsampled a few classes
    at a time (as for a 24-megapixel photo, which would take 14 GB at once)
    is MMSegmentation's own, pixel for pixel."""
    from mmseg.apis import MMSegInferencer
    cfg = Config.fromfile(osp.join(REPO, SEG_CONFIG))
    cfg.merge_from_dict(dict(SEG_OPTIONS, **{'model.backbone.init_cfg': None}))
    inferencer = MMSegInferencer(cfg, device='cpu')
    whole = inferencer(TEMPLE)['predictions']
    height, width = whole.shape
    # 150 classes in groups of 40: three full groups and a partial one.
    original, groups = inferencer.model.postprocess_result, []

    def counted(seg_logits, data_samples=None):
        groups.append(seg_logits.shape[1])
        return original(seg_logits, data_samples)

    inferencer.model.postprocess_result = counted
    tool_module(INFER).upsample_scores_in_groups(
        inferencer.model, budget=40 * height * width * 4)
    assert np.array_equal(inferencer(TEMPLE)['predictions'], whole)
    assert groups == [40, 40, 40, 30]


def test_classification_label_on_a_folder(tmp_path, checkpoints):
    checkpoint, classes = checkpoints(CLS_CONFIG, {})
    images = tmp_path / 'images'
    images.mkdir()
    for image in (FLOWER, TEMPLE):
        shutil.copy(image, images)
    (images / 'notes.txt').write_text('not an image')
    out_dir = tmp_path / 'out'
    stdout = infer(images, CLS_CONFIG, checkpoint, '--out-dir', out_dir,
                   '--device', 'cpu')
    assert '2 image(s)' in stdout
    for image in (FLOWER, TEMPLE):
        pred, picture = read_outputs(out_dir, image)
        assert pred['task'] == 'classification'
        scores = np.array(pred['pred_scores'])
        assert scores.shape == (1000, ) and scores.sum() == pytest.approx(1)
        assert pred['pred_label'] == scores.argmax()
        assert pred['pred_score'] == pytest.approx(scores.max())
        assert pred['pred_class'] == classes[pred['pred_label']]
        assert f"{pred['pred_class']} ({pred['pred_score']:.2f})" in stdout
        assert_drawn_on(picture, image)


def test_library_inferencers_take_our_config_paths(checkpoints):
    """The README's snippet: each library's inferencer, given the path of
    one of our configs, imports mmc2f through its custom_imports."""
    from mmdet.apis import DetInferencer
    from mmengine.registry import init_default_scope
    from mmpretrain.apis import ImageClassificationInferencer
    from mmseg.apis import MMSegInferencer
    det = DetInferencer(osp.join(REPO, DET_CONFIG),
                        str(checkpoints(DET_CONFIG, {})[0]), device='cpu')
    assert set(det(PERSON)['predictions'][0]) >= {'labels', 'bboxes', 'masks'}
    seg = MMSegInferencer(osp.join(REPO, SEG_CONFIG),
                          str(checkpoints(SEG_CONFIG, {})[0]), device='cpu')
    height, width = Image.open(TEMPLE).size[::-1]
    assert seg(TEMPLE)['predictions'].shape == (height, width)
    checkpoint, classes = checkpoints(CLS_CONFIG, {})
    # It builds its pipeline in the current default scope (the README says
    # so), which MMSegInferencer left at mmseg.
    init_default_scope('mmpretrain')
    cls = ImageClassificationInferencer(osp.join(REPO, CLS_CONFIG),
                                        pretrained=str(checkpoint),
                                        device='cpu')
    assert cls(FLOWER)[0]['pred_class'] in classes


# Three class names in the config, as a user sets them in options, for
# heads of COCO's 80 and ImageNet's 1000 classes (the inferencers fell back
# to COCO's and ImageNet's names): the labels beyond them are named by their
# number. The detector keeps all its detections, at a small scale.
SHAPES = ('rectangle', 'ellipse', 'triangle')
OWN_NAMES = {'test_dataloader.dataset.metainfo.classes': SHAPES}
OWN_DET = dict(DET_OPTIONS, **OWN_NAMES,
               **{'test_dataloader.dataset.pipeline.1.scale': (128, 128)})
# ADE20k's last class: MMSegInferencer fell back to Cityscapes' 19 names.
FLAG = 149
# The label each checkpoint is made to predict, by its bias: the
# segmentor's ADE20k's last class everywhere, the classifier's the second.
FAVOURED = {'decode_head.conv_seg.bias': FLAG, 'head.fc.bias': 1}


def resaved(checkpoint, path, meta: dict) -> str:
    """The checkpoint with ``meta`` instead of the Runner's, predicting its
    FAVOURED label."""
    state = torch.load(checkpoint, weights_only=True)['state_dict']
    for key, label in FAVOURED.items():
        if key in state:
            state[key][label] += 100
    torch.save(dict(meta=meta, state_dict=state), path)
    return str(path)


def infer_in_process(image: str, config: str, checkpoint: str, out_dir,
                     options: dict) -> dict:
    """tools/infer.py's main in this process (the libraries are imported
    already); the prediction written for ``image``."""
    assert load_tool().main([
        image, config, checkpoint, '--out-dir', str(out_dir), '--device',
        'cpu', '--cfg-options', *to_cli(options)]) == 0
    return read_outputs(out_dir, image)[0]


@pytest.mark.parametrize('config, built_with, options', [
    (DET_CONFIG, {}, OWN_DET), (SEG_CONFIG, SEG_OPTIONS, SEG_OPTIONS),
    (CLS_CONFIG, {}, OWN_NAMES)
], ids=['detection', 'segmentation', 'classification'])
def test_a_checkpoint_without_class_names(tmp_path, checkpoints, config,
                                          built_with, options):
    """A checkpoint whose meta holds no class names (saved by other code
    than mmengine's Runner): its classes are named as the config's test
    dataset names them, as tools/test.py does, and a class beyond the names
    by its number. Before, infer.py stopped with IndexError on the ADE20k
    segmentor's label 149, and named the classes as COCO's person, bicycle,
    car or ImageNet's tench, goldfish, shark."""
    checkpoint = resaved(checkpoints(config, built_with)[0],
                         tmp_path / 'bare.pth', {})
    image = str(tmp_path / 'temple.png')
    Image.open(TEMPLE).resize((96, 64)).save(image)
    pred = infer_in_process(image, config, checkpoint, tmp_path / 'out',
                            options)
    if pred['task'] == 'detection':
        assert pred['label_names'] == [
            SHAPES[i] if i < len(SHAPES) else str(i) for i in pred['labels']]
    elif pred['task'] == 'segmentation':
        assert [(s['label'], s['label_name']) for s in pred['segments']] == [
            (FLAG, 'flag')]
    else:
        assert (pred['pred_label'], pred['pred_class']) == (1, 'ellipse')


def test_labels_beyond_the_checkpoints_names(tmp_path, checkpoints):
    """A checkpoint naming fewer classes than the head predicts: a label
    beyond the names is named by its number, never an IndexError."""
    checkpoint = resaved(
        checkpoints(SEG_CONFIG, SEG_OPTIONS)[0], tmp_path / 'two.pth',
        dict(dataset_meta=dict(classes=('wall', 'building'))))
    image = str(tmp_path / 'temple.png')
    Image.open(TEMPLE).resize((96, 64)).save(image)
    pred = infer_in_process(image, SEG_CONFIG, checkpoint, tmp_path / 'out',
                            SEG_OPTIONS)
    assert [(s['label'], s['label_name']) for s in pred['segments']] == [
        (FLAG, str(FLAG))]


def load_tool():
    return tool_module(INFER)


def test_uncompressed_rle_reads_back_with_pycocotools():
    tool = load_tool()
    rng = np.random.default_rng(0)
    for mask in (rng.random((7, 5)) > 0.5, np.ones((3, 4), bool),
                 np.zeros((4, 3), bool)):
        rle = tool.uncompressed_rle(mask)
        assert sum(rle['counts']) == mask.size
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, *mask.shape))
        np.testing.assert_array_equal(decoded, mask)


@pytest.mark.parametrize('args, message', [
    (['missing.jpg', CLS_CONFIG, INFER],
     "'missing.jpg' is neither an image file nor a folder"),
    (['{empty}', CLS_CONFIG, INFER], 'no image (.jpg'),
    ([FLOWER, CLS_CONFIG, 'missing.pth'], "checkpoint 'missing.pth' is not"),
    ([FLOWER, SEG_CONFIG, INFER, '--score-thr', '0.5'],
     '--score-thr applies to detection configs; '),
])
def test_bad_input_is_named(tmp_path, args, message):
    args = [a.format(empty=tmp_path) for a in args]
    result = subprocess.run([sys.executable, INFER, *args], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]


def test_images_whose_outputs_would_collide_are_refused(tmp_path):
    shutil.copy(FLOWER, tmp_path / 'photo.jpg')
    Image.open(FLOWER).save(tmp_path / 'photo.png')
    with pytest.raises(ValueError, match=r"several images named \['photo'\]"):
        load_tool().list_images(str(tmp_path))


def test_a_folders_animated_gif_is_predicted_on_its_first_frame(
        tmp_path, checkpoints):
    """OpenCV reads GIF: a folder's GIF (any case of the extension) is
    predicted and drawn on its first frame, as one given alone is. Before,
    a folder's GIFs were left out without a word."""
    images = tmp_path / 'images'
    images.mkdir()
    red, blue = (Image.new('RGB', (64, 48), c) for c in ('red', 'blue'))
    red.save(images / 'anim.GIF', save_all=True, append_images=[blue])
    Image.open(FLOWER).resize((64, 48)).save(images / 'photo.png')
    tool = load_tool()
    assert tool.list_images(str(images)) == [
        str(images / 'anim.GIF'), str(images / 'photo.png')]
    checkpoint, _ = checkpoints(CLS_CONFIG, {})
    out_dir = tmp_path / 'out'
    assert tool.main([str(images), CLS_CONFIG, str(checkpoint), '--out-dir',
                      str(out_dir), '--device', 'cpu']) == 0
    pred, picture = read_outputs(out_dir, str(images / 'anim.GIF'))
    assert pred['task'] == 'classification' and picture.shape == (48, 64, 3)
    # The label is drawn over the red first frame, not the blue second.
    colours, counts = np.unique(picture.reshape(-1, 3), axis=0,
                                return_counts=True)
    assert colours[counts.argmax()].tolist() == [255, 0, 0]


def test_files_that_cannot_be_read_are_skipped(tmp_path, checkpoints):
    """A truncated photo, an empty file, macOS's ``._`` sidecar and a folder
    named like an image: the readable images are all done, the unreadable
    files named, and the exit status says something was skipped."""
    checkpoint, _ = checkpoints(CLS_CONFIG, {})
    images = tmp_path / 'images'
    images.mkdir()
    shutil.copy(FLOWER, images / 'a.jpg')
    shutil.copy(TEMPLE, images / 'z.JFIF')
    with open(FLOWER, 'rb') as f:
        (images / 'm_truncated.jpg').write_bytes(f.read(300))
    (images / 'n_empty.png').write_bytes(b'')
    (images / '._a.jpg').write_bytes(b'\x00\x05\x16\x07 AppleDouble')
    (images / 'album.jpg').mkdir()
    out_dir = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, INFER, images, CLS_CONFIG, checkpoint, '--out-dir',
         out_dir, '--device', 'cpu'], cwd=REPO, capture_output=True,
        text=True)
    assert result.returncode == 1, result.stderr[-3000:]
    assert '2 image(s)' in result.stdout
    for image in ('a.jpg', 'z.JFIF'):
        pred, _ = read_outputs(out_dir, str(images / image))
        assert pred['task'] == 'classification'
    assert f"{images / 'm_truncated.jpg'}: skipped, " in result.stderr
    assert f"{images / 'n_empty.png'}: skipped, " in result.stderr
    assert '2 file(s) could not be read or predicted and were skipped' \
        in result.stderr
    assert '._a.jpg' not in result.stderr + result.stdout


def test_an_image_the_model_cannot_take_is_skipped(tmp_path, checkpoints):
    """A 1x300 strip is 512x7 after UperNet's resize, too narrow for the
    backbone: that image is named with the model's reason, the next one is
    still done."""
    checkpoint, _ = checkpoints(SEG_CONFIG, SEG_OPTIONS)
    images = tmp_path / 'images'
    images.mkdir()
    photo = Image.open(TEMPLE)
    photo.resize((1, 300)).save(images / 'a_strip.png')
    photo.resize((96, 64)).save(images / 'b_small.png')
    out_dir = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, INFER, images, SEG_CONFIG, checkpoint, '--out-dir',
         out_dir, '--device', 'cpu', '--cfg-options', *to_cli(SEG_OPTIONS)],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-3000:]
    assert (f"{images / 'a_strip.png'}: skipped, its prediction failed: "
            'ValueError: ') in result.stderr
    assert 'must be >= 32' in result.stderr
    pred, _ = read_outputs(out_dir, str(images / 'b_small.png'))
    assert (pred['height'], pred['width']) == (64, 96)
    assert '1 image(s)' in result.stdout
    assert 'No image was predicted' not in result.stderr
    # Where no image is predicted, the first failure's traceback says where.
    result = subprocess.run(
        [sys.executable, INFER, images / 'a_strip.png', SEG_CONFIG,
         checkpoint, '--out-dir', out_dir, '--device', 'cpu',
         '--cfg-options', *to_cli(SEG_OPTIONS)],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert 'No image was predicted; the first failure:\nTraceback' \
        in result.stderr


def test_a_checkpoint_of_another_model_is_refused(tmp_path, checkpoints):
    """mmengine loads with strict=False: a Conv2Former-T classifier's file
    given with the N config would otherwise predict with random weights,
    through infer.py and test.py alike."""
    checkpoint, _ = checkpoints(CLS_CONFIG.replace('-n_', '-t_'), {})
    data = [f'{k}={v}' for k, v in imagenet_layout(
        str(tmp_path / 'data')).items()]
    for tool, args in ((INFER, [FLOWER, CLS_CONFIG, checkpoint, '--out-dir',
                                tmp_path / 'out', '--device', 'cpu']),
                       (osp.join(REPO, 'tools/test.py'),
                        [CLS_CONFIG, checkpoint, '--work-dir', tmp_path,
                         '--cfg-options', *data])):
        result = subprocess.run([sys.executable, tool, *map(str, args)],
                                cwd=REPO, capture_output=True, text=True)
        assert result.returncode != 0
        assert (f'error: {checkpoint} is not a checkpoint of this '
                'ImageClassifier: ') in result.stderr, result.stderr[-3000:]
        assert 'differ in shape' in result.stderr
    assert not (tmp_path / 'out' / 'preds').exists() or not os.listdir(
        tmp_path / 'out' / 'preds')
