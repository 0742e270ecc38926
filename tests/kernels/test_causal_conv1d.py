"""causal_conv1d / causal_conv1d_update: Triton (interpreter on CPU) and the reference op vs the fp32 oracle."""

from __future__ import annotations

import pytest
import torch

from coldstream.kernels import causal_conv1d, causal_conv1d_update
from coldstream.kernels.causal_conv1d.naive import causal_conv1d_ref
from tests.kernels._util import assert_all_close, forward_backward, leaves
from tests.tolerances import tol

NAMES = ["x", "weight", "bias", "initial_state"]


def make_inputs(batch=2, dim=37, T=9, width=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, dim, T, generator=g),
        torch.randn(dim, width, generator=g) * 0.5,
        torch.randn(dim, generator=g),
        torch.randn(batch, dim, width - 1, generator=g),
    ]


def fn(backend, activation="silu", **kw):
    def run(x, w, b, h0):
        if backend == "oracle":
            return causal_conv1d_ref(x, w, b, h0, activation, **kw)
        return causal_conv1d(x, w, b, h0, activation, True, backend=backend, **kw)

    return run


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_forward_and_every_gradient_match_fp32_oracle(dtype, backend):
    x = [t.to(dtype) if i in (0, 3) else t for i, t in enumerate(make_inputs())]
    outs, grads = forward_backward(fn(backend), leaves(x))
    ref_outs, ref_grads = forward_backward(fn("oracle"), leaves([t.float() for t in x]))
    assert outs[0].dtype == dtype
    assert_all_close(outs, ref_outs, dtype, "fwd", ["out", "final_state"])
    assert_all_close(grads, ref_grads, dtype, "bwd", NAMES)


@pytest.mark.parametrize(
    "width,T,activation", [(2, 1, None), (3, 2, "silu"), (1, 5, None), (5, 3, "silu"), (7, 11, None), (8, 9, "silu")]
)
def test_widths_and_short_sequences(width, T, activation):
    x = make_inputs(dim=5, T=T, width=width)
    outs, grads = forward_backward(fn("triton", activation), leaves(x))
    ref_outs, ref_grads = forward_backward(fn("oracle", activation), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_two_segments_equal_whole_with_gradients(backend):
    cut = 2  # shorter than the window: the second segment reads the first one's state and the initial state

    def whole(x, w, b, h0):
        return causal_conv1d(x, w, b, h0, return_final_state=True, backend=backend)

    def segments(x, w, b, h0):
        first, mid = causal_conv1d(x[..., :cut], w, b, h0, return_final_state=True, backend=backend)
        second, final = causal_conv1d(x[..., cut:], w, b, mid, return_final_state=True, backend=backend)
        return torch.cat([first, second], -1), final

    x = make_inputs(T=10)
    outs, grads = forward_backward(segments, leaves(x))
    ref_outs, ref_grads = forward_backward(whole, leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


def test_steps_equal_one_call():
    x, w, b, h0 = make_inputs(T=10)
    whole, final = causal_conv1d(x, w, b, h0, return_final_state=True, backend="reference")
    for backend in ("triton", "reference"):
        state = torch.cat([torch.zeros(2, 37, 1), h0], -1)  # a longer buffer (S = W) as mamba keeps it
        steps = [causal_conv1d_update(x[..., t], state, w, b, "silu", backend=backend) for t in range(10)]
        torch.testing.assert_close(torch.stack(steps, -1), whole, **tol(torch.float32))
        torch.testing.assert_close(state[..., 1:], final, **tol(torch.float32))
        multi = torch.cat([torch.zeros(2, 37, 1), h0], -1)
        torch.testing.assert_close(
            causal_conv1d_update(x, multi, w, b, "silu", backend=backend), whole, **tol(torch.float32)
        )


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_resets_equal_separate_calls_with_gradients(backend):
    resets = torch.zeros(2, 8, dtype=torch.bool)
    resets[0, 3] = True
    resets[1, 0] = True

    def with_resets(x, w, b, h0):
        return causal_conv1d(x, w, b, h0, return_final_state=True, resets=resets, backend=backend)

    def separate(x, w, b, h0):
        r0a = causal_conv1d_ref(x[:1, :, :3], w, b, h0[:1])[0]
        r0b, f0 = causal_conv1d_ref(x[:1, :, 3:], w, b)
        r1, f1 = causal_conv1d_ref(x[1:], w, b)
        return torch.cat([torch.cat([r0a, r0b], -1), r1]), torch.cat([f0, f1])

    x = make_inputs(batch=2, T=8)
    outs, grads = forward_backward(with_resets, leaves(x))
    ref_outs, ref_grads = forward_backward(separate, leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_varlen_equals_separate_calls_with_gradients(backend):
    bounds = [0, 2, 9, 13]  # the first sequence is shorter than the window
    cu = torch.tensor(bounds)
    x, w, b, _ = make_inputs(batch=1, T=13, dim=6)

    def packed(x, w, b):
        return causal_conv1d(x, w, b, None, "silu", True, cu_seqlens=cu, backend=backend)

    def separate(x, w, b):
        parts = [causal_conv1d_ref(x[..., bounds[s] : bounds[s + 1]], w, b) for s in range(3)]
        return torch.cat([p[0] for p in parts], -1), torch.cat([p[1] for p in parts])

    outs, grads = forward_backward(packed, leaves([x, w, b]))
    ref_outs, ref_grads = forward_backward(separate, leaves([x, w, b]))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd")


def test_opcheck_compile_gradcheck_reference():
    x = leaves(make_inputs(batch=2, dim=3, T=4))
    torch.library.opcheck(torch.ops.coldstream.causal_conv1d_fwd.default, (*x, None, True, "reference"))
    state = torch.randn(2, 3, 3)
    torch.library.opcheck(
        torch.ops.coldstream.causal_conv1d_update.default,
        (torch.randn(2, 3, 1), state, x[1].detach(), x[2].detach(), True, "reference"),
    )
    compiled = torch.compile(fn("reference"), fullgraph=True, backend="aot_eager")
    outs, grads = forward_backward(compiled, leaves(x))
    ref_outs, ref_grads = forward_backward(fn("reference"), leaves(x))
    assert_all_close(outs + grads, ref_outs + ref_grads, torch.float32, "bwd")
    x64 = tuple(t.detach().double().requires_grad_() for t in x)
    assert torch.autograd.gradcheck(fn("reference"), x64)


def test_step_op_is_registered_on_both_backends():
    # the reference step runs through the same torch.library op as the Triton one (opcheck: schema, fake, aliasing)
    x, w, b, h0 = make_inputs(batch=2, dim=5, T=3)
    state = h0.clone()
    torch.library.opcheck(torch.ops.coldstream.causal_conv1d_update.default, (x, state, w, b, True, "reference"))
    state = h0.clone()
    compiled = torch.compile(causal_conv1d_update, fullgraph=True, backend="aot_eager")
    out = compiled(x[..., 0], state, w, b, "silu", backend="reference")
    ref_state = h0.clone()
    torch.testing.assert_close(out, causal_conv1d_update(x[..., 0], ref_state, w, b, "silu", backend="triton"))
    torch.testing.assert_close(state, ref_state)


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_step_with_state_indices_steps_a_pool_of_slots(backend):
    # rows step slots 3, (padding), 0, 4 of a pool of 5: equal to stepping those slots alone; slots 1, 2 untouched
    g = torch.Generator().manual_seed(1)
    pool = torch.randn(5, 6, 3, generator=g)
    x, w, b = torch.randn(4, 6, 2, generator=g), torch.randn(6, 4, generator=g), torch.randn(6, generator=g)
    idx = torch.tensor([3, -1, 0, 4], dtype=torch.int32)
    expected_pool, expected = pool.clone(), torch.zeros_like(x)
    for row, slot in enumerate(idx.tolist()):
        if slot >= 0:
            state = expected_pool[slot : slot + 1].clone()
            expected[row] = causal_conv1d_update(x[row : row + 1], state, w, b, "silu", backend="reference")[0]
            expected_pool[slot] = state[0]
    out = causal_conv1d_update(x, pool, w, b, "silu", conv_state_indices=idx, backend=backend)
    torch.testing.assert_close(out, expected, **tol(torch.float32))
    torch.testing.assert_close(pool, expected_pool, **tol(torch.float32))
    if backend == "reference":
        torch.library.opcheck(
            torch.ops.coldstream.causal_conv1d_update.default, (x, pool.clone(), w, b, True, backend, idx)
        )


def test_errors_say_why():
    x, w, b, h0 = make_inputs()
    with pytest.raises(ValueError, match="1 <= W <= 8"):
        causal_conv1d(x, torch.randn(37, 9))
    with pytest.raises(ValueError, match=r"conv_state must have shape \[slots, D = 37"):
        causal_conv1d_update(x[..., 0], h0[:, :5], w, conv_state_indices=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="conv_state_indices must be an integer tensor of shape"):
        causal_conv1d_update(x[..., 0], h0, w, conv_state_indices=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"initial_state must have shape \[S, D, W - 1\]"):
        causal_conv1d(x, w, b, h0[..., :2])
    with pytest.raises(ValueError, match="initial_state with cu_seqlens"):
        causal_conv1d(x[:1], w, b, h0[:1], cu_seqlens=torch.tensor([0, 9]))


@pytest.mark.cuda
def test_cuda_triton_matches_reference_compile_and_graph_replay():
    for dtype in (torch.float32, torch.bfloat16):
        x = [t.cuda().to(dtype) if i in (0, 3) else t.cuda() for i, t in enumerate(make_inputs(64, 300, 40))]
        outs, grads = forward_backward(fn("triton"), leaves(x))
        ref_outs, ref_grads = forward_backward(fn("oracle"), leaves([t.float() for t in x]))
        assert_all_close(outs, ref_outs, dtype, "fwd")
        assert_all_close(grads, ref_grads, dtype, "bwd", NAMES)
    x = [t.cuda() for t in make_inputs(4, 64, 16)]
    outs, grads = forward_backward(torch.compile(fn("triton"), fullgraph=True), leaves(x))
    ref_outs, ref_grads = forward_backward(fn("triton"), leaves(x))
    assert_all_close(outs + grads, ref_outs + ref_grads, torch.float32, "bwd")
    # CUDA-graph replay of the streaming step == eager steps
    xs, w, b, h0 = (t.cuda() for t in make_inputs(201, 512, 3))
    eager_state = h0.clone()
    eager = [causal_conv1d_update(xs[..., t], eager_state, w, b, "silu", backend="triton") for t in range(3)]
    state, static_x = h0.clone(), xs[..., 0].clone()
    causal_conv1d_update(static_x, state.clone(), w, b, "silu", backend="triton")
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = causal_conv1d_update(static_x, state, w, b, "silu", backend="triton")
    for t in range(3):
        static_x.copy_(xs[..., t])
        graph.replay()
        torch.testing.assert_close(out, eager[t], atol=0, rtol=0)
    torch.testing.assert_close(state, eager_state, atol=0, rtol=0)


def test_wide_window_with_resets_and_state_matches_reference():
    # widths past Dao's 4: every tap, reset masking and the state gradient through the Triton path
    x, w, b, h0 = make_inputs(batch=2, dim=6, T=12, width=6)
    resets = torch.zeros(2, 12, dtype=torch.bool)
    resets[0, 3] = resets[1, 10] = True
    outs, grads = forward_backward(fn("triton", resets=resets), leaves([x, w, b, h0]))
    ref_outs, ref_grads = forward_backward(fn("oracle", resets=resets), leaves([x, w, b, h0]))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


def _assert_gradients_repeat_bitwise(x):
    first = forward_backward(fn("triton"), leaves(x))[1]
    for _ in range(2):
        for a, b in zip(first, forward_backward(fn("triton"), leaves(x))[1], strict=True):
            assert torch.equal(a, b)


def test_backward_is_deterministic(monkeypatch):
    # dweight and dbias are per-program partials summed in a fixed order (no float atomics): bitwise repeatable
    from coldstream.kernels.causal_conv1d import ops

    monkeypatch.setattr(ops, "PROGRAMS_PER_ROW_GROUP", 1)
    _assert_gradients_repeat_bitwise(make_inputs(batch=5, dim=20, T=7))


@pytest.mark.cuda
def test_cuda_backward_is_bitwise_repeatable():
    x = make_inputs(1608, 256, 16)
    _assert_gradients_repeat_bitwise(
        [t.cuda().to(torch.bfloat16) if i in (0, 3) else t.cuda() for i, t in enumerate(x)]
    )


def test_backward_with_several_rows_per_program(monkeypatch):
    from coldstream.kernels.causal_conv1d import ops

    monkeypatch.setattr(ops, "PROGRAMS_PER_ROW_GROUP", 1)
    x = make_inputs(batch=3, dim=20, T=5)
    outs, grads = forward_backward(fn("triton"), leaves(x))
    ref_outs, ref_grads = forward_backward(fn("oracle"), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


def _check_against_oracle(width, T, dtype, activation="silu", bias=True, state=True, resets=None, dim=6):
    x = make_inputs(batch=2, dim=dim, T=T, width=width, seed=width * 100 + T)
    x = [t.to(dtype) if i in (0, 3) else t for i, t in enumerate(x)]
    if not bias:
        x[2] = None
    if not state:
        x[3] = None
    outs, grads = forward_backward(fn("triton", activation, resets=resets), leaves(x))
    ref_outs, ref_grads = forward_backward(
        fn("oracle", activation, resets=resets), leaves([t if t is None else t.float() for t in x])
    )
    assert_all_close(outs, ref_outs, dtype, "fwd", ["out", "final_state"])
    assert_all_close(grads, ref_grads, dtype, "bwd", NAMES)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("width", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("T", [3, 13, 37])
def test_register_tiles_at_every_width(dtype, width, T):
    # a thread reads its steps in 16-byte vectors (8 bf16 / 4 fp32 steps) and holds 16-step register tiles: T = 3
    # is shorter than most windows and than one vector, 13 ends inside a vector, 37 spans three tiles (the window
    # and, in the backward, dx's W - 1 trailing steps carried across tiles); with resets, bias-free and no SiLU
    # at alternating widths
    g = torch.Generator().manual_seed(width * T)
    resets = torch.rand(2, T, generator=g) < 0.2 if width % 2 else None
    _check_against_oracle(width, T, dtype, "silu" if width % 3 else None, bias=width != 5, resets=resets)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("width,T,state", [(4, 21, True), (8, 21, True), (7, 9, False), (3, 1, True)])
def test_one_vector_per_register_tile(monkeypatch, dtype, width, T, state):
    # the smallest register tile (one vector) puts many tiles in a row: every carry between tiles is exercised,
    # also when the window (W - 1 = 7) is longer than a whole fp32 tile (4 steps)
    from coldstream.kernels.causal_conv1d import ops

    monkeypatch.setattr(ops, "BLOCK_T", 1)
    monkeypatch.setattr(ops, "BWD_BLOCK_T", 1)
    resets = torch.zeros(2, T, dtype=torch.bool)
    resets[0, T // 2] = True
    _check_against_oracle(width, T, dtype, state=state, resets=resets)


def test_channels_span_several_programs(monkeypatch):
    # BLOCK_D channels per program (one per thread): a partial last block of channels, forward and backward
    from coldstream.kernels.causal_conv1d import ops

    monkeypatch.setattr(ops, "BLOCK_D", 8)
    monkeypatch.setattr(ops, "BWD_BLOCK_D", 8)
    _check_against_oracle(4, 19, torch.float16, dim=21)
