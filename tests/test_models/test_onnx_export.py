import numpy as np
import onnxruntime as ort
import pytest
import torch

from mmc2f.models import Conv2Former
from mmc2f.toolkit.released_reference import max_rel_error


@pytest.mark.parametrize('arch', ['nano', 'tiny'])
def test_backbone_exports_to_onnx(tmp_path, arch):
    torch.manual_seed(0)
    model = Conv2Former(arch, out_indices=(0, 1, 2, 3), out_norm=True,
                        layer_scale_init_value=0.5).eval()
    model.init_weights()
    x = torch.randn(1, 3, 96, 128)
    path = str(tmp_path / 'backbone.onnx')
    torch.onnx.export(model, (x, ), path, opset_version=17,
                      input_names=['input'],
                      output_names=[f'stage{i}' for i in range(4)],
                      dynamic_axes={'input': {0: 'batch', 2: 'h', 3: 'w'}},
                      dynamo=False)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    # Another size than the traced one: the graph is not tied to it.
    x = torch.randn(2, 3, 64, 96)
    outs = session.run(None, {'input': x.numpy()})
    with torch.no_grad():
        refs = model(x)
    for out, ref in zip(outs, refs):
        assert out.shape == tuple(ref.shape)
        assert max_rel_error(torch.from_numpy(np.asarray(out)), ref) < 1e-4
