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

# ConvNeXt-T's layer-wise decay 0.95 (the inherited config), by the rule of
# mmdet's LearningRateDecayOptimizerConstructor for ConvNeXt: stem id 0,
# stage 0 id 1, stage 1 (with its downsampling) id 2, stage 2 in groups of
# three blocks from id 3, stage 3 (with its downsampling) id num_layers, the
# rest num_layers + 1; lr scale 0.95 ** (num_layers + 1 - id). ConvNeXt's
# num_layers is 3 + ceil(stage-2 blocks / 3): 6 for its 9 blocks. Taken
# literally, 6 would give Conv2Former-T's 12-block stage 2 the ids 3..6 and
# its last group stage 3's id; the constructor instead reads the ids from the
# backbone's get_layer_depth, which applies the same formula to 12 blocks
# (num_layers 7): lr scale 0.95**8 on the stem (ConvNeXt-T: 0.95**7), 0.95**7
# and 0.95**6 on stages 0 and 1, 0.95**5 .. 0.95**2 on stage 2's four groups,
# 0.95 on stage 3, 1 on the output norms, neck and heads.
optim_wrapper = dict(
    constructor='mmc2f.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, decay_rate=0.95))

# A resumed run repeats the random draws of an uninterrupted one.
custom_hooks = [dict(type='mmc2f.RNGStateHook')]

# Checkpoints written atomically, and outdated ones removed only after a
# successful save; the library's other settings of the hook are kept.
default_hooks = dict(checkpoint=dict(type='mmc2f.SafeCheckpointHook'))
