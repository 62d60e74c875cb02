# Copyright (c) mmc2f contributors. All rights reserved.
"""The ONNX check: the backbone exported (opset 17, dynamic batch and size)
and run by onnxruntime at another input size than the traced one."""
import os.path as osp
import tempfile
import warnings

import numpy as np
import torch

from .models import Entry


def onnx_error(entry: Entry) -> float:
    """Max relative error of onnxruntime's outputs (opset 17) against
    PyTorch's, at another input size than the exported one."""
    import onnxruntime as ort

    from mmc2f.toolkit.released_reference import max_rel_error
    module = entry.module.eval()
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The input checks' shape comparisons, constant for a trace.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        path = osp.join(tmp, 'backbone.onnx')
        torch.onnx.export(
            module, (torch.randn(1, 3, 224, 224, generator=g), ), path,
            opset_version=17, input_names=['input'],
            dynamic_axes={'input': {0: 'batch', 2: 'h', 3: 'w'}},
            dynamo=False)
        session = ort.InferenceSession(path,
                                       providers=['CPUExecutionProvider'])
        x = torch.randn(2, 3, 256, 192, generator=g)
        outs = session.run(None, {'input': x.numpy()})
    with torch.inference_mode():
        refs = module(x)
    return max(max_rel_error(torch.from_numpy(np.asarray(o)), r)
               for o, r in zip(outs, refs))
