"""The ImageNet configs through tools/train.py and tools/test.py (the
mmpretrain scope of the same CLI) on a small generated folder dataset."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from mmc2f.toolkit.overrides import to_cli
from tests.test_e2e.helpers import REPO, run_tool, written_images

CONFIG = 'configs/imagenet/conv2former-n_8xb128_in1k.py'


@pytest.fixture(scope='module')
def folder_dataset(tmp_path_factory):
    """ImageNet layout: split/class/image.jpg, three colour classes."""
    root = str(tmp_path_factory.mktemp('imagenet'))
    rng = np.random.default_rng(0)
    for split, count in (('train', 4), ('val', 2)):
        for label, colour in enumerate(((200, 40, 40), (40, 200, 40),
                                        (40, 40, 200))):
            os.makedirs(osp.join(root, split, f'class{label}'))
            for i in range(count):
                image = rng.integers(0, 40, (64, 64, 3)) + colour
                name = f'{label}_{i}.jpg'  # drawings are saved by file name
                cv2.imwrite(osp.join(root, split, f'class{label}', name),
                            np.clip(image, 0, 255).astype(np.uint8))
    return root


def test_imagenet_config_train_then_test(tmp_path, folder_dataset):
    options = {}
    for split in ('train', 'val', 'test'):
        # mmpretrain's ImageNet dataset reads the class folders of data_root.
        options.update({
            f'{split}_dataloader.dataset.data_root': folder_dataset,
            f'{split}_dataloader.dataset.metainfo.classes':
            ('class0', 'class1', 'class2'),
            f'{split}_dataloader.batch_size': 4,
        })
    # Three classes: the head, the Mixup/CutMix targets and top-k (tools/
    # train.py refuses ImageNet's 1000 and top-5 for them).
    options.update({'model.head.num_classes': 3,
                    'data_preprocessor.num_classes': 3,
                    'val_evaluator.topk': (1, ),
                    'test_evaluator.topk': (1, )})
    # Two epochs: one of warm-up, one of the cosine schedule.
    options.update({'train_cfg.max_epochs': 2, 'param_scheduler.0.end': 1,
                    'param_scheduler.1.begin': 1})
    work_dir = str(tmp_path / 'work')
    run_tool(osp.join(REPO, 'tools/train.py'), CONFIG, '--work-dir', work_dir,
             '--cfg-options', *to_cli(options))
    checkpoint = osp.join(work_dir, 'epoch_2.pth')
    assert osp.isfile(checkpoint)
    show_dir = str(tmp_path / 'vis')
    output = run_tool(osp.join(REPO, 'tools/test.py'), CONFIG, checkpoint,
                      '--work-dir', work_dir, '--out',
                      str(tmp_path / 'preds.pkl'), '--show-dir', show_dir,
                      '--cfg-options', *to_cli(options))
    assert 'accuracy/top1' in output
    assert osp.isfile(tmp_path / 'preds.pkl')
    assert len(written_images(show_dir)) == 6
