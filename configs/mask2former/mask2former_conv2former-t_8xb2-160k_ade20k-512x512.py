# Mask2Former with Conv2Former-T on ADE20k, 512x512 crops, 160k iterations:
# beyond the paper, which has UperNet only. MMSegmentation's Swin-T
# Mask2Former recipe, inherited unchanged but for the backbone, the input
# channels of the pixel decoder and the names of the backbone's norms in the
# optimiser's keys: 100 queries, 9 masked-attention decoder layers over a
# 6-layer deformable pixel decoder, ADE20k 512x512 pipeline, AdamW lr 1e-4 /
# weight decay 0.05 with the backbone at lr x0.1 (Swin-T's: no layer-wise
# decay), gradient clipping 0.01, poly lr over 160k iterations, 8 GPUs x 2
# images, whole-image inference.
_base_ = ['mmseg::mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py']

custom_imports = dict(imports=['mmc2f'], allow_failed_imports=False)

# Make it from the authors' released ImageNet-1k Conv2Former-T file with
#   python tools/model_converters/conv2former_to_mmc2f.py \
#       conv2former_t.pth checkpoints/conv2former-t_in1k_mmc2f.pth
# (or train without it: model.backbone.init_cfg=None).
checkpoint_file = 'checkpoints/conv2former-t_in1k_mmc2f.pth'

model = dict(
    backbone=dict(
        _delete_=True,  # drop Swin's keys (embed_dims, window_size, ...)
        type='mmc2f.Conv2Former',
        arch='tiny',
        # Swin-T's value in this recipe; the paper gives none.
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        # LN on each output, as Swin's segmentation backbone has.
        out_norm=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint_file,
            prefix='backbone.')),
    decode_head=dict(in_channels=[72, 144, 288, 576]))

# Swin-T's parameter groups: the backbone at lr x0.1; its norms (and
# Conv2Former's layer scales, which Swin lacks) and the queries' and levels'
# embeddings without weight decay. The keys name Conv2Former-T's norms: the
# stem's two BatchNorms, the downsampling LNs, each block's two LNs and the
# output LNs.
depths = [3, 3, 12, 3]
backbone_norm_multi = _base_.backbone_norm_multi  # lr x0.1, no decay
embed_multi = _base_.embed_multi  # no decay
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    '_delete_': True,  # Swin's names
    'backbone': dict(lr_mult=0.1, decay_mult=1.0),
    'backbone.downsample_layers.0.2': backbone_norm_multi,
    'backbone.downsample_layers.0.5': backbone_norm_multi,
    **{f'backbone.downsample_layers.{i}.0': backbone_norm_multi
       for i in range(1, len(depths))},
    **{f'backbone.stages.{stage}.{block}.{part}.norm': backbone_norm_multi
       for stage, blocks in enumerate(depths) for block in range(blocks)
       for part in ('attn', 'mlp')},
    **{f'backbone.norm{i}': backbone_norm_multi for i in range(len(depths))},
    'layer_scale': backbone_norm_multi,
    'query_embed': embed_multi,
    'query_feat': embed_multi,
    'level_embed': embed_multi
}))

# A resumed run repeats the random draws of an uninterrupted one.
custom_hooks = [dict(type='mmc2f.RNGStateHook')]
