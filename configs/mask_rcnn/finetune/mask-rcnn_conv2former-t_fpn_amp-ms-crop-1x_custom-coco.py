# Fine-tuning Conv2Former-T Mask R-CNN on your own COCO-format dataset (README:
# "Fine-tuning on your own COCO-format dataset"). Inherited from the paper's
# COCO config: the model, the multi-scale + crop pipeline, AdamW with layer
# decay, AMP and the ImageNet backbone checkpoint
# (checkpoints/conv2former-t_in1k_mmc2f.pth, see the README's "Model zoo").
#
# As written it trains on the generated shapes set that
#   python -c "from mmc2f.toolkit.synthetic_data import make_coco_shapes; \
#              make_coco_shapes('data/my_coco')"
# writes; for your data, change data_root and classes.
_base_ = '../mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py'

# data_root/annotations/instances_{train,val}.json, images in train/ and val/.
data_root = 'data/my_coco/'
# Category names of the annotation files, in the files' order: only these are
# loaded, as labels 0..N-1 (tools/train.py checks names, order and heads).
classes = ('rectangle', 'ellipse', 'triangle')

model = dict(
    # Small data: the stem and stage 0 keep their ImageNet weights (frozen,
    # BatchNorm in eval mode); freeze more stages for fewer images, none (the
    # paper's COCO setting) for a large set.
    backbone=dict(frozen_stages=1),
    roi_head=dict(
        bbox_head=dict(num_classes=len(classes)),
        mask_head=dict(num_classes=len(classes))))

train_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/')))
val_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# 1x schedule (12 epochs, lr x0.1 after epochs 8 and 11) with a 100-iteration
# warm-up: a small set has too few iterations for the base's 1000.
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[8, 11], gamma=0.1)
]
# Keep the last checkpoint and the best by mask AP.
default_hooks = dict(
    checkpoint=dict(
        max_keep_ckpts=1, save_best='coco/segm_mAP', rule='greater'))
