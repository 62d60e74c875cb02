_base_ = ['./conv2former-t_8xb128_in1k.py']

model = dict(
    backbone=dict(arch='nano', drop_path_rate=0.1),
    neck=dict(in_channels=512))
