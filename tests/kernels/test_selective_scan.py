"""selective_scan / selective_state_update: Triton (interpreter on CPU) and the reference op vs the fp32 oracle."""

from __future__ import annotations

import pytest
import torch

from coldstream.kernels import selective_scan, selective_state_update
from coldstream.kernels.selective_scan.naive import selective_scan_ref
from tests.kernels._util import assert_all_close, forward_backward, leaves
from tests.tolerances import tol

NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"]
LOW_PRECISION = {"u", "delta", "B", "C", "z"}  # activations; A, D, delta_bias, the state stay fp32


def make_inputs(batch=2, dim=20, T=19, n=8, groups=None, full=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    bc = (batch, n, T) if groups is None else (batch, groups, n, T)
    return dict(
        u=torch.randn(batch, dim, T, generator=g),
        delta=torch.randn(batch, dim, T, generator=g) * 0.5 - 1.0,
        A=-(torch.rand(dim, n, generator=g) * 2 + 0.1),
        B=torch.randn(*bc, generator=g),
        C=torch.randn(*bc, generator=g),
        D=torch.randn(dim, generator=g) if full else None,
        z=torch.randn(batch, dim, T, generator=g) if full else None,
        delta_bias=torch.randn(dim, generator=g) * 0.1 if full else None,
        initial_state=torch.randn(batch, dim, n, generator=g) if full else None,
    )


def cast(inputs: dict, dtype: torch.dtype) -> list:
    return [None if inputs[k] is None else inputs[k].to(dtype if k in LOW_PRECISION else torch.float32) for k in NAMES]


def scan_fn(backend, softplus=True, **kw):
    def fn(u, delta, A, B, C, D, z, delta_bias, initial_state):
        if backend == "oracle":
            return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, softplus, initial_state, **kw)
        return selective_scan(u, delta, A, B, C, D, z, delta_bias, softplus, True, initial_state, backend=backend, **kw)

    return fn


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_forward_and_every_gradient_match_fp32_oracle(dtype, backend):
    # 20 channels (not a power of two), T = 19 (two chunks of 16: exercises the checkpoints), every optional input
    inputs = make_inputs()
    lp = cast(inputs, dtype)
    outs, grads = forward_backward(scan_fn(backend), leaves(lp))
    ref_outs, ref_grads = forward_backward(scan_fn("oracle"), leaves([None if t is None else t.float() for t in lp]))
    assert outs[0].dtype == dtype and outs[1].dtype == torch.float32
    assert_all_close(outs, ref_outs, dtype, "fwd", ["out", "last_state"])
    assert_all_close(grads, ref_grads, dtype, "bwd", NAMES)


@pytest.mark.parametrize(
    "shape",
    [
        dict(batch=1, dim=16, T=1, n=4, full=False),  # T = 1, no optional inputs
        dict(batch=2, dim=24, T=7, n=4, groups=2),  # grouped B/C, odd T
        dict(batch=1, dim=8, T=33, n=16, full=False),  # three chunks, d_state 16
        dict(batch=2, dim=12, T=5, n=4, groups=4),  # 3 channels per group: one-channel blocks
    ],
    ids=["T1-bare", "groups-oddT", "3chunks", "odd-group-size"],
)
def test_shapes_triton_vs_oracle(shape):
    inputs = make_inputs(**shape)
    softplus = shape.get("full", True)
    if not softplus:  # positive steps, so the recurrence stays bounded
        inputs["delta"] = torch.nn.functional.softplus(inputs["delta"])
    lp = cast(inputs, torch.float32)
    outs, grads = forward_backward(scan_fn("triton", softplus), leaves(lp))
    ref_outs, ref_grads = forward_backward(scan_fn("oracle", softplus), leaves(lp))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


