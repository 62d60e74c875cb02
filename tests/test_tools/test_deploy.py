"""tools/deploy.py on real photographs that installed packages ship, with
Runner checkpoints (freshly initialised weights, as tools/train.py saves
them) of the four deployed models, narrowed with --cfg-options to run in
seconds: the files it writes, the ONNX file's inputs and outputs, ONNX
Runtime's parity with PyTorch (at a second size for --dynamic), the errors,
and the documentation's example that runs the file with onnxruntime and
numpy only. docs/deployment.md has the full-size models' numbers."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmc2f.toolkit.deploy import ExportError, deploy, staged_work_dir
from mmc2f.toolkit.overrides import SMALL_MASK_RCNN, SMALL_UPERNET
from tests.test_e2e.helpers import REPO, tool_module
from tests.test_tools.test_infer import (FLOWER, PERSON, TEMPLE,
                                         runner_checkpoint)

DOCS = osp.join(REPO, 'docs', 'deployment.md')
# Untrained detectors score every class about 1/81, below the test
# threshold of 0.05: both runtimes keep their best 30 boxes, so that real
# sets are compared.
KEEP_BOXES = {
    'model.test_cfg.rcnn.score_thr': 0.0,
    'model.test_cfg.rcnn.max_per_img': 30,
}
# Conv2Former-N, and SMALL_MASK_RCNN's narrower heads for each of the
# cascade's three box heads (with four convs) and its mask head.
CASCADE_SMALL = {
    'model.backbone.arch': 'nano',
    'model.neck.in_channels': [64, 128, 256, 512],
    **{key.replace('bbox_head', f'bbox_head.{stage}'): value
       for key, value in SMALL_MASK_RCNN.items()
       if key.startswith('model.') and 'train_cfg' not in key
       for stage in range(3)},
    **{f'model.roi_head.bbox_head.{stage}.conv_out_channels': 128
       for stage in range(3)},
}
# name: config, --cfg-options, image, size arguments of deploy()
CASES = {
    'mask_rcnn': (
        'configs/mask_rcnn/mask-rcnn_conv2former-n_fpn_amp-ms-crop-3x_coco.py',
        # The test pipeline's 800 x 1333 scaled down to 96 x 128.
        dict(SMALL_MASK_RCNN, **KEEP_BOXES,
             **{'test_dataloader.dataset.pipeline.1.scale': (128, 96)}),
        PERSON, dict(dynamic=True)),
    'cascade_mask_rcnn': (
        'configs/cascade_mask_rcnn/'
        'cascade-mask-rcnn_conv2former-t_fpn_4conv1fc-giou_amp-ms-crop-3x_'
        'coco.py', dict(CASCADE_SMALL, **KEEP_BOXES), PERSON,
        dict(shape=(64, 64))),
    'upernet': (
        'configs/upernet/'
        'upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py',
        dict(SMALL_UPERNET,
             **{'test_dataloader.dataset.pipeline.1.scale': (256, 64)}),
        TEMPLE, dict(dynamic=True)),
}
CLS_CONFIG = 'configs/imagenet/conv2former-n_8xb128_in1k.py'
CLS_SHAPE = (64, 96)
OUTPUTS = {'mask_rcnn': ['dets', 'labels', 'masks'],
           'cascade_mask_rcnn': ['dets', 'labels', 'masks'],
           'upernet': ['output'], 'classification': ['output']}


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp('deploy')


@pytest.fixture(scope='module')
def crop(folder):
    """A 64 x 96 crop of a photograph, lossless: the classifier's input at
    its export size, so that the example's resizing is the identity."""
    rgb = np.asarray(Image.open(FLOWER).convert('RGB'))[150:214, 250:346]
    path = str(folder / 'flower_crop.png')
    Image.fromarray(rgb).save(path)
    return path, rgb


