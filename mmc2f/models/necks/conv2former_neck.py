# Copyright (c) mmc2f contributors. All rights reserved.
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ..backbones.base_backbone import init_conv2former_weights
from ..backbones.conv2former import LayerNorm2d


class Conv2FormerNeck(BaseModule):
    """The released classifier's pre-logits: 1x1 conv to ``out_channels``,
    GELU, layer norm, global average pooling.

    In an mmpretrain ``ImageClassifier`` it sits between the backbone and a
    ``LinearClsHead(in_channels=1280)``, which holds the released ``pred``.

    Args:
        in_channels (int): Channels of the last backbone stage.
        out_channels (int): Defaults to 1280, the released width.
        init_cfg (dict, optional): mmengine init config.

    Shapes:
        Takes the backbone's tuple, uses its last ``(N, in_channels, H, W)``
        map and returns ``((N, out_channels), )``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 1280,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.act = nn.GELU()
        self.norm = LayerNorm2d(out_channels)

    def init_weights(self) -> None:
        if self.init_cfg is None:
            self.apply(init_conv2former_weights)
        super().init_weights()

    def forward(
        self, inputs: Union[torch.Tensor, Tuple[torch.Tensor, ...]]
    ) -> Tuple[torch.Tensor]:
        x = inputs[-1] if isinstance(inputs, (tuple, list)) else inputs
        x = self.norm(self.act(self.conv(x)))
        return (x.mean(dim=(2, 3)), )
