# Mask2Former with Conv2Former-T on ADE20k, 512x512 crops, 160k iterations:
# beyond the paper, which has UperNet only. MMSegmentation's Swin-T
# Mask2Former recipe, inherited unchanged but for the backbone, the input
# channels of the pixel decoder and the optimiser's constructor: 100
# queries, 9 masked-attention decoder layers over a 6-layer deformable pixel
# decoder, ADE20k 512x512 pipeline, AdamW lr 1e-4 /
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

# Swin-T's parameter groups, through our layer-decay constructor: the
# backbone as one id at lr x0.1; no weight decay for the norm layers
# everywhere (Swin's backbone norm keys and norm_decay_mult 0), for
# Conv2Former's layer scales (which Swin lacks; per-channel scales like a
# norm's) and for the queries' and levels' embeddings; biases decay as in
# the recipe. Swin's position-embedding keys name nothing in Conv2Former.
optim_wrapper = dict(
    constructor='mmc2f.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,  # Swin's custom_keys and norm_decay_mult
        decay_type='backbone_wise',
        decay_rate=0.1,
        no_decay=['norm', 'layer_scale', 'query_embed', 'query_feat',
                  'level_embed']))

# A resumed run repeats the random draws of an uninterrupted one.
custom_hooks = [dict(type='mmc2f.RNGStateHook')]

# Checkpoints written atomically, and outdated ones removed only after a
# successful save; the library's other settings of the hook are kept.
default_hooks = dict(checkpoint=dict(type='mmc2f.SafeCheckpointHook'))
