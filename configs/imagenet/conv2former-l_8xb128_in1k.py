# Conv2Former-L at 224 px: evaluates the authors' released conv2former_l
# file (ImageNet-22k pre-trained, 1k fine-tuned, 87.0 % top-1) after
# conversion; the 384 px file has conv2former-l_8xb128_in1k-384px.py.
# Training with it runs the T recipe on ImageNet-1k alone; the paper trains L
# only with 22k pre-training (90 epochs, then 30 on 1k) and gives no other
# hyper-parameters for it.
_base_ = ['./conv2former-t_8xb128_in1k.py']

model = dict(
    # Stochastic depth: ConvNeXt-L's 0.5 (the paper gives no rate).
    backbone=dict(arch='large', drop_path_rate=0.5),
    neck=dict(in_channels=1024))
