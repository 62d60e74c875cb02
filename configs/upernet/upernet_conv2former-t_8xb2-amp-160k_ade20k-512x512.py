# UperNet with Conv2Former-T on ADE20k, 512x512 crops, 160k iterations
# (paper Table 10: 48.0 mIoU). The paper follows ConvNeXt's recipe, so this
# inherits mmseg's ConvNeXt-T UperNet config and changes only the backbone,
# the head input channels and the layer-decay constructor. Inherited
# unchanged: ade20k 512x512 pipeline, AdamW lr 1e-4 / weight decay 0.05, AMP
# (dynamic loss scale), 160k iters (linear warm-up 1500 iters, then poly
# power 1), 8 GPUs x 2 images, slide inference with 512 crops / 341 stride,
# auxiliary FCN head (loss weight 0.4) on stage 2.
_base_ = ['mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py']  # noqa

# Replaces the base's mmpretrain import: only mmc2f is needed.
custom_imports = dict(imports=['mmc2f'], allow_failed_imports=False)

# Make it from the authors' released ImageNet-1k Conv2Former-T file with
#   python tools/model_converters/conv2former_to_mmc2f.py \
#       conv2former_t.pth checkpoints/conv2former-t_in1k_mmc2f.pth
# (or train without it: model.backbone.init_cfg=None).
checkpoint_file = 'checkpoints/conv2former-t_in1k_mmc2f.pth'

model = dict(
    backbone=dict(
        _delete_=True,  # drop ConvNeXt's keys (layer_scale_init_value, ...)
        type='mmc2f.Conv2Former',
        arch='tiny',
        # ConvNeXt-T's segmentation value (mmseg and the ConvNeXt repo); the
        # paper gives none.
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        # LN on each output, as ConvNeXt's segmentation backbone has.
        out_norm=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint_file,
            prefix='backbone.')),
    decode_head=dict(in_channels=[72, 144, 288, 576]),
    auxiliary_head=dict(in_channels=288))  # stage 2 (in_index=2)

# ConvNeXt-T's stage-wise lr decay, as in the inherited config and through
# the same rule as MMSegmentation's LearningRateDecayOptimizerConstructor
# (ids from the backbone's get_stage_depth: stem and downsampling layers 0,
# stage i i+1, output norms and heads last): lr scale 0.9**7 on the stem and
# downsampling layers, 0.9**6 .. 0.9**3 on stages 0..3, 1 on the output
# norms and heads; no weight decay on 1-D parameters.
optim_wrapper = dict(
    constructor='mmc2f.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True, decay_rate=0.9, decay_type='stage_wise',
        num_layers=6))

# A resumed run repeats the random draws of an uninterrupted one.
custom_hooks = [dict(type='mmc2f.RNGStateHook')]

# Checkpoints written atomically, and outdated ones removed only after a
# successful save; the library's other settings of the hook are kept.
default_hooks = dict(checkpoint=dict(type='mmc2f.SafeCheckpointHook'))
