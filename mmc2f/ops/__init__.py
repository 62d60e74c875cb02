# Copyright (c) mmc2f contributors. All rights reserved.
"""The model's fast paths, apart from the model file: the differentiable
depthwise-conv-and-modulation op with its Triton kernels, the fused CPU
inference engine, and the one policy that picks among them and the
reference ops (:mod:`.dispatch`)."""
from .dispatch import BACKENDS, forced
from .modulate import dwconv_modulate

__all__ = ['BACKENDS', 'dwconv_modulate', 'forced']
