# UperNet with ImageNet-22k pre-trained Conv2Former-L on ADE20k, 640x640
# crops, 160k iterations (paper Table 10: 54.3 mIoU; the paper crops 640 for
# the large model). Inherits mmseg's ConvNeXt-L UperNet config (ade20k
# 640x640 pipeline, slide inference with 640 crops / 426 stride, AdamW lr
# 1e-4 / weight decay 0.05, AMP, 160k iters, warm-up 1500 + poly, 8 GPUs x 2
# images) and changes only the backbone, the heads' input channels and the
# layer-decay constructor.
_base_ = ['mmseg::convnext/convnext-large_upernet_8xb2-amp-160k_ade20k-640x640.py']  # noqa

# Replaces the base's mmpretrain/mmcls import: only mmc2f is needed.
custom_imports = dict(imports=['mmc2f'], allow_failed_imports=False)

# The authors release Conv2Former-L only pre-trained on ImageNet-22k and
# fine-tuned on ImageNet-1k (224 px, 87.0 % top-1; no 22k-only file). Make
# it from that release with
#   python tools/model_converters/conv2former_to_mmc2f.py \
#       conv2former_l_224.pth \
#       checkpoints/conv2former-l_in21k-pre_in1k_mmc2f.pth
# (or train without it: model.backbone.init_cfg=None).
checkpoint_file = 'checkpoints/conv2former-l_in21k-pre_in1k_mmc2f.pth'

model = dict(
    backbone=dict(
        _delete_=True,  # drop ConvNeXt's keys (layer_scale_init_value, ...)
        type='mmc2f.Conv2Former',
        arch='large',
        # ConvNeXt-L's segmentation value (mmseg and the ConvNeXt repo); the
        # paper gives none.
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        out_norm=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint_file,
            prefix='backbone.')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))  # stage 2 (in_index=2)

# ConvNeXt-L's stage-wise lr decay, as in the inherited config and through
# the same rule as MMSegmentation's LearningRateDecayOptimizerConstructor:
# 0.9, num_layers 12, so lr scale 0.9**13 on the stem and downsampling
# layers, 0.9**12 .. 0.9**9 on stages 0..3, 1 on the output norms and heads.
optim_wrapper = dict(
    constructor='mmc2f.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True, decay_rate=0.9, decay_type='stage_wise',
        num_layers=12))

# A resumed run repeats the random draws of an uninterrupted one.
custom_hooks = [dict(type='mmc2f.RNGStateHook')]

# Checkpoints written atomically, and outdated ones removed only after a
# successful save; the library's other settings of the hook are kept.
default_hooks = dict(checkpoint=dict(type='mmc2f.SafeCheckpointHook'))
