# UperNet with Conv2Former-S on ADE20k, 512x512, 160k iterations (paper
# Table 10: 50.3 mIoU): the Conv2Former-T recipe with ConvNeXt-S's settings.
_base_ = ['./upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py']

# Make it from the authors' released ImageNet-1k Conv2Former-S file with
#   python tools/model_converters/conv2former_to_mmc2f.py \
#       conv2former_s.pth checkpoints/conv2former-s_in1k_mmc2f.pth
checkpoint_file = 'checkpoints/conv2former-s_in1k_mmc2f.pth'

model = dict(
    backbone=dict(
        arch='small',
        # ConvNeXt-S's segmentation value (mmseg's convnext-small config).
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=checkpoint_file)))
# Channels equal T's: the heads are unchanged.

# Stem lr scale of ConvNeXt-S (stage_wise 0.9, num_layers 12): 0.9**13 =
# 0.254; Conv2Former-S has 16 layer ids -> 0.254 ** (1/15) = 0.913 -> 0.91.
# See the T config for the mapping.
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.91))
