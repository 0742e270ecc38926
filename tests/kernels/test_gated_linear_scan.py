"""gated_linear_scan: both Triton implementations (interpreter on CPU) and the reference op vs the fp32 oracle."""

from __future__ import annotations

import itertools

import pytest
import torch

from coldstream.kernels import gated_linear_scan
from coldstream.kernels.gated_linear_scan import ops
from coldstream.kernels.gated_linear_scan.naive import gated_linear_scan_ref
from tests.kernels._util import assert_all_close, forward_backward, leaves, run_sm90
from tests.tolerances import tol


def make_inputs(batch=3, T=9, dim=37, log_gates=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, T, dim, generator=g)
    a = torch.rand(batch, T, dim, generator=g) * 0.9 + 0.05
    if log_gates:
        a = a.log()
    return [x, a, torch.randn(batch, dim, generator=g)]


IMPLS = ["fused_recurrent", "chunk"]
# every Triton implementation, and the reference op once
BACKEND_IMPLS = [("triton", "fused_recurrent"), ("triton", "chunk"), ("reference", "auto")]


def fn(backend, log_gates=False, impl="auto", resets=None, **kw):
    def run(x, a, h0):
        if backend == "oracle":
            return gated_linear_scan_ref(x, a, h0, resets, log_gates=log_gates, **kw)
        return gated_linear_scan(x, a, h0, True, resets, log_gates=log_gates, backend=backend, impl=impl, **kw)

    return run


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("log_gates", [False, True])
@pytest.mark.parametrize(("backend", "impl"), BACKEND_IMPLS)
def test_forward_and_every_gradient_match_fp32_oracle(dtype, log_gates, backend, impl):
    x = [t.to(dtype) if i < 2 else t for i, t in enumerate(make_inputs(log_gates=log_gates))]
    outs, grads = forward_backward(fn(backend, log_gates, impl), leaves(x))
    ref_outs, ref_grads = forward_backward(fn("oracle", log_gates), leaves([t.float() for t in x]))
    assert outs[0].dtype == dtype and outs[1].dtype == torch.float32
    assert_all_close(outs, ref_outs, dtype, "fwd", ["h", "h_T"])
    assert_all_close(grads, ref_grads, dtype, "bwd", ["x", "a", "initial_state"])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("T", "dim"), [(1, 5), (2, 5), (ops.CHUNK_T, 37), (2 * ops.CHUNK_T + 3, 300)])
def test_short_and_chunk_boundary_lengths(T, dim, impl):
    # T = 1, a full chunk, and a partial last chunk; dim 300 > CHUNK_BLOCK_D spans two channel blocks, one masked
    x = make_inputs(batch=2, T=T, dim=dim, log_gates=True)
    outs, grads = forward_backward(fn("triton", True, impl), leaves(x))
    ref_outs, ref_grads = forward_backward(fn("oracle", True), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd")


@pytest.mark.parametrize(("backend", "impl"), BACKEND_IMPLS)
def test_two_segments_equal_whole_with_gradients(backend, impl):
    def whole(x, a, h0):
        return gated_linear_scan(x, a, h0, True, backend=backend, impl=impl)

    def segments(x, a, h0):
        first = gated_linear_scan(x[:, :4], a[:, :4], h0, True, backend=backend, impl=impl)
        second = gated_linear_scan(x[:, 4:], a[:, 4:], first.final_state, True, backend=backend, impl=impl)
        return torch.cat([first.output, second.output], 1), second.final_state

    inputs = make_inputs(T=11)
    outs, grads = forward_backward(segments, leaves(inputs))
    ref_outs, ref_grads = forward_backward(whole, leaves(inputs))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", ["x", "a", "initial_state"])


@pytest.mark.parametrize("log_gates", [False, True])
@pytest.mark.parametrize(("backend", "impl"), BACKEND_IMPLS)
def test_resets_equal_separate_calls_with_gradients(backend, impl, log_gates):
    T = ops.CHUNK_T + 3  # a reset on each side of the chunk boundary, one at t = 0
    x, a, h0 = make_inputs(batch=2, T=T, log_gates=log_gates)
    resets = torch.zeros(2, T, dtype=torch.bool)
    resets[0, 3] = True
    resets[0, ops.CHUNK_T] = True
    resets[1, 0] = True
    cuts = [0, 3, ops.CHUNK_T, T]

    def separate(x, a, h0):
        parts = [
            gated_linear_scan_ref(x[:1, lo:hi], a[:1, lo:hi], h0[:1] if lo == 0 else None, log_gates=log_gates)
            for lo, hi in itertools.pairwise(cuts)
        ]
        last = gated_linear_scan_ref(x[1:], a[1:], log_gates=log_gates)
        return torch.cat([torch.cat([p[0] for p in parts], 1), last[0]]), torch.cat([parts[-1][1], last[1]])

    outs, grads = forward_backward(fn(backend, log_gates, impl, resets=resets), leaves([x, a, h0]))
    ref_outs, ref_grads = forward_backward(separate, leaves([x, a, h0]))
    assert_all_close(outs, ref_outs, torch.float32, "fwd", ["h", "h_T"])
    assert_all_close(grads, ref_grads, torch.float32, "bwd", ["x", "a", "initial_state"])


@pytest.mark.parametrize(("backend", "impl"), BACKEND_IMPLS)
def test_varlen_equals_separate_calls_with_gradients(backend, impl):
    # an empty sequence, a short one and one longer than a chunk; an empty one at the end (offset T)
    bounds = [0, 3, 3, 4 + ops.CHUNK_T, 4 + ops.CHUNK_T]
    n_seq, T = len(bounds) - 1, bounds[-1]
    cu = torch.tensor(bounds)
    x, a, _ = make_inputs(batch=1, T=T, dim=6)
    h0 = torch.randn(n_seq, 6)

    def separate(x, a, h0):
        parts = [
            gated_linear_scan_ref(x[:, bounds[s] : bounds[s + 1]], a[:, bounds[s] : bounds[s + 1]], h0[s : s + 1])
            for s in range(n_seq)
        ]
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts])

    outs, grads = forward_backward(fn(backend, impl=impl, cu_seqlens=cu), leaves([x, a, h0]))
    ref_outs, ref_grads = forward_backward(separate, leaves([x, a, h0]))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd")


