# DINO (4 scales) with Conv2Former-B on COCO, 12 epochs: beyond the paper.
# The Conv2Former-T DINO config with the B backbone; MMDetection's DINO recipe
# is the same for every backbone.
_base_ = ['./dino-4scale_conv2former-t_8xb2-12e_coco.py']

# Make it from the authors' released ImageNet-1k Conv2Former-B file with
#   python tools/model_converters/conv2former_to_mmc2f.py \
#       conv2former_b.pth checkpoints/conv2former-b_in1k_mmc2f.pth
checkpoint_file = 'checkpoints/conv2former-b_in1k_mmc2f.pth'

model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[192, 384, 768]))
