"""gated_linear_scan: Triton (interpreter on CPU) and the reference op vs the fp32 oracle."""

from __future__ import annotations

import pytest
import torch

from coldstream.kernels import gated_linear_scan
from coldstream.kernels.gated_linear_scan.naive import gated_linear_scan_ref
from tests.kernels._util import assert_all_close, forward_backward, leaves
from tests.tolerances import tol


def make_inputs(batch=3, T=9, dim=37, log_gates=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, T, dim, generator=g)
    a = torch.rand(batch, T, dim, generator=g) * 0.9 + 0.05
    if log_gates:
        a = a.log()
    return [x, a, torch.randn(batch, dim, generator=g)]


def fn(backend, log_gates=False, **kw):
    def run(x, a, h0):
        if backend == "oracle":
            return gated_linear_scan_ref(x, a, h0, log_gates=log_gates, **kw)
        return gated_linear_scan(x, a, h0, True, log_gates=log_gates, backend=backend, **kw)
    return run


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("log_gates", [False, True])
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_forward_and_every_gradient_match_fp32_oracle(dtype, log_gates, backend):
    x = [t.to(dtype) if i < 2 else t for i, t in enumerate(make_inputs(log_gates=log_gates))]
    outs, grads = forward_backward(fn(backend, log_gates), leaves(x))
    ref_outs, ref_grads = forward_backward(fn("oracle", log_gates), leaves([t.float() for t in x]))
    assert outs[0].dtype == dtype and outs[1].dtype == torch.float32
    assert_all_close(outs, ref_outs, dtype, "fwd", ["h", "h_T"])
    assert_all_close(grads, ref_grads, dtype, "bwd", ["x", "a", "initial_state"])


@pytest.mark.parametrize("T", [1, 2])
def test_short_sequences(T):
    x = make_inputs(batch=2, T=T, dim=5)
    outs, grads = forward_backward(fn("triton"), leaves(x))
    ref_outs, ref_grads = forward_backward(fn("oracle"), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd")


def test_two_segments_equal_whole():
    x, a, h0 = make_inputs(T=11)
    whole = gated_linear_scan(x, a, h0, True, backend="triton")
    first = gated_linear_scan(x[:, :4], a[:, :4], h0, True, backend="triton")
    second = gated_linear_scan(x[:, 4:], a[:, 4:], first.final_state, True, backend="triton")
    torch.testing.assert_close(torch.cat([first.output, second.output], 1), whole.output, **tol(torch.float32))
    torch.testing.assert_close(second.final_state, whole.final_state, **tol(torch.float32))


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_resets_equal_separate_calls(backend):
    x, a, h0 = make_inputs(batch=2, T=8)
    resets = torch.zeros(2, 8, dtype=torch.bool)
    resets[0, 3] = True
    resets[1, 0] = True
    out, last = gated_linear_scan(x, a, h0, True, resets, backend=backend)
    r0a = gated_linear_scan_ref(x[:1, :3], a[:1, :3], h0[:1])[0]
    r0b, l0 = gated_linear_scan_ref(x[:1, 3:], a[:1, 3:])
    r1, l1 = gated_linear_scan_ref(x[1:], a[1:])
    torch.testing.assert_close(out, torch.cat([torch.cat([r0a, r0b], 1), r1]), **tol(torch.float32))
    torch.testing.assert_close(last, torch.cat([l0, l1]), **tol(torch.float32))


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_varlen_equals_separate_calls_with_gradients(backend):
    bounds = [0, 3, 3, 10]
    cu = torch.tensor(bounds)
    x, a, _ = make_inputs(batch=1, T=10, dim=6)
    h0 = torch.randn(3, 6)

    def separate(x, a, h0):
        parts = [gated_linear_scan_ref(x[:, bounds[s] : bounds[s + 1]], a[:, bounds[s] : bounds[s + 1]],
                                       h0[s : s + 1]) for s in range(3)]
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts])

    outs, grads = forward_backward(fn(backend, cu_seqlens=cu), leaves([x, a, h0]))
    ref_outs, ref_grads = forward_backward(separate, leaves([x, a, h0]))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd")


def test_convex_gru_update_special_case():
    # s_t = (1 - u_t) s_{t-1} + u_t h_t
    g = torch.Generator().manual_seed(1)
    u, h, s0 = torch.rand(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g), torch.randn(2, 4, generator=g)
    out = gated_linear_scan(u * h, 1 - u, s0, backend="triton").output
    s, expected = s0, []
    for t in range(5):
        s = (1 - u[:, t]) * s + u[:, t] * h[:, t]
        expected.append(s)
    torch.testing.assert_close(out, torch.stack(expected, 1), **tol(torch.float32))


def test_opcheck_compile_gradcheck_reference():
    x = leaves(make_inputs(batch=2, T=3, dim=4))
    torch.library.opcheck(torch.ops.coldstream.gated_linear_scan_fwd.default, (*x, None, None, False, "reference"))
    compiled = torch.compile(fn("reference"), fullgraph=True, backend="aot_eager")
    outs, grads = forward_backward(compiled, leaves(x))
    ref_outs, ref_grads = forward_backward(fn("reference"), leaves(x))
    assert_all_close(outs + grads, ref_outs + ref_grads, torch.float32, "bwd")
    x64 = tuple(t.detach().double().requires_grad_() for t in x)
    assert torch.autograd.gradcheck(fn("reference", log_gates=False), x64)


@pytest.mark.cuda
def test_cuda_triton_matches_reference():
    for dtype in (torch.float32, torch.bfloat16):
        inputs = make_inputs(batch=16, T=40, dim=1000, log_gates=True)  # the gates are passed as log-values below
        x = [t.cuda().to(dtype) if i < 2 else t.cuda() for i, t in enumerate(inputs)]
        outs, grads = forward_backward(fn("triton", True), leaves(x))
        ref_outs, ref_grads = forward_backward(fn("oracle", True), leaves([t.float() for t in x]))
        assert_all_close(outs, ref_outs, dtype, "fwd")
        assert_all_close(grads, ref_grads, dtype, "bwd")
    x = [t.cuda() for t in make_inputs(batch=4, T=16, dim=64)]
    compiled = torch.compile(fn("triton"), fullgraph=True)
    outs, grads = forward_backward(compiled, leaves(x))
    ref_outs, ref_grads = forward_backward(fn("triton"), leaves(x))
    assert_all_close(outs + grads, ref_outs + ref_grads, torch.float32, "bwd")
