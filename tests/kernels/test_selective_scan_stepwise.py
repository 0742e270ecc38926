"""The reference backend's stepwise runtime path equals the naive fp32 reference, forward and every gradient."""

import pytest
import torch

from coldstream.kernels.selective_scan.naive import selective_scan_bwd_ref, selective_scan_ref
from coldstream.kernels.selective_scan.stepwise import selective_scan_bwd_stepwise, selective_scan_stepwise


def _inputs(batch, dim, T, n, groups, dtype, full, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*s, scale=1.0):
        return (scale * torch.randn(*s, generator=g)).to(dtype)

    x = {
        "u": r(batch, dim, T),
        "delta": r(batch, dim, T, scale=0.5),
        "A": -torch.rand(dim, n, generator=g).to(dtype if dtype == torch.float64 else torch.float32),
        "B": r(batch, groups, n, T),
        "C": r(batch, groups, n, T),
        "D": r(dim) if full else None,
        "z": r(batch, dim, T) if full else None,
        "delta_bias": r(dim, scale=0.5) if full else None,
    }
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("full", [True, False], ids=["D-z-bias", "bare"])
@pytest.mark.parametrize("state", ["none", "initial", "resets", "both"])
@pytest.mark.parametrize("T", [0, 1, 13])
def test_stepwise_equals_naive(dtype, groups, full, state, T):
    batch, dim, n = 3, 12, 4
    x = _inputs(batch, dim, T, n, groups, dtype, full)
    g = torch.Generator().manual_seed(1)
    h0 = torch.randn(batch, dim, n, generator=g).to(dtype) if state in ("initial", "both") else None
    resets = (torch.rand(batch, T, generator=g) < 0.3) if state in ("resets", "both") else None
    softplus = full
    args = (*x.values(), softplus, h0, resets)
    out, last = selective_scan_stepwise(*args)
    out_ref, last_ref = selective_scan_ref(*args, None)
    exact = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(out.double(), out_ref.double(), **exact)
    torch.testing.assert_close(last.double(), last_ref.double(), **exact)
    dout = torch.randn(out.shape, generator=g).to(dtype)
    dlast = torch.randn(last.shape, generator=g).to(last.dtype)
    grads = selective_scan_bwd_stepwise(dout, dlast, *args)
    want = selective_scan_bwd_ref(dout, dlast, *args, None)
    names = ["du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias", "dinitial_state"]
    for name, a, b in zip(names, grads, want, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.shape == b.shape, name
            torch.testing.assert_close(a.double(), b.double(), **exact, msg=lambda m, name=name: f"{name}: {m}")
