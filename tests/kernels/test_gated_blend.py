"""gated_blend: Triton (interpreter on CPU) and the reference op vs the fp32 oracle."""

from __future__ import annotations

import pytest
import torch

from coldstream.kernels import gated_blend
from coldstream.kernels.gated_blend.naive import gated_blend_ref
from tests.kernels._util import assert_all_close, forward_backward, leaves


def make_inputs(shape=(3, 5, 67), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_forward_and_gradients_match_fp32_oracle(dtype, backend):
    x = [t.to(dtype) for t in make_inputs()]
    outs, grads = forward_backward(lambda *t: (gated_blend(*t, backend=backend),), leaves(x))
    ref_outs, ref_grads = forward_backward(lambda *t: (gated_blend_ref(*t),), leaves([t.float() for t in x]))
    assert outs[0].dtype == dtype
    assert_all_close(outs, ref_outs, dtype, "fwd")
    assert_all_close(grads, ref_grads, dtype, "bwd", ["a", "b", "logits"])


def test_non_contiguous_inputs():
    a, b, l = (t.transpose(0, 2) for t in make_inputs())
    torch.testing.assert_close(gated_blend(a, b, l, backend="triton"), gated_blend_ref(a, b, l))


def test_opcheck_compile_gradcheck_reference():
    x = leaves(make_inputs((2, 3)))
    torch.library.opcheck(torch.ops.coldstream.gated_blend_fwd.default, (*x, "reference"))
    compiled = torch.compile(lambda *t: (gated_blend(*t, backend="reference"),), fullgraph=True, backend="aot_eager")
    outs, grads = forward_backward(compiled, leaves(x))
    ref_outs, ref_grads = forward_backward(lambda *t: (gated_blend_ref(*t),), leaves(x))
    assert_all_close(outs + grads, ref_outs + ref_grads, torch.float32, "bwd")
    x64 = tuple(t.detach().double().requires_grad_() for t in x)
    assert torch.autograd.gradcheck(lambda *t: gated_blend(*t, backend="reference"), x64)


def test_shape_mismatch_is_a_value_error():
    a, b, l = make_inputs()
    with pytest.raises(ValueError, match="logits must have shape"):
        gated_blend(a, b, l[..., :3])


@pytest.mark.cuda
def test_cuda_triton_matches_reference_and_compiles():
    x = [t.cuda().bfloat16() for t in make_inputs((8, 201, 1024))]
    outs, grads = forward_backward(lambda *t: (gated_blend(*t, backend="triton"),), leaves(x))
    ref_outs, ref_grads = forward_backward(lambda *t: (gated_blend_ref(*t),), leaves([t.float() for t in x]))
    assert_all_close(outs, ref_outs, torch.bfloat16, "fwd")
    assert_all_close(grads, ref_grads, torch.bfloat16, "bwd")
    compiled = torch.compile(lambda *t: gated_blend(*t, backend="triton"), fullgraph=True)
    torch.testing.assert_close(compiled(*x), gated_blend(*x, backend="triton"))