@pytest.mark.parametrize("impl", IMPLS)
def test_convex_gru_update_special_case(impl):
    # s_t = (1 - u_t) s_{t-1} + u_t h_t
    g = torch.Generator().manual_seed(1)
    u, h, s0 = torch.rand(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g), torch.randn(2, 4, generator=g)
    out = gated_linear_scan(u * h, 1 - u, s0, backend="triton", impl=impl).output
    s, expected = s0, []
    for t in range(5):
        s = (1 - u[:, t]) * s + u[:, t] * h[:, t]
        expected.append(s)
    torch.testing.assert_close(out, torch.stack(expected, 1), **tol(torch.float32))


def test_impl_choice_is_checked_and_never_falls_back():
    x, a, h0 = make_inputs(batch=1, T=2, dim=3)
    with pytest.raises(ValueError, match="impl must be one of 'auto', 'fused_recurrent', 'chunk'"):
        gated_linear_scan(x, a, impl="chunked")
    with pytest.raises(ValueError, match="backend='reference'"):
        gated_linear_scan(x, a, backend="reference", impl="chunk")
    assert ops.resolve_impl("auto") == "fused_recurrent"  # until a GPU run measures both (README)


@pytest.mark.parametrize("impl", IMPLS)
def test_final_state_is_stored_only_when_asked(impl):
    x = make_inputs(batch=2, T=5, dim=7)
    args = (*x, None, None, False, "triton", impl)
    out, final = torch.ops.coldstream.gated_linear_scan_fwd(*args, False)
    assert final.numel() == 0
    ref_out, ref_final = torch.ops.coldstream.gated_linear_scan_fwd(*args, True)
    torch.testing.assert_close(out, ref_out, atol=0, rtol=0)
    assert ref_final.shape == (2, 7)
    result = gated_linear_scan(*x, backend="triton", impl=impl)
    assert result.final_state is None
    # without the final state, the gradients are those of the output alone
    outs, grads = forward_backward(lambda *t: gated_linear_scan(*t, backend="triton", impl=impl)[:1], leaves(x))
    ref_outs, ref_grads = forward_backward(lambda *t: gated_linear_scan_ref(*t)[:1], leaves(x))
    assert_all_close(grads, ref_grads, torch.float32, "bwd", ["x", "a", "initial_state"])


def test_opcheck_compile_gradcheck_reference():
    x = leaves(make_inputs(batch=2, T=3, dim=4))
    torch.library.opcheck(torch.ops.coldstream.gated_linear_scan_fwd.default, (*x, None, None, False, "reference"))
    torch.library.opcheck(
        torch.ops.coldstream.gated_linear_scan_fwd.default, (*x, None, None, False, "reference", "auto", False)
    )
    torch.library.opcheck(
        torch.ops.coldstream.gated_linear_scan_fwd.default, (*x, None, None, False, "reference", "chunk")
    )
    compiled = torch.compile(fn("reference"), fullgraph=True, backend="aot_eager")
    outs, grads = forward_backward(compiled, leaves(x))
    ref_outs, ref_grads = forward_backward(fn("reference"), leaves(x))
    assert_all_close(outs + grads, ref_outs + ref_grads, torch.float32, "bwd")
    x64 = tuple(t.detach().double().requires_grad_() for t in x)
    assert torch.autograd.gradcheck(fn("reference", log_gates=False), x64)


