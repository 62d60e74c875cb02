"""An independent, deliberately plain re-implementation of the authors'
released Conv2Former forward pass, written against
``docs/released_architecture.md`` and operating directly on a released-format
state dict with ``torch.nn.functional``.

It shares no code with mmc2f's models: the tests compare mmc2f's modules
with it, and ``tools/analysis/benchmark.py`` times it as the released code.
"""
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def released_layer_norm(x: Tensor, w: Tensor, b: Tensor,
                        eps: float = 1e-6) -> Tensor:
    # The released channels_first LayerNorm, five passes as published.
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return w[:, None, None] * x + b[:, None, None]


def _conv(sd: Dict[str, Tensor], key: str, x: Tensor, **kwargs) -> Tensor:
    return F.conv2d(x, sd[key + '.weight'], sd.get(key + '.bias'), **kwargs)


def _bn(sd: Dict[str, Tensor], key: str, x: Tensor) -> Tensor:
    return F.batch_norm(x, sd[key + '.running_mean'], sd[key + '.running_var'],
                        sd[key + '.weight'], sd[key + '.bias'], False, 0.,
                        1e-5)


def _ln(sd: Dict[str, Tensor], key: str, x: Tensor) -> Tensor:
    return released_layer_norm(x, sd[key + '.weight'], sd[key + '.bias'])


def released_block(sd: Dict[str, Tensor], p: str, x: Tensor) -> Tensor:
    dim = x.shape[1]
    k = sd[p + 'attn.att.2.weight'].shape[-1]
    y = _ln(sd, p + 'attn.norm', x)
    a = _conv(sd, p + 'attn.att.0', y)
    a = F.gelu(a)
    a = _conv(sd, p + 'attn.att.2', a, padding=k // 2, groups=dim)
    v = _conv(sd, p + 'attn.v', y)
    y = _conv(sd, p + 'attn.proj', a * v)
    x = x + sd[p + 'layer_scale_1'][None, :, None, None] * y
    y = _ln(sd, p + 'mlp.norm', x)
    y = F.gelu(_conv(sd, p + 'mlp.fc1', y))
    y = y + F.gelu(_conv(sd, p + 'mlp.pos', y, padding=1, groups=y.shape[1]))
    y = _conv(sd, p + 'mlp.fc2', y)
    return x + sd[p + 'layer_scale_2'][None, :, None, None] * y


def released_stages(sd: Dict[str, Tensor], x: Tensor,
                    depths: List[int]) -> List[Tensor]:
    """Stage outputs of the released model (stem and stages) in eval mode."""
    p = 'downsample_layers.0.'
    x = _bn(sd, p + '2', F.gelu(_conv(sd, p + '0', x, stride=2, padding=1)))
    x = _bn(sd, p + '5', F.gelu(_conv(sd, p + '3', x, padding=1)))
    x = _conv(sd, p + '6', x, stride=2)
    stages = []
    for i, depth in enumerate(depths):
        if i > 0:
            x = _ln(sd, f'downsample_layers.{i}.0', x)
            x = _conv(sd, f'downsample_layers.{i}.1', x, stride=2)
        for j in range(depth):
            x = released_block(sd, f'stages.{i}.{j}.', x)
        stages.append(x)
    return stages


def released_forward(sd: Dict[str, Tensor],
                     x: Tensor,
                     depths: List[int]) -> Tuple[List[Tensor], Tensor]:
    """Stage outputs and logits of the released model in eval mode."""
    stages = released_stages(sd, x, depths)
    y = _ln(sd, 'head.2', F.gelu(_conv(sd, 'head.0', stages[-1])))
    logits = F.linear(y.mean((2, 3)), sd['pred.weight'], sd['pred.bias'])
    return stages, logits


def make_released_state_dict(channels: List[int],
                             depths: List[int],
                             kernel_size: int,
                             num_classes: int = 1000,
                             seed: int = 0) -> 'OrderedDict[str, Tensor]':
    """Random weights with the released names and shapes (see
    ``docs/released_architecture.md``).

    Values are O(1) (layer scales included) so every path of the network
    contributes to the output and a wrong wiring shows up in a comparison.
    """
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2, positive=False):
        t = torch.randn(*shape, generator=g) * scale
        return t.abs() + 0.5 if positive else t

    sd: 'OrderedDict[str, Tensor]' = OrderedDict()
    half = channels[0] // 2
    sd['downsample_layers.0.0.weight'] = rand(half, 3, 3, 3)
    sd['downsample_layers.0.3.weight'] = rand(half, half, 3, 3, scale=0.1)
    sd['downsample_layers.0.6.weight'] = rand(channels[0], half, 2, 2,
                                              scale=0.1)
    for i in (2, 5):
        sd[f'downsample_layers.0.{i}.weight'] = rand(half, positive=True)
        sd[f'downsample_layers.0.{i}.bias'] = rand(half)
        sd[f'downsample_layers.0.{i}.running_mean'] = rand(half)
        sd[f'downsample_layers.0.{i}.running_var'] = rand(half, positive=True)
        sd[f'downsample_layers.0.{i}.num_batches_tracked'] = torch.tensor(7)
    for i in (1, 2, 3):
        c_in, c_out = channels[i - 1], channels[i]
        sd[f'downsample_layers.{i}.0.weight'] = rand(c_in, positive=True)
        sd[f'downsample_layers.{i}.0.bias'] = rand(c_in)
        sd[f'downsample_layers.{i}.1.weight'] = rand(c_out, c_in, 2, 2,
                                                     scale=0.05)
        sd[f'downsample_layers.{i}.1.bias'] = rand(c_out)
    for i, (c, depth) in enumerate(zip(channels, depths)):
        for j in range(depth):
            p = f'stages.{i}.{j}.'
            sd[p + 'layer_scale_1'] = rand(c, scale=0.3)
            sd[p + 'layer_scale_2'] = rand(c, scale=0.3)
            for norm in ('attn.norm', 'mlp.norm'):
                sd[p + norm + '.weight'] = rand(c, positive=True)
                sd[p + norm + '.bias'] = rand(c)
            for name, shape in (('attn.att.0', (c, c, 1, 1)),
                                ('attn.att.2', (c, 1, kernel_size,
                                                kernel_size)),
                                ('attn.v', (c, c, 1, 1)),
                                ('attn.proj', (c, c, 1, 1)),
                                ('mlp.fc1', (4 * c, c, 1, 1)),
                                ('mlp.pos', (4 * c, 1, 3, 3)),
                                ('mlp.fc2', (c, 4 * c, 1, 1))):
                fan_in = shape[1] * shape[2] * shape[3]
                sd[p + name + '.weight'] = rand(*shape, scale=fan_in**-0.5)
                sd[p + name + '.bias'] = rand(shape[0], scale=0.1)
    sd['head.0.weight'] = rand(1280, channels[3], 1, 1,
                               scale=channels[3]**-0.5)
    sd['head.0.bias'] = rand(1280, scale=0.1)
    sd['head.2.weight'] = rand(1280, positive=True)
    sd['head.2.bias'] = rand(1280)
    sd['pred.weight'] = rand(num_classes, 1280, scale=1280**-0.5)
    sd['pred.bias'] = rand(num_classes, scale=0.1)
    return sd


def max_rel_error(actual: Tensor, expected: Tensor) -> float:
    """max |actual - expected| / max |expected|."""
    return ((actual - expected).abs().max() /
            expected.abs().max().clamp_min(1e-12)).item()
