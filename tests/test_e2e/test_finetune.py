"""The README's fine-tuning recipe, run as written from a user's project
folder: a COCO-format set in data/my_coco, the authors' released ImageNet
checkpoint converted to checkpoints/, tools/train.py with the example config.
Only the image scale and the number of epochs are cut for a CPU."""
import os
import os.path as osp
import subprocess
import sys

import torch

from mmc2f.models import Conv2Former
from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
from mmc2f.toolkit.synthetic_data import make_coco_shapes
from mmc2f.toolkit.overrides import scale_images, to_cli
from mmc2f.toolkit.released_reference import make_released_state_dict
from tests.test_e2e.helpers import REPO, load

CONVERTER = osp.join(REPO, 'tools/model_converters/conv2former_to_mmc2f.py')
CONFIG = ('configs/mask_rcnn/finetune/'
          'mask-rcnn_conv2former-t_fpn_amp-ms-crop-1x_custom-coco.py')


def run(cwd, *args) -> str:
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='2')
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd,
                            env=env, capture_output=True, text=True,
                            timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def test_finetune_recipe_as_written(tmp_path):
    # The recipe's data command, the README's layout.
    make_coco_shapes(str(tmp_path / 'data/my_coco'), num_train=4, num_val=2)
    # A released-format Conv2Former-T file through the converter.
    tiny = ARCH_SETTINGS['tiny']
    released = tmp_path / 'conv2former_t.pth'
    torch.save(
        dict(state_dict=make_released_state_dict(
            tiny['channels'], tiny['depths'], tiny['kernel_size'], seed=1)),
        released)
    pretrained = tmp_path / 'checkpoints/conv2former-t_in1k_mmc2f.pth'
    run(tmp_path, CONVERTER, released, pretrained)

    output = run(tmp_path, osp.join(REPO, 'tools/train.py'),
                 osp.join(REPO, CONFIG), '--cfg-options',
                 *to_cli(dict(scale_images(load(CONFIG), 0.2),
                              **{'train_cfg.max_epochs': 1})))
    # The pretrained backbone was loaded, and validation found its
    # annotations.
    assert 'checkpoints/conv2former-t_in1k_mmc2f.pth' in output
    assert output.count('coco/segm_mAP: ') == 1, output[-3000:]

    work_dir = tmp_path / 'work_dirs' / osp.splitext(osp.basename(CONFIG))[0]
    checkpoint = torch.load(work_dir / 'epoch_1.pth', map_location='cpu',
                            weights_only=False)
    assert checkpoint['meta']['dataset_meta']['classes'] == (
        'rectangle', 'ellipse', 'triangle')
    state = checkpoint['state_dict']
    assert state['roi_head.bbox_head.fc_cls.weight'].shape[0] == 3 + 1

    # frozen_stages=1: the stem and stage 0 keep the ImageNet weights, the
    # later stages are trained.
    pretrained = torch.load(pretrained, map_location='cpu')['state_dict']
    backbone = Conv2Former(arch='tiny', frozen_stages=1)
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad]
    trained = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert frozen and trained
    for name in frozen:
        assert torch.equal(state[f'backbone.{name}'],
                           pretrained[f'backbone.{name}']), name
    changed = [
        n for n in trained
        if not torch.equal(state[f'backbone.{n}'], pretrained[f'backbone.{n}'])
    ]
    assert len(changed) > 0.9 * len(trained)