def test_opcheck_and_compile_reference_with_cu_seqlens():
    # the packed path of the reference has no host sync, so it traces too (an empty sequence included)
    cu = torch.tensor([0, 2, 2, 5], dtype=torch.int32)
    x, a, _ = make_inputs(batch=1, T=5, dim=4)
    xs = leaves([x, a, torch.randn(3, 4)])
    torch.library.opcheck(torch.ops.coldstream.gated_linear_scan_fwd.default, (*xs, None, cu, False, "reference"))
    compiled = torch.compile(fn("reference", cu_seqlens=cu), fullgraph=True, backend="aot_eager")
    outs, grads = forward_backward(compiled, leaves(xs))
    ref_outs, ref_grads = forward_backward(fn("oracle", cu_seqlens=cu), leaves(xs))
    assert_all_close(outs + grads, ref_outs + ref_grads, torch.float32, "bwd")


@pytest.mark.cuda
@pytest.mark.parametrize("impl", IMPLS)
def test_cuda_triton_matches_reference(impl):
    for dtype in (torch.float32, torch.bfloat16):
        inputs = make_inputs(batch=16, T=40, dim=1000, log_gates=True)  # the gates are passed as log-values below
        x = [t.cuda().to(dtype) if i < 2 else t.cuda() for i, t in enumerate(inputs)]
        outs, grads = forward_backward(fn("triton", True, impl), leaves(x))
        ref_outs, ref_grads = forward_backward(fn("oracle", True), leaves([t.float() for t in x]))
        assert_all_close(outs, ref_outs, dtype, "fwd")
        assert_all_close(grads, ref_grads, dtype, "bwd")
    x = [t.cuda() for t in make_inputs(batch=4, T=16, dim=64)]
    compiled = torch.compile(fn("triton", impl=impl), fullgraph=True)
    outs, grads = forward_backward(compiled, leaves(x))
    ref_outs, ref_grads = forward_backward(fn("triton", impl=impl), leaves(x))
    assert_all_close(outs + grads, ref_outs + ref_grads, torch.float32, "bwd")


@pytest.mark.cuda
def test_cuda_chunk_resets_and_varlen_match_reference():
    x, a, h0 = (t.cuda() for t in make_inputs(batch=4, T=37, dim=300))
    resets = torch.rand(4, 37, generator=torch.Generator().manual_seed(2)).lt(0.1).cuda()
    outs, grads = forward_backward(fn("triton", impl="chunk", resets=resets), leaves([x, a, h0]))
    ref_outs, ref_grads = forward_backward(fn("oracle", resets=resets), leaves([x, a, h0]))
    assert_all_close(outs + grads, ref_outs + ref_grads, torch.float32, "bwd")
    cu = torch.tensor([0, 5, 5, 40, 148], device="cuda")
    xv, av = x.reshape(1, -1, 300), a.reshape(1, -1, 300)
    outs, grads = forward_backward(fn("triton", impl="chunk", cu_seqlens=cu), leaves([xv, av, h0]))
    ref_outs, ref_grads = forward_backward(fn("oracle", cu_seqlens=cu), leaves([xv, av, h0]))
    assert_all_close(outs + grads, ref_outs + ref_grads, torch.float32, "bwd")


SM90_SCRIPT = r"""
from coldstream.kernels.gated_linear_scan import ops
from coldstream.kernels.gated_linear_scan.chunk import (
    gated_linear_scan_chunk_bwd_kernel, gated_linear_scan_chunk_fwd_kernel)

tiles = ("x_ptr", "a_ptr", "out_ptr", "dout_ptr", "dx_ptr", "da_ptr")
for fn, extra in ((gated_linear_scan_chunk_fwd_kernel, {}), (gated_linear_scan_chunk_bwd_kernel, {"HAS_DHT": True})):
    consts = dict(CHUNK_T=ops.CHUNK_T, BLOCK_D=ops.CHUNK_BLOCK_D, LOG_GATES=True, HAS_H0=True, HAS_RESETS=True,
                  VARLEN=False, cu_ptr=None, **extra)
    types = {n: "*bf16" if n in tiles else "*i8" if n == "resets_ptr" else "*fp32" for n in fn.arg_names}
    sig = {n: "constexpr" if n in consts else types[n] if n.endswith("_ptr") else "i32" for n in fn.arg_names}
    # what Triton specialises at run time for D = 4096 and aligned tensors
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names) if sig[n] != "constexpr" and n != "T"}
    kernel = compile_sm90(fn, sig, consts, ops.CHUNK_NUM_WARPS, attrs=attrs)
    print(fn.__name__, "shared", kernel.metadata.shared, "vector_loads", kernel.asm["ptx"].count("ld.global.v4"),
          ptxas_spills(kernel))
"""


@pytest.mark.slow
def test_chunk_kernels_compile_for_sm90_in_registers(tmp_path):
    # catches Triton compile errors before a GPU run, and guards the layout the config was chosen for: the time
    # scan stays in each thread's registers (no shared memory), 16-byte loads, and nothing spills
    out = run_sm90(SM90_SCRIPT, tmp_path)
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    for line in lines:
        assert " shared 0 " in line, line
        assert " vector_loads 0 " not in line, line
        assert "0 bytes spill stores, 0 bytes spill loads" in line, line
