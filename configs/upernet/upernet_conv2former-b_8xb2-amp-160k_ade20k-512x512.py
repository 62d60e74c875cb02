# UperNet with Conv2Former-B on ADE20k, 512x512, 160k iterations (paper
# Table 10: 51.0 mIoU): the Conv2Former-T recipe with ConvNeXt-B's settings.
_base_ = ['./upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py']

# Make it from the authors' released ImageNet-1k Conv2Former-B file with
#   python tools/model_converters/conv2former_to_mmc2f.py \
#       conv2former_b.pth checkpoints/conv2former-b_in1k_mmc2f.pth
checkpoint_file = 'checkpoints/conv2former-b_in1k_mmc2f.pth'

model = dict(
    backbone=dict(
        arch='base',
        # ConvNeXt-B's segmentation value (mmseg's upernet_convnext.py).
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# Stem lr scale of ConvNeXt-B (stage_wise 0.9, num_layers 12): 0.9**13 =
# 0.254; Conv2Former-B has 17 layer ids -> 0.254 ** (1/16) = 0.918 -> 0.92.
# See the T config for the mapping.
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.92))
