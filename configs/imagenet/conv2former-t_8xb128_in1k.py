# Conv2Former-T on ImageNet-1k: the paper's recipe (section 4.1), 8 GPUs x 128.
# The other sizes inherit this file and change only the arch.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmc2f'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    # Stochastic depth: the paper uses it without giving rates; these follow
    # ConvNeXt's (T 0.1, S 0.4, B 0.5, L 0.5) at equal size.
    backbone=dict(type='mmc2f.Conv2Former', arch='tiny', drop_path_rate=0.1),
    # The released pre-logits: 1x1 conv to 1280, GELU, LN, pooling.
    neck=dict(type='mmc2f.Conv2FormerNeck', in_channels=576),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1280,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]),
)

# The base dataset config already has RandomResizedCrop 224, flip, RandAugment
# and RandomErasing for training, and resize 256 / center crop 224 with the
# ImageNet mean/std for testing.
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

# AdamW, lr 1e-3 x batch / 1024, weight decay 0.05, 300 epochs (20 warm-up,
# then cosine): the base schedule is exactly that for a batch of 1024.
# No weight decay on norms, biases and layer scales (1-D parameters).
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(flat_decay_mult=0.0))
auto_scale_lr = dict(base_batch_size=1024)

# Checkpoints written atomically, and outdated ones removed only after a
# successful save; the library's other settings of the hook are kept.
default_hooks = dict(checkpoint=dict(type='mmc2f.SafeCheckpointHook'))
