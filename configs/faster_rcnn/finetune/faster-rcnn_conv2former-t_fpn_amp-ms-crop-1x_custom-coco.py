# Fine-tuning a box-only Conv2Former-T detector (Faster R-CNN + FPN) on your
# own COCO-format dataset whose annotations have boxes and no masks (README:
# "Fine-tuning on your own COCO-format dataset"): beyond the paper, which has
# no box-only detector. It is the Mask R-CNN fine-tuning config without the
# mask branch: the same data root, classes, frozen stem and stage 0,
# multi-scale + crop pipeline, AdamW with layer decay, AMP, ImageNet backbone
# checkpoint and 1x schedule; no mask RoI extractor or mask head,
# annotations loaded without masks, box AP only.
_base_ = '../../mask_rcnn/finetune/mask-rcnn_conv2former-t_fpn_amp-ms-crop-1x_custom-coco.py'  # noqa

model = dict(
    type='FasterRCNN',
    roi_head=dict(mask_roi_extractor=None, mask_head=None))


def _without_masks(pipeline: list) -> list:
    """The base's pipeline, its LoadAnnotations reading boxes only."""
    return [
        dict(t, with_mask=False) if t['type'] == 'LoadAnnotations' else t
        for t in pipeline
    ]


train_dataloader = dict(
    dataset=dict(pipeline=_without_masks(_base_.train_pipeline)))
val_dataloader = dict(
    dataset=dict(pipeline=_without_masks(_base_.test_pipeline)))
test_dataloader = val_dataloader
val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator

# Keep the last checkpoint and the best by box AP.
default_hooks = dict(checkpoint=dict(save_best='coco/bbox_mAP'))
