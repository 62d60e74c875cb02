import pytest
import torch

from mmc2f.models import Conv2Former
from mmc2f.toolkit.released_reference import max_rel_error

SMALL_ARCH = dict(channels=[16, 32, 48, 64], depths=[1, 1, 2, 1],
                  kernel_size=5)


@pytest.mark.parametrize('grad', [False, True])
def test_backbone_compiles(grad):
    """``torch.compile`` (Inductor, CPU) traces the plain ops, not the fused
    oneDNN path, and matches eager in inference and in a backward pass."""
    # Dynamo's state from earlier compiles in this process (other input
    # sizes would make it compile this one with dynamic shapes).
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Conv2Former(SMALL_ARCH, out_indices=(0, 1, 2, 3), out_norm=True,
                        layer_scale_init_value=0.5).eval()
    model.init_weights()
    x = torch.randn(2, 3, 64, 96)
    compiled = torch.compile(model, fullgraph=True)
    with torch.set_grad_enabled(grad):
        outs, refs = compiled(x), model(x)
    for out, ref in zip(outs, refs):
        assert max_rel_error(out.detach(), ref.detach()) < 1e-4
    if grad:
        # Random weights: the plain sum of a layer-normed map has no gradient.
        weights = [torch.randn_like(r) for r in refs]
        sum((o * w).sum() for o, w in zip(outs, weights)).backward()
        compiled_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        sum((r * w).sum() for r, w in zip(refs, weights)).backward()
        for got, want in zip(compiled_grads, model.parameters()):
            assert max_rel_error(got, want.grad) < 1e-3
