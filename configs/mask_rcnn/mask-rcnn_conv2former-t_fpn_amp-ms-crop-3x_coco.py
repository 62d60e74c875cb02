# Mask R-CNN + FPN with Conv2Former-T on COCO, 3x schedule (paper Table 9:
# 48.0 box AP / 43.0 mask AP). The paper follows ConvNeXt's recipe, so this
# inherits mmdet's ConvNeXt-T config and changes only the backbone, the FPN
# input channels and the layer-decay constructor. Inherited unchanged:
# DETR-style multi-scale + crop training pipeline, AdamW lr 1e-4 / weight
# decay 0.05, AMP, 36 epochs with 1000-iter linear warm-up and MultiStepLR
# at epochs 27 and 33, 8 GPUs x 2 images (auto_scale_lr base_batch_size=16).
_base_ = ['mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py']  # noqa

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
        # ConvNeXt-T's detection value (mmdet and the ConvNeXt repo); the
        # paper gives none.
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        # LN on each output, as ConvNeXt's detection backbone has.
        out_norm=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint_file,
            prefix='backbone.')),
    neck=dict(in_channels=[72, 144, 288, 576]))

# ConvNeXt-T's layer-wise decay 0.95. The layer ids follow the same rule as
# mmdet's LearningRateDecayOptimizerConstructor (stem, stage 0, stage 1, stage
# 2 in groups of 3 blocks, stage 3, then neck/heads), taken from the
# backbone's get_layer_depth, so 'num_layers' is not given: Conv2Former-T's
# 12-block stage 2 gives 9 layer ids where ConvNeXt-T's 9 blocks give 8.
optim_wrapper = dict(
    constructor='mmc2f.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, decay_rate=0.95))

# A resumed run repeats the random draws of an uninterrupted one.
custom_hooks = [dict(type='mmc2f.RNGStateHook')]
