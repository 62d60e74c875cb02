# Cascade Mask R-CNN with Conv2Former-S, 3x (paper Table 9: 52.8 box AP /
# 45.7 mask AP): the Conv2Former-T recipe with ConvNeXt-S's settings.
_base_ = ['./cascade-mask-rcnn_conv2former-t_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py']  # noqa

# Make it from the authors' released ImageNet-1k Conv2Former-S file with
#   python tools/model_converters/conv2former_to_mmc2f.py \
#       conv2former_s.pth checkpoints/conv2former-s_in1k_mmc2f.pth
checkpoint_file = 'checkpoints/conv2former-s_in1k_mmc2f.pth'

model = dict(
    backbone=dict(
        arch='small',
        # ConvNeXt-S's cascade value (mmdet's convnext-s config and the
        # ConvNeXt repo).
        drop_path_rate=0.6,
        init_cfg=dict(checkpoint=checkpoint_file)))
# The channels equal T's, so the FPN is unchanged. Layer decay stays 0.7 as
# for ConvNeXt-S (mmdet's convnext-s cascade config). ConvNeXt's
# num_layers = 3 + ceil(stage-2 blocks / 3) is 12 for its 27 blocks; the
# 32-block stage 2 gives 14 (taken from get_layer_depth, see the Mask R-CNN T
# config): lr scale 0.7**15 on the stem (ConvNeXt-S: 0.7**13).