@pytest.fixture(scope='module')
def deployed(folder, crop):
    """Each case exported once: its work dir and parity.json's fields. The
    classifier goes through the command line's main()."""
    done = {}

    def get(name: str):
        if name in done:
            return done[name]
        work_dir = str(folder / name)
        if name == 'classification':
            checkpoint = str(folder / f'{name}.pth')
            runner_checkpoint(CLS_CONFIG, {}, checkpoint)
            tool_module(osp.join(REPO, 'tools', 'deploy.py')).main([
                osp.join(REPO, CLS_CONFIG), checkpoint, crop[0],
                '--work-dir', work_dir, '--shape', *map(str, CLS_SHAPE),
                '--repeat', '1', '--threads', '1'])
            parity = read_parity(work_dir)
        else:
            config, options, image, size = CASES[name]
            checkpoint = str(folder / f'{name}.pth')
            runner_checkpoint(config, options, checkpoint)
            parity = deploy(osp.join(REPO, config), checkpoint, image,
                            work_dir, cfg_options=options, repeat=1,
                            threads=1, **size)
            assert parity == read_parity(work_dir)
        done[name] = work_dir, parity
        return done[name]

    return get


def read_parity(work_dir: str) -> dict:
    with open(osp.join(work_dir, 'parity.json')) as f:
        return json.load(f)


def assert_parity(name: str, fields: dict) -> None:
    if name in ('mask_rcnn', 'cascade_mask_rcnn'):
        assert fields['pytorch_boxes'] > 0, fields  # a real set
        assert fields['matched_boxes'] >= 0.99, fields
        assert fields['max_score_diff'] <= 1e-3, fields
        assert fields['mask_iou_min'] >= 0.98, fields
    elif name == 'upernet':
        assert fields['pixel_agreement'] >= 0.999, fields
    else:
        assert fields['max_rel_err'] <= 1e-4, fields
    assert fields['onnxruntime_ms'] > 0 and fields['pytorch_ms'] > 0


@pytest.mark.parametrize('name', [*CASES, 'classification'])
def test_onnx_runtime_matches_pytorch(deployed, name):
    work_dir, parity = deployed(name)
    assert sorted(os.listdir(work_dir)) == ['end2end.onnx', 'parity.json']
    assert_parity(name, parity)
    model = onnx.load(osp.join(work_dir, 'end2end.onnx'))
    # Standard ONNX operators only: no custom op, no plugin.
    assert {node.domain for node in model.graph.node} <= {'', 'ai.onnx'}
    assert [i.name for i in model.graph.input] == ['input']
    assert [o.name for o in model.graph.output] == OUTPUTS[name]
    dims = [d.dim_param or d.dim_value
            for d in model.graph.input[0].type.tensor_type.shape.dim]
    if parity['dynamic']:
        assert isinstance(dims[2], str) and isinstance(dims[3], str), dims
        second = parity['second_size']
        assert second['input_shape'][2:] != parity['input_shape'][2:]
        assert_parity(name, second)
    else:
        assert dims == parity['input_shape']


@pytest.mark.parametrize('config, options, message', [
    ('configs/dino/dino-4scale_conv2former-t_8xb2-12e_coco.py', None,
     'cannot export DINO: the mmdet export covers TwoStageDetector'),
    (CASES['mask_rcnn'][0], {'model.test_cfg.rcnn.nms.type': 'soft_nms'},
     "cannot export MaskRCNN.test_cfg.rcnn: its NMS is 'soft_nms'"),
], ids=['DINO', 'soft_nms'])
def test_unexportable_model_is_named(tmp_path, config, options, message):
    # Said before the checkpoint is read: no file is needed.
    work_dir = tmp_path / 'out'
    with pytest.raises(ExportError, match=re.escape(message)):
        deploy(osp.join(REPO, config), str(tmp_path / 'unread.pth'), PERSON,
               str(work_dir), cfg_options=options)
    assert not work_dir.exists()


def test_checkpoint_that_does_not_fit(tmp_path):
    """The message of tools/test.py (CheckpointLoadError), and no work
    dir."""
    checkpoint = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=dict(weight=torch.zeros(3))), checkpoint)
    work_dir = tmp_path / 'out'
    with pytest.raises(SystemExit) as exit_info:
        tool_module(osp.join(REPO, 'tools', 'deploy.py')).main([
            osp.join(REPO, CASES['mask_rcnn'][0]), checkpoint, PERSON,
            '--work-dir', str(work_dir)])
    message = str(exit_info.value)
    assert message.startswith('error: ') and 'is not a checkpoint of this ' \
        'MaskRCNN' in message and 'tools/train.py' in message, message
    assert not work_dir.exists()


