# DINO (4 scales) with Conv2Former-T on COCO, 12 epochs: beyond the paper,
# which has no DETR-style detector. MMDetection's DINO recipe, inherited
# unchanged but for the backbone and the input channels of the neck that
# reads it: 900 queries, 6+6 deformable-attention layers, denoising queries,
# DETR-style multi-scale + crop training, AdamW lr 1e-4 / weight decay 1e-4
# with the backbone at lr x0.1 (MMDetection's DINO recipe for every backbone,
# Swin-L included: no layer-wise decay), gradient clipping 0.1, lr x0.1 after
# epoch 11, 8 GPUs x 2 images. The optimiser's groups are the recipe's,
# through our layer-decay constructor.
_base_ = ['mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py']

custom_imports = dict(imports=['mmc2f'], allow_failed_imports=False)

# Make it from the authors' released ImageNet-1k Conv2Former-T file with
#   python tools/model_converters/conv2former_to_mmc2f.py \
#       conv2former_t.pth checkpoints/conv2former-t_in1k_mmc2f.pth
# (or train without it: model.backbone.init_cfg=None).
checkpoint_file = 'checkpoints/conv2former-t_in1k_mmc2f.pth'

model = dict(
    backbone=dict(
        _delete_=True,  # drop ResNet's keys (depth, norm_cfg, ...)
        type='mmc2f.Conv2Former',
        arch='tiny',
        # The value of MMDetection's DINO with a transformer backbone
        # (Swin-L); the paper gives none.
        drop_path_rate=0.2,
        # The three scales DINO's 4-scale neck takes (strides 8, 16, 32; it
        # adds the fourth), as from ResNet-50.
        out_indices=(1, 2, 3),
        # LN on each output, as Swin's detection backbone has.
        out_norm=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint_file,
            prefix='backbone.')),
    neck=dict(in_channels=[144, 288, 576]))

# The recipe's groups (its custom_keys {'backbone': lr_mult 0.1}): the
# backbone as one id at lr x0.1, weight decay on every parameter, norms and
# biases included.
optim_wrapper = dict(
    constructor='mmc2f.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,  # the recipe's custom_keys
        decay_type='backbone_wise',
        decay_rate=0.1,
        no_decay=[]))

# A resumed run repeats the random draws of an uninterrupted one.
custom_hooks = [dict(type='mmc2f.RNGStateHook')]

# Checkpoints written atomically, and outdated ones removed only after a
# successful save; the library's other settings of the hook are kept.
default_hooks = dict(checkpoint=dict(type='mmc2f.SafeCheckpointHook'))
