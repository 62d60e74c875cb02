# Cascade Mask R-CNN with Conv2Former-B, 3x (paper Table 9: 52.8 box AP /
# 45.6 mask AP): the Conv2Former-T recipe with ConvNeXt-B's settings. mmdet
# has no ConvNeXt-B cascade config; the values come from the ConvNeXt repo's
# cascade_mask_rcnn_convnext_base_..._3x_coco_in1k.py (drop path 0.7,
# layer-wise decay 0.8, lr 2e-4 as for T and S).
_base_ = ['./cascade-mask-rcnn_conv2former-t_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py']  # noqa

# Make it from the authors' released ImageNet-1k Conv2Former-B file with
#   python tools/model_converters/conv2former_to_mmc2f.py \
#       conv2former_b.pth checkpoints/conv2former-b_in1k_mmc2f.pth
checkpoint_file = 'checkpoints/conv2former-b_in1k_mmc2f.pth'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.7,
        init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[96, 192, 384, 768]))

# ConvNeXt's num_layers = 3 + ceil(stage-2 blocks / 3) is 12 for ConvNeXt-B's
# 27 blocks; Conv2Former-B's 34 give 15 (taken from get_layer_depth, see the
# Mask R-CNN T config): lr scale 0.8**16 on the stem (ConvNeXt-B: 0.8**13).
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.8))
