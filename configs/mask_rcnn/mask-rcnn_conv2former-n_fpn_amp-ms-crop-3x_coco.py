# Mask R-CNN + FPN with Conv2Former-N on COCO, 3x schedule: the
# Conv2Former-T recipe (itself ConvNeXt-T's) with the nano backbone. The
# paper reports no detection result for N.
_base_ = ['./mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py']

# Make it from the authors' released ImageNet-1k Conv2Former-N file with
#   python tools/model_converters/conv2former_to_mmc2f.py \
#       conv2former_n.pth checkpoints/conv2former-n_in1k_mmc2f.pth
checkpoint_file = 'checkpoints/conv2former-n_in1k_mmc2f.pth'

model = dict(
    backbone=dict(
        arch='nano',
        # Our choice, not from the paper or ConvNeXt (which has no model this
        # small in detection): half of T's 0.4 for a 14-block network.
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 256, 512]))
