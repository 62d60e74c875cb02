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

# ConvNeXt-B's stage-wise decay: num_layers 12 (T: 6), so the scales are
# 0.9**13 (stem, downsampling) and 0.9**12 .. 0.9**9 (stages 0..3).
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