def test_plain_return_is_mamba_compatible():
    x = cast(make_inputs(T=5), torch.float32)
    out = selective_scan(*x[:8], delta_softplus=True, backend="triton")
    assert isinstance(out, torch.Tensor)
    out2, last = selective_scan(*x[:8], True, True, x[8], backend="triton")
    torch.testing.assert_close(out2, selective_scan_ref(*x[:8], True, x[8])[0])
    assert last.shape == (2, 20, 8)


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_two_segments_equal_whole_with_gradients(backend):
    # the first segment's last state feeds the second: its gradient (d last_state) flows back through the hand-off
    cut = 13

    def whole(u, delta, A, B, C, D, z, bias, h0):
        return selective_scan(u, delta, A, B, C, D, z, bias, True, True, h0, backend=backend)

    def segments(u, delta, A, B, C, D, z, bias, h0):
        first, mid = selective_scan(
            u[..., :cut],
            delta[..., :cut],
            A,
            B[..., :cut],
            C[..., :cut],
            D,
            z[..., :cut],
            bias,
            True,
            True,
            h0,
            backend=backend,
        )
        second, last = selective_scan(
            u[..., cut:],
            delta[..., cut:],
            A,
            B[..., cut:],
            C[..., cut:],
            D,
            z[..., cut:],
            bias,
            True,
            True,
            mid,
            backend=backend,
        )
        return torch.cat([first, second], -1), last

    x = cast(make_inputs(T=21), torch.float32)
    outs, grads = forward_backward(segments, leaves(x))
    ref_outs, ref_grads = forward_backward(whole, leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd", ["out", "last_state"])
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


def test_resets_equal_separate_calls():
    inputs = make_inputs(batch=2, T=12)
    x = cast(inputs, torch.float32)
    resets = torch.zeros(2, 12, dtype=torch.bool)
    resets[0, 5] = True
    resets[1, 0] = True  # a reset at t = 0 drops the initial state
    out, last = selective_scan(*x[:8], True, True, x[8], resets=resets, backend="triton")
    u, delta, A, B, C, D, z, bias, h0 = x
    row0a = selective_scan_ref(
        u[:1, :, :5], delta[:1, :, :5], A, B[:1, :, :5], C[:1, :, :5], D, z[:1, :, :5], bias, True, h0[:1]
    )[0]
    row0b, last0 = selective_scan_ref(
        u[:1, :, 5:], delta[:1, :, 5:], A, B[:1, :, 5:], C[:1, :, 5:], D, z[:1, :, 5:], bias, True, None
    )
    row1, last1 = selective_scan_ref(u[1:], delta[1:], A, B[1:], C[1:], D, z[1:], bias, True, None)
    torch.testing.assert_close(out, torch.cat([torch.cat([row0a, row0b], -1), row1]), **tol(torch.float32, "fwd"))
    torch.testing.assert_close(last, torch.cat([last0, last1]), **tol(torch.float32, "fwd"))


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_resets_gradients_match_oracle(backend):
    # resets at t = 0 (drops the initial state), inside the first chunk, and on both sides of a chunk border (T = 19
    # spans two 16-step chunks); the oracle is autograd through the reference forward, "reference" its analytic
    # backward
    resets = torch.zeros(2, 19, dtype=torch.bool)
    resets[0, 5] = resets[0, 15] = resets[0, 16] = True
    resets[1, 0] = True
    x = cast(make_inputs(batch=2, T=19), torch.float32)
    outs, grads = forward_backward(scan_fn(backend, resets=resets), leaves(x))
    ref_outs, ref_grads = forward_backward(scan_fn("oracle", resets=resets), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


def separate_calls(bounds: list[int]):
    """The fp32 oracle run sequence by sequence over packed ``[1, D, T]`` inputs cut at ``bounds`` (cu_seqlens),
    each from its own initial state: what a packed call must equal."""

    def separate(u, delta, A, B, C, D, z, bias, h0):
        outs, lasts = [], []
        for s in range(len(bounds) - 1):
            sl = slice(bounds[s], bounds[s + 1])
            o, last = selective_scan_ref(
                u[..., sl], delta[..., sl], A, B[..., sl], C[..., sl], D, z[..., sl], bias, True, h0[s : s + 1]
            )
            outs.append(o)
            lasts.append(last)
        return torch.cat(outs, -1), torch.cat(lasts)

    return separate


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_varlen_equals_separate_calls_with_gradients(backend):
    bounds = [0, 4, 4, 21, 26]  # includes an empty sequence and one longer than a chunk
    cu = torch.tensor(bounds, dtype=torch.int32)
    inputs = make_inputs(batch=1, T=26, dim=16, n=4)
    inputs["initial_state"] = torch.randn(4, 16, 4)
    x = cast(inputs, torch.float32)

    def packed(*t):
        return scan_fn(backend, cu_seqlens=cu)(*t)

    outs, grads = forward_backward(packed, leaves(x))
    ref_outs, ref_grads = forward_backward(separate_calls(bounds), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


@pytest.mark.parametrize("groups", [None, 2])
def test_single_steps_equal_one_call(groups):
    x = cast(make_inputs(batch=2, dim=16, T=5, n=8, groups=groups), torch.float32)
    u, delta, A, B, C, D, z, bias, h0 = x
    out, last = selective_scan(u, delta, A, B, C, D, z, bias, True, True, h0, backend="reference")
    for backend in ("triton", "reference"):
        state = h0.clone()
        steps = [
            selective_state_update(
                state, u[..., t], delta[..., t], A, B[..., t], C[..., t], D, z[..., t], bias, True, backend=backend
            )
            for t in range(5)
        ]
        torch.testing.assert_close(torch.stack(steps, -1), out, **tol(torch.float32, "fwd"))
        torch.testing.assert_close(state, last, **tol(torch.float32, "fwd"))


def test_step_low_precision_keeps_fp32_state():
    x = cast(make_inputs(batch=2, dim=16, T=1, n=8), torch.bfloat16)
    u, delta, A, B, C, D, z, bias, h0 = x
    s_tri, s_ref = h0.clone(), h0.clone()
    o_tri = selective_state_update(
        s_tri, u[..., 0], delta[..., 0], A, B[..., 0], C[..., 0], D, z[..., 0], bias, True, backend="triton"
    )
    o_ref = selective_state_update(
        s_ref,
        u[..., 0].float(),
        delta[..., 0].float(),
        A,
        B[..., 0].float(),
        C[..., 0].float(),
        D,
        z[..., 0].float(),
        bias,
        True,
        backend="reference",
    )
    assert o_tri.dtype == torch.bfloat16 and s_tri.dtype == torch.float32
    torch.testing.assert_close(o_tri.float(), o_ref, **tol(torch.bfloat16, "fwd"))
    torch.testing.assert_close(s_tri, s_ref, **tol(torch.float32, "fwd"))


def test_step_updates_a_bf16_state_in_its_dtype():
    # mamba-ssm's convention, and the way under the fp32-state HBM floor: state stored in bf16, arithmetic in fp32
    u, delta, A, B, C, D, z, bias, h0 = cast(make_inputs(batch=2, dim=16, T=1, n=8), torch.bfloat16)
    s_tri, s_ref = h0.bfloat16(), h0.bfloat16()
    args = (u[..., 0], delta[..., 0], A, B[..., 0], C[..., 0], D, z[..., 0], bias, True)
    o_tri = selective_state_update(s_tri, *args, backend="triton")
    o_ref = selective_state_update(s_ref, *args, backend="reference")
    assert s_tri.dtype == torch.bfloat16
    torch.testing.assert_close(s_tri.float(), s_ref.float(), **tol(torch.bfloat16, "fwd"))
    torch.testing.assert_close(o_tri.float(), o_ref.float(), **tol(torch.bfloat16, "fwd"))


def _op_args(x, backend="reference"):
    u, delta, A, B, C, D, z, bias, h0 = x
    return (u, delta, A, B.unsqueeze(1), C.unsqueeze(1), D, z, bias, h0, None, None, u.shape[-1], True, backend)


def test_opcheck_reference():
    x = leaves(cast(make_inputs(batch=2, dim=4, T=3, n=2), torch.float32))
    torch.library.opcheck(torch.ops.coldstream.selective_scan_fwd.default, _op_args(x))
    y = cast(make_inputs(batch=2, dim=4, T=3, n=2), torch.float32)
    state = y[8].clone()
    torch.library.opcheck(
        torch.ops.coldstream.selective_state_update.default,
        (
            state,
            y[0][..., 0],
            y[1][..., 0],
            y[2],
            y[3][:, None, :, 0],
            y[4][:, None, :, 0],
            y[5],
            y[6][..., 0],
            y[7],
            True,
            "reference",
        ),
    )


def test_torch_compile_fullgraph_reference():
    x = cast(make_inputs(batch=2, dim=4, T=3, n=2), torch.float32)

    def f(u, delta, A, B, C, D, z, bias, h0):
        out, last = selective_scan(u, delta, A, B, C, D, z, bias, True, True, h0, backend="reference")
        return out, last

    outs, grads = forward_backward(torch.compile(f, fullgraph=True, backend="aot_eager"), leaves(x))
    ref_outs, ref_grads = forward_backward(f, leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


def test_opcheck_and_compile_reference_with_cu_seqlens():
    # the packed path of the reference has no host sync, so it traces too (an empty sequence included)
    cu = torch.tensor([0, 2, 2, 5], dtype=torch.int32)
    inputs = make_inputs(batch=1, dim=4, T=5, n=2)
    inputs["initial_state"] = torch.randn(3, 4, 2)
    x = cast(inputs, torch.float32)
    u, delta, A, B, C, D, z, bias, h0 = leaves(x)
    torch.library.opcheck(
        torch.ops.coldstream.selective_scan_fwd.default,
        (u, delta, A, B[:, None], C[:, None], D, z, bias, h0, None, cu, 3, True, "reference"),
    )
    compiled = torch.compile(scan_fn("reference", cu_seqlens=cu, max_seqlen=3), fullgraph=True, backend="aot_eager")
    outs, grads = forward_backward(compiled, leaves(x))
    ref_outs, ref_grads = forward_backward(scan_fn("reference", cu_seqlens=cu), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


def test_gradcheck_float64_reference():
    x = [t.double().requires_grad_() for t in cast(make_inputs(batch=1, dim=3, T=4, n=2), torch.float32)]

    def f(*t):
        return selective_scan(*t[:8], True, True, t[8], backend="reference")

    assert torch.autograd.gradcheck(f, tuple(x), eps=1e-6, atol=1e-7)


def test_errors_say_why():
    x = cast(make_inputs(T=3, n=6), torch.float32)
    with pytest.raises(RuntimeError, match="d_state must be a power of two"):
        selective_scan(*x[:8], backend="triton")
    with pytest.raises(ValueError, match=r"delta must have shape \[B, D, T\]"):
        selective_scan(x[0], x[1][..., :2], *x[2:8], backend="reference")
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(*x[:8], backend="cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("T", [16, 300])
def test_cuda_triton_matches_reference(T):
    inputs = make_inputs(batch=64, dim=256, T=T, n=16, seed=1)
    for dtype in (torch.float32, torch.bfloat16):
        lp = [None if t is None else t.cuda() for t in cast(inputs, dtype)]
        outs, grads = forward_backward(scan_fn("triton"), leaves(lp))
        ref_outs, ref_grads = forward_backward(
            scan_fn("oracle"), leaves([None if t is None else t.float() for t in lp])
        )
        assert_all_close(outs, ref_outs, dtype, "fwd")
        assert_all_close(grads, ref_grads, dtype, "bwd", NAMES)


@pytest.mark.cuda
def test_cuda_compile_and_opcheck_triton():
    x = [None if t is None else t.cuda() for t in cast(make_inputs(batch=4, dim=32, T=20, n=16), torch.float32)]
    torch.library.opcheck(torch.ops.coldstream.selective_scan_fwd.default, _op_args(leaves(x), "triton"))

    def f(*t):
        return selective_scan(*t[:8], True, True, t[8], backend="triton")

    outs, grads = forward_backward(torch.compile(f, fullgraph=True), leaves(x))
    ref_outs, ref_grads = forward_backward(f, leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


@pytest.mark.cuda
def test_cuda_graph_replay_equals_eager_step():
    x = [None if t is None else t.cuda() for t in cast(make_inputs(batch=201, dim=512, T=3, n=16), torch.bfloat16)]
    u, delta, A, B, C, D, z, bias, h0 = x
    state_eager = h0.clone()
    eager = [
        selective_state_update(
            state_eager, u[..., t], delta[..., t], A, B[..., t], C[..., t], D, z[..., t], bias, True, backend="triton"
        )
        for t in range(3)
    ]
    state = h0.clone()
    static = [t[..., 0].clone() for t in (u, delta, B, C, z)]
    selective_state_update(
        state.clone(), static[0], static[1], A, static[2], static[3], D, static[4], bias, True, backend="triton"
    )  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = selective_state_update(
            state, static[0], static[1], A, static[2], static[3], D, static[4], bias, True, backend="triton"
        )
    for t in range(3):
        for buf, src in zip(static, (u, delta, B, C, z), strict=True):
            buf.copy_(src[..., t])
        graph.replay()
        torch.testing.assert_close(out, eager[t], atol=0, rtol=0)
    torch.testing.assert_close(state, state_eager, atol=0, rtol=0)


def test_backward_with_several_sequences_per_program(monkeypatch):
    # on a GPU at the project's shape each backward program loops over several sequences and channel blocks (up to
    # 16 pairs, ops._bwd_split); force that path here
    from coldstream.kernels.selective_scan import ops

    monkeypatch.setattr(ops, "PROGRAMS_PER_ROW_GROUP", 1)
    x = cast(make_inputs(batch=3, dim=20, T=5, n=4), torch.float32)
    outs, grads = forward_backward(scan_fn("triton"), leaves(x))
    ref_outs, ref_grads = forward_backward(scan_fn("oracle"), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)
