_base_ = ['./conv2former-t_8xb128_in1k.py']

model = dict(
    backbone=dict(arch='large', drop_path_rate=0.5),
    neck=dict(in_channels=1024))
