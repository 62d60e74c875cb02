# Conv2Former-L at 384 px: evaluates the authors' released conv2former_l
# 384 px file (ImageNet-22k pre-trained, fine-tuned on 1k at 384, 87.7 %
# top-1) after conversion. The model and schedule are the 224 px config's;
# the pipelines are mmpretrain's 384 px ones
# (mmpretrain::_base_/datasets/imagenet_bs64_swin_384.py), which ConvNeXt's
# 384 px models use too: the test image is resized to 384x384, bicubic, not
# centre-cropped, and training has RandomResizedCrop and flip only (no
# RandAugment or random erasing; Mixup, CutMix and label smoothing stay).
# The paper gives no hyper-parameters for its 384 px fine-tuning: training
# with this file is not the paper's recipe (300 epochs from scratch).
_base_ = ['./conv2former-l_8xb128_in1k.py']

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=384,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=384, backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
