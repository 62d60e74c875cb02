# Copyright (c) mmc2f contributors. All rights reserved.
"""Grad-CAM of an ImageNet classifier on one image (paper Fig. 6).

    python tools/analysis/vis_cam.py CONFIG IMAGE [--checkpoint CKPT]
        [--target-category K] [--target-layer backbone.stages.3]
        [--out cam.png]

The mmpretrain ``ImageClassifier`` of CONFIG (e.g.
``configs/imagenet/conv2former-t_8xb128_in1k.py``) is built, the checkpoint
loaded (mmengine's ``load_checkpoint``), and the image prepared by the
config's test pipeline (resize the short edge to 256, centre crop 224) and
data preprocessor (ImageNet mean/std, BGR to RGB). Grad-CAM is the
``pytorch_grad_cam`` library's ``GradCAM`` on ``--target-layer`` (default:
the output of the backbone's last stage) for ``--target-category`` (default:
the predicted class); the overlay (``show_cam_on_image``) on the 224x224 crop
is saved to ``--out``.

Without ``--checkpoint`` the model keeps its initialisation (random unless the
config loads pretrained weights): the tool runs, but the CAM means nothing.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn

IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]


class LogitsModel(nn.Module):
    """``forward(x)`` returns the classifier's logits, as pytorch_grad_cam
    expects; ``x`` is the preprocessed (N, 3, H, W) batch."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(x, mode='tensor')
        if isinstance(logits, (tuple, list)):
            logits = logits[-1]
        return logits


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Grad-CAM of a classifier')
    parser.add_argument('config', help='mmpretrain classification config')
    parser.add_argument('image', help='image file')
    parser.add_argument('--checkpoint', help='classifier checkpoint')
    parser.add_argument('--target-category', type=int,
                        help='class whose CAM is drawn (default: predicted)')
    parser.add_argument('--target-layer',
                        help='module whose output is used, e.g. '
                        'backbone.stages.3 (default: the last stage)')
    parser.add_argument('--out', default='cam.png', help='overlay PNG')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    return parser.parse_args(argv)


def build_classifier(args: argparse.Namespace) -> Tuple[nn.Module, object]:
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    import mmc2f  # noqa: F401  (registers the modules; safe local loading)

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    register_all_modules()
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    # init_weights logs one line per parameter at INFO: keep warnings only.
    MMLogger.get_instance(f'vis_cam-{os.getpid()}', log_level='WARNING')

    model = MODELS.build(cfg.model)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu')
        print(f'Loaded {args.checkpoint}')
    else:
        model.init_weights()
        print('WARNING: no --checkpoint given: the classifier has random '
              'weights (unless its config loads pretrained ones), so this '
              'CAM is meaningless', file=sys.stderr)
    model.to(args.device).eval()
    return model, cfg


def preprocess(model: nn.Module, cfg, image: str,
               device: str) -> Tuple[torch.Tensor, np.ndarray]:
    """(1, 3, H, W) model input and the RGB float [0, 1] crop it shows."""
    pipeline_cfg = None
    if cfg.get('test_dataloader') is not None:
        pipeline_cfg = cfg.test_dataloader.dataset.get('pipeline')
    pipeline_cfg = pipeline_cfg or cfg.get('test_pipeline')
    if pipeline_cfg:
        from mmcv.transforms import Compose
        data = Compose(pipeline_cfg)(dict(img_path=image))
        inputs = data['inputs']  # uint8 (3, H, W), BGR as loaded by mmcv
        rgb = inputs.numpy().transpose(1, 2, 0)[..., ::-1]
        batch = model.data_preprocessor(
            dict(inputs=[inputs], data_samples=[data['data_samples']]),
            False)['inputs']
    else:  # resize 256 (short edge) / centre crop 224 / ImageNet mean-std
        from PIL import Image
        with Image.open(image) as img:
            img = img.convert('RGB')
            scale = 256 / min(img.size)
            img = img.resize((max(224, round(img.width * scale)),
                              max(224, round(img.height * scale))),
                             Image.BICUBIC)
            left, top = (img.width - 224) // 2, (img.height - 224) // 2
            rgb = np.asarray(img.crop((left, top, left + 224, top + 224)))
        norm = (rgb.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD
        batch = torch.from_numpy(norm.transpose(2, 0, 1).copy())[None]
    rgb = np.ascontiguousarray(rgb, dtype=np.float32) / 255.
    return batch.to(device).float(), rgb


def default_target_layer(model: nn.Module) -> str:
    stages = getattr(getattr(model, 'backbone', None), 'stages', None)
    if stages is None:
        raise SystemExit('the backbone has no "stages"; pass --target-layer')
    return f'backbone.stages.{len(stages) - 1}'


def class_name(cfg, index: int) -> str:
    head = cfg.model.get('head') or {}
    if head.get('num_classes') == 1000:
        from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
        return IMAGENET_CATEGORIES[index]
    return str(index)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.image):
        sys.exit(f'no image at {args.image}')
    from PIL import Image
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, cfg = build_classifier(args)
    batch, rgb = preprocess(model, cfg, args.image, args.device)
    wrapped = LogitsModel(model).eval()

    layer_name = args.target_layer or default_target_layer(model)
    try:
        target_layer = model.get_submodule(layer_name)
    except AttributeError as error:
        sys.exit(f'--target-layer {layer_name!r} is not a module of the '
                 f'model: {error}')

    with torch.no_grad():
        probs = wrapped(batch).softmax(-1)[0]
    top = int(probs.argmax())
    category = top if args.target_category is None else args.target_category
    if not 0 <= category < probs.numel():
        sys.exit(f'--target-category must be in [0, {probs.numel() - 1}]')
    print(f'Predicted class {top} ({class_name(cfg, top)}), '
          f'p={probs[top]:.4f}')
    print(f'Grad-CAM of class {category} ({class_name(cfg, category)}) at '
          f'{layer_name}')

    with GradCAM(model=wrapped, target_layers=[target_layer]) as cam:
        grayscale = cam(input_tensor=batch,
                        targets=[ClassifierOutputTarget(category)])[0]
    grayscale = np.nan_to_num(grayscale)
    overlay = show_cam_on_image(rgb, grayscale, use_rgb=True)
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    Image.fromarray(overlay).save(args.out)
    print(f'Saved CAM overlay ({overlay.shape[1]}x{overlay.shape[0]}) to '
          f'{args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
