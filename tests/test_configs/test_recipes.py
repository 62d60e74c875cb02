"""Each downstream config against the library's ConvNeXt config of the same
experiment: every setting is ConvNeXt's except the ones a Conv2Former
backbone must change, listed here key by key."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.hub import get_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def flatten(value, prefix=''):
    """A config as {'a.b.0.c': leaf}."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {prefix[:-1]: value}
    flat = {}
    for key, item in items:
        flat.update(flatten(item, f'{prefix}{key}.'))
    if not flat:
        flat[prefix[:-1]] = value
    return flat


def differing_keys(ours, theirs):
    a, b = flatten(ours.to_dict()), flatten(theirs.to_dict())
    # get_config marks each of the library config's modules with its scope.
    return {k for k in set(a) | set(b) if not k.endswith('._scope_')
            and a.get(k, '<absent>') != b.get(k, '<absent>')}


# Keys a Conv2Former config changes in any of them: the imports, the
# backbone, the input channels of what reads it, the layer-decay
# constructor that reads the backbone's own depths, the checkpoint file and
# the RNG-state hook for exact resumes.
COMMON = ('custom_imports', 'model.backbone', 'optim_wrapper.constructor',
          'optim_wrapper.paramwise_cfg', 'checkpoint_file', 'custom_hooks')

CASES = [
    ('mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py',
     'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py',
     ('model.neck.in_channels', )),
    ('cascade_mask_rcnn/cascade-mask-rcnn_conv2former-t_fpn_4conv1fc-giou_'
     'amp-ms-crop-3x_coco.py',
     'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_'
     'amp-ms-crop-3x_coco.py', ('model.neck.in_channels', )),
    ('cascade_mask_rcnn/cascade-mask-rcnn_conv2former-s_fpn_4conv1fc-giou_'
     'amp-ms-crop-3x_coco.py',
     'mmdet::convnext/cascade-mask-rcnn_convnext-s-p4-w7_fpn_4conv1fc-giou_'
     'amp-ms-crop-3x_coco.py', ('model.neck.in_channels', )),
    # mmdet has no ConvNeXt-B cascade: B differs from T's only in the
    # backbone, FPN channels and the ConvNeXt repo's B values (decay 0.8).
    ('cascade_mask_rcnn/cascade-mask-rcnn_conv2former-b_fpn_4conv1fc-giou_'
     'amp-ms-crop-3x_coco.py',
     'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_'
     'amp-ms-crop-3x_coco.py', ('model.neck.in_channels', )),
    ('upernet/upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py',
     'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py',
     ('model.decode_head.in_channels', 'model.auxiliary_head.in_channels')),
    ('upernet/upernet_conv2former-s_8xb2-amp-160k_ade20k-512x512.py',
     'mmseg::convnext/convnext-small_upernet_8xb2-amp-160k_ade20k-512x512.py',
     ('model.decode_head.in_channels', 'model.auxiliary_head.in_channels')),
    ('upernet/upernet_conv2former-b_8xb2-amp-160k_ade20k-512x512.py',
     'mmseg::convnext/convnext-base_upernet_8xb2-amp-160k_ade20k-512x512.py',
     ('model.decode_head.in_channels', 'model.auxiliary_head.in_channels')),
    ('upernet/upernet_conv2former-l_in21k-pre_8xb2-amp-160k_ade20k-'
     '640x640.py',
     'mmseg::convnext/convnext-large_upernet_8xb2-amp-160k_ade20k-640x640.py',
     ('model.decode_head.in_channels', 'model.auxiliary_head.in_channels')),
]


@pytest.mark.parametrize('ours, theirs, also', CASES,
                         ids=[c[0].split('/')[1] for c in CASES])
def test_config_departs_from_convnext_only_where_it_must(ours, theirs, also):
    ours = Config.fromfile(osp.join(REPO, 'configs', ours))
    theirs = get_config(theirs)
    allowed = COMMON + also
    departures = {
        k for k in differing_keys(ours, theirs)
        if not any(k == a or k.startswith(a + '.') for a in allowed)
    }
    assert not departures, sorted(departures)


@pytest.mark.parametrize('ours, theirs, also', CASES,
                         ids=[c[0].split('/')[1] for c in CASES])
def test_drop_path_and_decay_rate_are_convnexts(ours, theirs, also):
    """Within the backbone and constructor settings, the values the recipe
    names keep ConvNeXt's (the B cascade takes the ConvNeXt repo's B values:
    drop path 0.7, decay 0.8)."""
    ours = Config.fromfile(osp.join(REPO, 'configs', ours))
    theirs = get_config(theirs)
    if 'conv2former-b_fpn' in ours.filename:
        expected = 0.7, 0.8
    else:
        expected = (theirs.model.backbone.drop_path_rate,
                    theirs.optim_wrapper.paramwise_cfg.decay_rate)
    assert (ours.model.backbone.drop_path_rate,
            ours.optim_wrapper.paramwise_cfg.decay_rate) == expected
    assert ours.model.backbone.out_indices == (0, 1, 2, 3)
    assert ours.model.backbone.out_norm  # ConvNeXt's per-output norms
    if ours.default_scope == 'mmseg':
        for key in ('decay_type', 'num_layers'):
            assert ours.optim_wrapper.paramwise_cfg[key] == \
                theirs.optim_wrapper.paramwise_cfg[key]
