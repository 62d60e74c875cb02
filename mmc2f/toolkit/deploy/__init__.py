# Copyright (c) mmc2f contributors. All rights reserved.
"""Deployment: the whole model of a detection, segmentation or
classification config exported to ONNX (opset 17, standard ops only, no
plugin) with MMDeploy's end2end inputs and outputs (:mod:`.end2end`), then
run by ONNX Runtime against PyTorch on an image (:mod:`.parity`).

``tools/deploy.py`` is its command line; ``docs/deployment.md`` says why
MMDeploy itself does not do the export on this stack.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn

from .detection import standard_roi_align
from .end2end import (dynamic_axes, end2end_model, matmul_adaptive_pooling,
                      output_names)
from ..config_model import load_config
from .errors import ExportError
from .inputs import Shape, build_model, load_weights, preprocess
from .parity import compare, reference, timed_runs

OPSET = 17  # LayerNormalization (16 for RoiAlign's half_pixel, GridSample)
ONNX_FILE = 'end2end.onnx'
PARITY_FILE = 'parity.json'  # written last: the work dir is complete
# --dynamic checks parity again at this fraction of the export's size.
SECOND_SIZE = 0.75


def export(module: nn.Module, inputs: torch.Tensor, path: str, scope: str,
           dynamic: bool) -> None:
    """``module`` traced on ``inputs`` into ONNX file ``path`` (TorchScript
    exporter: ``dynamo=False``)."""
    names = output_names(module, scope)
    with standard_roi_align(), matmul_adaptive_pooling(module), \
            warnings.catch_warnings(), torch.no_grad():
        # Shape comparisons of the input checks, constant in the trace.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        # Wrong for negative indices only: those indexed here are not.
        warnings.filterwarnings(
            'ignore', 'Exporting aten::index operator of advanced indexing')
        try:
            torch.onnx.export(module, (inputs, ), path, opset_version=OPSET,
                              input_names=['input'], output_names=names,
                              dynamic_axes=dynamic_axes(names, scope,
                                                        dynamic),
                              dynamo=False)
        except (RuntimeError, torch.onnx.errors.OnnxExporterError) as error:
            raise ExportError(type(module).__name__,
                              f'torch.onnx.export failed: {error}') from error


def second_shape(height: int, width: int) -> Shape:
    """The second size that ``--dynamic`` checks: :data:`SECOND_SIZE` of
    each side, rounded down to a multiple of 32 (at least 32)."""
    return tuple(max(32, int(side * SECOND_SIZE) // 32 * 32)
                 for side in (height, width))


def measure(model: nn.Module, session: Any, data: Dict[str, Any], scope: str,
            repeat: int) -> Dict[str, Any]:
    """The parity fields of one input (the first runs' outputs compared)
    and both latencies (medians of ``repeat`` alternating runs)."""
    inputs = data['inputs'].numpy()
    outputs, latencies = timed_runs(dict(
        onnxruntime_ms=lambda: session.run(None, {'input': inputs}),
        pytorch_ms=lambda: reference(model, data, scope)), repeat)
    return dict(input_shape=list(inputs.shape),
                **compare(scope, outputs['pytorch_ms'],
                          outputs['onnxruntime_ms']),
                **latencies)


@contextmanager
def staged_work_dir(work_dir: str) -> Iterator[str]:
    """A temporary sibling of ``work_dir`` to write into, moved into place
    on success and removed on failure or interruption. A new ``work_dir``
    appears whole (one rename); in an existing one, ``parity.json`` is
    removed first and written last, so that a failure never leaves one
    that looks complete."""
    work_dir = osp.abspath(work_dir)
    os.makedirs(osp.dirname(work_dir), exist_ok=True)
    staging = tempfile.mkdtemp(dir=osp.dirname(work_dir),
                               prefix=f'.{osp.basename(work_dir)}.partial-')
    try:
        yield staging
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's is 0700
        if not osp.isdir(work_dir):
            os.rename(staging, work_dir)
            return
        marker = osp.join(work_dir, PARITY_FILE)
        if osp.exists(marker):
            os.remove(marker)
        last = PARITY_FILE
        for name in sorted(os.listdir(staging), key=lambda n: n == last):
            os.replace(osp.join(staging, name), osp.join(work_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """torch's CPU threads set to ``threads`` (if given) while active."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ort_session(path: str, threads: Optional[int]) -> Any:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


def deploy(config: str, checkpoint: str, image: str, work_dir: str,
           shape: Optional[Shape] = None, dynamic: bool = False,
           cfg_options: Optional[dict] = None, repeat: int = 5,
           threads: Optional[int] = None) -> Dict[str, Any]:
    """Export the config's model with the checkpoint's weights to
    ``work_dir/end2end.onnx``, traced on ``image`` (the config's test
    pipeline, or resized to ``shape``), check it with ONNX Runtime against
    PyTorch on that input (and, ``dynamic``, on a second size) and write
    ``work_dir/parity.json``; return what it holds. ``threads``: the CPU
    threads of both runtimes (default: theirs).

    Raises:
        ExportError: the model, or a module of it, cannot be exported.
        CheckpointLoadError: the checkpoint does not fit the config.
    """
    cfg = load_config(config, cfg_options)  # the backbone's init dropped
    scope = cfg.default_scope
    model = build_model(cfg)
    # What cannot be exported is said before the checkpoint is read.
    module = end2end_model(model, scope)
    load_weights(model, checkpoint)
    if scope == 'mmseg':
        # What the export computes (its sliding window is not exported).
        model.test_cfg['mode'] = 'whole'
    inputs = [preprocess(cfg, model, image, shape)]
    if dynamic:
        inputs.append(preprocess(cfg, model, image,
                                 second_shape(*inputs[0]['inputs'].shape[2:])))
    with staged_work_dir(work_dir) as staging, torch_threads(threads):
        path = osp.join(staging, ONNX_FILE)
        export(module, inputs[0]['inputs'], path, scope, dynamic)
        session = ort_session(path, threads)
        sizes: List[Dict[str, Any]] = [
            measure(model, session, data, scope, repeat) for data in inputs
        ]
        parity = dict(config=config, checkpoint=checkpoint, image=image,
                      task=scope, backend='onnxruntime', dynamic=dynamic,
                      opset=OPSET, threads=threads or torch.get_num_threads(),
                      **sizes[0])
        if dynamic:
            parity['second_size'] = sizes[1]
        with open(osp.join(staging, PARITY_FILE), 'w') as f:
            json.dump(parity, f, indent=2)
    return parity


__all__: Sequence[str] = ['ExportError', 'deploy', 'export', 'second_shape',
                          'staged_work_dir']
