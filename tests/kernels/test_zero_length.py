"""T = 0: every recurrent op returns an empty output and hands its initial state through, gradient included."""

from __future__ import annotations

import pytest
import torch

from coldstream.kernels import causal_conv1d, gated_linear_scan, selective_scan


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_zero_length_hands_the_state_through(backend):
    h0 = torch.randn(2, 4, 2, requires_grad=True)
    u = torch.randn(2, 4, 0)
    B = torch.randn(2, 2, 0)
    out, last = selective_scan(u, u, -torch.ones(4, 2), B, B, None, None, None, False, True, h0, backend=backend)
    assert out.shape == (2, 4, 0)
    torch.testing.assert_close(last, h0.detach())
    (last * 2).sum().backward()
    torch.testing.assert_close(h0.grad, torch.full_like(h0, 2.0))

    s0 = torch.randn(2, 4, requires_grad=True)
    res = gated_linear_scan(torch.randn(2, 0, 4), torch.rand(2, 0, 4), s0, True, backend=backend)
    assert res.output.shape == (2, 0, 4)
    torch.testing.assert_close(res.final_state, s0.detach())
    (res.final_state * 3).sum().backward()
    torch.testing.assert_close(s0.grad, torch.full_like(s0, 3.0))

    c0 = torch.randn(2, 4, 3, requires_grad=True)
    conv_out, final = causal_conv1d(
        torch.randn(2, 4, 0), torch.randn(4, 4), None, c0, return_final_state=True, backend=backend
    )
    assert conv_out.shape == (2, 4, 0)
    torch.testing.assert_close(final, c0.detach())
    final.sum().backward()
    torch.testing.assert_close(c0.grad, torch.ones_like(c0))