def test_failure_leaves_no_complete_looking_work_dir(tmp_path):
    new = tmp_path / 'new'
    with pytest.raises(RuntimeError):
        with staged_work_dir(str(new)) as staging:
            (open(osp.join(staging, 'end2end.onnx'), 'w')).close()
            raise RuntimeError('the export failed')
    assert os.listdir(tmp_path) == []  # neither the dir nor its staging
    with staged_work_dir(str(new)) as staging:
        for name in ('end2end.onnx', 'parity.json'):
            with open(osp.join(staging, name), 'w') as f:
                f.write('first')
    # A failed second run leaves the first one's files as they were.
    with pytest.raises(KeyboardInterrupt):
        with staged_work_dir(str(new)) as staging:
            with open(osp.join(staging, 'end2end.onnx'), 'w') as f:
                f.write('second')
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ['new']
    for name in ('end2end.onnx', 'parity.json'):
        assert (new / name).read_text() == 'first'


def docs_example(folder) -> str:
    """The Python block of docs/deployment.md's section on running the
    file without mmc2f, as a script."""
    with open(DOCS) as f:
        text = f.read()
    section = text.split('## Running it without mmc2f', 1)[1]
    code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    path = str(folder / 'deploy_example.py')
    with open(path, 'w') as f:
        f.write(code)
    return path


def test_docs_example_needs_onnxruntime_and_numpy_only(folder, crop,
                                                       deployed):
    from mmc2f.toolkit.deploy.inputs import build_model, preprocess
    work_dir, _ = deployed('classification')
    example = docs_example(folder)
    image = str(folder / 'crop.npy')
    np.save(image, crop[1])
    # Nothing of mmc2f, torch or OpenMMLab is imported.
    code = (
        'import runpy, sys\n'
        f'sys.argv = ["x", {work_dir + "/end2end.onnx"!r}, {image!r}, '
        f'"{CLS_SHAPE[0]}", "{CLS_SHAPE[1]}"]\n'
        f'runpy.run_path({example!r}, run_name="__main__")\n'
        'found = {m.split(".")[0] for m in sys.modules} & {"torch", '
        '"mmc2f", "mmcv", "mmengine", "mmdet", "mmseg", "mmpretrain", '
        '"cv2", "PIL"}\n'
        'assert not found, found\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=str(folder),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and all(re.fullmatch(r'class \d+: 0\.\d{4}', line)
                                   for line in lines), lines
    # Its input is the one the tool checked (the crop is at the export's
    # size: both resizes are the identity).
    cfg = Config.fromfile(osp.join(REPO, CLS_CONFIG))
    expected = preprocess(cfg, build_model(cfg), crop[0], CLS_SHAPE)
    inputs = tool_module(example).preprocess(crop[1], *CLS_SHAPE)
    np.testing.assert_allclose(inputs, expected['inputs'].numpy(),
                               atol=1e-6)


def test_roi_features_follow_the_data(tmp_path):
    """RoIs per pyramid level, traced with (1, 2, 0, 0) RoIs per level and
    run with (0, 3, 1, 0): what MMDetection's SingleRoIExtractor gives."""
    import onnxruntime as ort
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

    from mmc2f.toolkit.deploy.detection import (End2EndDetector,
                                                standard_roi_align)
    extractor = SingleRoIExtractor(
        dict(type='RoIAlign', output_size=7, sampling_ratio=0),
        out_channels=8, featmap_strides=[4, 8, 16, 32])
    torch.manual_seed(0)
    feats = [torch.randn(1, 8, 512 // s, 512 // s) for s in (4, 8, 16, 32)]

    def rois(*sides):  # square boxes; level 0 below 112 pixels, ...
        return torch.tensor([[0, 10, 20, 10 + s, 20 + s] for s in sides],
                            dtype=torch.float32)

    class Extract(torch.nn.Module):

        def forward(self, rois, *feats):
            return End2EndDetector.roi_features(extractor, feats, rois)

    path = str(tmp_path / 'roi.onnx')
    with standard_roi_align():
        torch.onnx.export(Extract(), (rois(50, 150, 160), *feats), path,
                          opset_version=17, input_names=['rois', 'a', 'b',
                                                         'c', 'd'],
                          dynamic_axes={'rois': {0: 'n'}}, dynamo=False)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    run_rois = rois(150, 170, 300, 190)
    out = session.run(None, dict(zip(['rois', 'a', 'b', 'c', 'd'],
                                     [x.numpy() for x in (run_rois,
                                                          *feats)])))[0]
    with torch.no_grad():
        expected = extractor(feats, run_rois)
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-5)
