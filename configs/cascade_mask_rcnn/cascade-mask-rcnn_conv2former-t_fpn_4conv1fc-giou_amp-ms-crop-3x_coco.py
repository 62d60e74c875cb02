# Cascade Mask R-CNN + FPN (4conv1fc box heads with SyncBN, GIoU loss) with
# Conv2Former-T on COCO, 3x schedule (paper Table 9: 51.4 box AP / 44.5 mask
# AP). The paper follows ConvNeXt's recipe, so this inherits mmdet's
# ConvNeXt-T cascade config and changes only the backbone, the FPN input
# channels and the layer-decay constructor. Inherited unchanged: heads, the
# multi-scale + crop pipeline, AdamW lr 2e-4 / weight decay 0.05, AMP, 36
# epochs (warm-up 1000 iters, MultiStepLR at 27 and 33), 8 GPUs x 2 images.
_base_ = ['mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py']  # noqa

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
        # ConvNeXt-T's cascade value (mmdet and the ConvNeXt repo); the paper
        # gives none.
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        # LN on each output, as ConvNeXt's detection backbone has.
        out_norm=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint_file,
            prefix='backbone.')),
    neck=dict(in_channels=[72, 144, 288, 576]))

# ConvNeXt-T cascade's layer-wise decay 0.7 (the inherited config), by the
# rule of mmdet's ConvNeXt constructor with num_layers = 3 + ceil(stage-2
# blocks / 3), read from the backbone's get_layer_depth: 7 for Conv2Former-T's
# 12 blocks where ConvNeXt-T's 9 give 6 (see the Mask R-CNN T config). lr
# scale 0.7**8 on the stem (ConvNeXt-T: 0.7**7) up to 0.7 on stage 3 and 1 on
# the output norms, neck and heads.
optim_wrapper = dict(
    constructor='mmc2f.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, decay_rate=0.7))

# A resumed run repeats the random draws of an uninterrupted one.
custom_hooks = [dict(type='mmc2f.RNGStateHook')]

# Checkpoints written atomically, and outdated ones removed only after a
# successful save; the library's other settings of the hook are kept.
default_hooks = dict(checkpoint=dict(type='mmc2f.SafeCheckpointHook'))
