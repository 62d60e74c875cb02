# Conv2Former-N on ImageNet-1k: the T recipe with the nano preset (kernel 7).
# Evaluates the authors' released conv2former_n file after conversion
# (81.5 % top-1; see the README's model zoo).
_base_ = ['./conv2former-t_8xb128_in1k.py']

model = dict(
    # Stochastic depth: ConvNeXt has no model this small; T's 0.1.
    backbone=dict(arch='nano', drop_path_rate=0.1),
    neck=dict(in_channels=512))
