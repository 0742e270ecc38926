"""The reference backend's tap-by-tap runtime path equals the naive fp32 reference, forward and every gradient."""

import pytest
import torch

from coldstream.kernels.causal_conv1d.naive import causal_conv1d_bwd_ref, causal_conv1d_ref
from coldstream.kernels.causal_conv1d.taps import causal_conv1d_bwd_taps, causal_conv1d_taps


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("width", [1, 2, 4, 8])
@pytest.mark.parametrize("T", [0, 1, 3, 17])
@pytest.mark.parametrize("state", ["none", "initial", "resets", "both"])
@pytest.mark.parametrize("activation", ["silu", None])
def test_taps_equal_naive(dtype, width, T, state, activation):
    g = torch.Generator().manual_seed(0)
    batch, dim = 3, 10

    def r(*s):
        return torch.randn(*s, generator=g).to(dtype)

    x, w, b = r(batch, dim, T), r(dim, width), r(dim)
    h0 = r(batch, dim, width - 1) if state in ("initial", "both") else None
    resets = (torch.rand(batch, T, generator=g) < 0.3) if state in ("resets", "both") else None
    exact = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    out = causal_conv1d_taps(x, w, b, h0, activation, resets)
    if T == 0:  # the naive reference cannot unfold a window over nothing; the state's gradient passes through
        assert out.shape == (batch, dim, 0)
        dfinal = r(batch, dim, width - 1)
        dx, _, _, dinit = causal_conv1d_bwd_taps(x, dfinal, x, w, b, h0, activation, resets)
        assert dx.shape == (batch, dim, 0)
        if h0 is not None:
            torch.testing.assert_close(dinit, dfinal.to(dinit.dtype))
        return
    want, _ = causal_conv1d_ref(x, w, b, h0, activation, resets)
    torch.testing.assert_close(out.double(), want.double(), **exact)
    dout, dfinal = r(batch, dim, T), r(batch, dim, width - 1)
    got = causal_conv1d_bwd_taps(dout, dfinal, x, w, b, h0, activation, resets)
    ref = causal_conv1d_bwd_ref(dout, dfinal, x, w, b, h0, activation, resets)
    for name, a, e in zip(["dx", "dweight", "dbias", "dinitial_state"], got, ref, strict=True):
        assert (a is None) == (e is None), name
        if a is not None:
            assert a.shape == e.shape, name
            torch.testing.assert_close(a.double(), e.double(), **exact, msg=lambda m, name=name: f"{name}: {m}")
