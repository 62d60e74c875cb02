# Box-only Cascade R-CNN + FPN (4conv1fc box heads with SyncBN, GIoU loss)
# with Conv2Former-T on COCO, 3x schedule: beyond the paper, which has no
# box-only detector, for data with boxes and no masks. It is the paper's
# Cascade Mask R-CNN T config (mmdet's ConvNeXt-T cascade recipe: DETR-style
# multi-scale + crop training, AdamW lr 2e-4 / weight decay 0.05 with
# layer-wise decay 0.7, AMP, 36 epochs, steps at 27 and 33) without the mask
# branch: no mask RoI extractor or mask heads, annotations loaded without
# masks, box AP only.
_base_ = ['../cascade_mask_rcnn/cascade-mask-rcnn_conv2former-t_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py']  # noqa

model = dict(roi_head=dict(mask_roi_extractor=None, mask_head=None))


def _without_masks(pipeline: list) -> list:
    """The base's pipeline, its LoadAnnotations reading boxes only."""
    return [
        dict(t, with_mask=False) if t['type'] == 'LoadAnnotations' else t
        for t in pipeline
    ]


train_pipeline = _without_masks(_base_.train_pipeline)
test_pipeline = _without_masks(_base_.test_pipeline)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator
