"""selective_state_update beyond one step of one stream: L steps per state pass, a pool of stream slots indexed by
batch row (padding rows included), and a bf16 state stored with stochastic rounding. Triton (interpreter on CPU)
and the reference op."""

from __future__ import annotations

import pytest
import torch

from coldstream.kernels import selective_state_update
from tests.tolerances import tol

BACKENDS = ["triton", "reference"]


def make_step_inputs(batch=3, dim=16, L=4, n=8, groups=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    bc = (batch, n, L) if groups is None else (batch, groups, n, L)
    return dict(
        x=torch.randn(batch, dim, L, generator=g),
        dt=torch.randn(batch, dim, L, generator=g) * 0.5 - 1.0,
        A=-(torch.rand(dim, n, generator=g) * 2 + 0.1),
        B=torch.randn(*bc, generator=g),
        C=torch.randn(*bc, generator=g),
        D=torch.randn(dim, generator=g),
        z=torch.randn(batch, dim, L, generator=g),
        dt_bias=torch.randn(dim, generator=g) * 0.1,
        state=torch.randn(batch, dim, n, generator=g),
    )


def step(state, i, t=None, backend="reference", **kw):
    """Step ``state`` with inputs ``i``: all L steps at once (t None), or step t alone."""
    pick = (lambda v: v) if t is None else (lambda v: v[..., t])
    return selective_state_update(
        state, pick(i["x"]), pick(i["dt"]), i["A"], pick(i["B"]), pick(i["C"]), i["D"], pick(i["z"]),
        i["dt_bias"], True, backend=backend, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("groups", [None, 2])
@pytest.mark.parametrize("backend", BACKENDS)
def test_steps_in_one_pass_equal_single_steps(backend, groups):
    i = make_step_inputs(groups=groups)
    ref_state = i["state"].clone()
    singles = torch.stack([step(ref_state, i, t) for t in range(4)], -1)
    state = i["state"].clone()
    out = step(state, i, backend=backend)
    assert out.shape == (3, 16, 4)
    torch.testing.assert_close(out, singles, **tol(torch.float32, "fwd"))
    torch.testing.assert_close(state, ref_state, **tol(torch.float32, "fwd"))


@pytest.mark.parametrize("steps", [None, 2])
@pytest.mark.parametrize("backend", BACKENDS)
def test_state_indices_step_a_pool_of_slots(backend, steps):
    # rows step slots 4, (padding), 1 of a pool of 5: as if those slots were stepped alone; the others untouched
    i = make_step_inputs(L=steps or 1)
    if steps is None:
        i = {k: v[..., 0] if k in ("x", "dt", "z", "B", "C") else v for k, v in i.items()}
    pool = torch.randn(5, 16, 8, generator=torch.Generator().manual_seed(3))
    idx = torch.tensor([4, -1, 1])
    expected_pool, expected = pool.clone(), []
    for row, slot in enumerate(idx.tolist()):
        row_inputs = {k: v[row : row + 1] if k in ("x", "dt", "z", "B", "C") else v for k, v in i.items()}
        if slot < 0:
            expected.append(torch.zeros_like(row_inputs["x"]))
            continue
        s = expected_pool[slot : slot + 1].clone()
        expected.append(step(s, row_inputs))
        expected_pool[slot] = s[0]
    out = step(pool, i, backend=backend, state_batch_indices=idx)
    torch.testing.assert_close(out, torch.cat(expected), **tol(torch.float32, "fwd"))
    torch.testing.assert_close(pool, expected_pool, **tol(torch.float32, "fwd"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_stochastic_rounding_keeps_a_long_bf16_stream_close_to_fp32(backend):
    # updates far below bf16's resolution at the state's size: round-to-nearest drops them all (the state stays
    # put), stochastic rounding keeps them on average (unbiased: its error is a random walk around the fp32 stream)
    dim, n, steps = 16, 8, 150
    i = make_step_inputs(batch=1, dim=dim, L=1, n=n)
    i.update(
        A=torch.full((dim, n), -1e-4),
        dt=torch.full((1, dim, 1), 0.01),
        x=torch.full((1, dim, 1), 0.05),
        B=torch.ones(1, n, 1),
        dt_bias=None,
        state=torch.ones(1, dim, n),
    )
    i = {k: v[..., 0] if k in ("x", "dt", "z", "B", "C") and v is not None else v for k, v in i.items()}
    exact, nearest, rounded = i["state"].clone(), i["state"].bfloat16(), i["state"].bfloat16()
    seed = torch.zeros(1, dtype=torch.int64)
    for _ in range(steps):
        for s, kw in ((exact, {}), (nearest, {}), (rounded, {"rounding_seed": seed})):
            selective_state_update(s, i["x"], i["dt"], i["A"], i["B"], i["C"], dt_softplus=False, backend=backend, **kw)
        seed += 1
    bias_nearest = (nearest.float() - exact).mean().abs()
    bias_rounded = (rounded.float() - exact).mean().abs()
    assert (exact - 1).abs().mean() > 0.05  # the stream moved by several bf16 steps (0.0078 near 1)
    assert bias_rounded < 0.1 * bias_nearest, (bias_rounded, bias_nearest)
    assert (rounded.float() - exact).abs().mean() < 0.5 * (nearest.float() - exact).abs().mean()


def test_opcheck_reference_with_indices_and_rounding():
    i = make_step_inputs(batch=2, dim=4, L=2, n=2)
    pool = torch.randn(3, 4, 2).bfloat16()
    args = (pool, i["x"], i["dt"], i["A"], i["B"][:, None], i["C"][:, None], i["D"], i["z"], i["dt_bias"], True)
    extra = (torch.tensor([2, -1], dtype=torch.int32), torch.tensor([7]))
    torch.library.opcheck(torch.ops.coldstream.selective_state_update.default, (*args, "reference", *extra))


def test_step_errors_say_why():
    i = make_step_inputs(batch=2, dim=4, L=2, n=2)
    with pytest.raises(ValueError, match="rounding_seed .* needs a bf16 state"):
        step(i["state"].clone(), i, rounding_seed=torch.tensor([0]))
    with pytest.raises(ValueError, match="state_batch_indices must be an integer tensor of shape"):
        step(i["state"].clone(), i, state_batch_indices=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"B must have shape \[B, N, L\] or \[B, G, N, L\]"):
        step(i["state"].clone(), {**i, "B": i["B"][..., 0]})
