"""backend="triton" runs the Triton kernels and nothing else: with every PyTorch reference replaced by a function that
raises, each op still runs forward and backward (through the interpreter on CPU).

The other kernel tests compare Triton with the reference; they would pass as well if Triton silently ran the
reference. This one would not.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from coldstream.kernels import (
    causal_conv1d,
    causal_conv1d_update,
    gated_blend,
    gated_linear_scan,
    selective_scan,
    selective_state_update,
)

OPS = ("selective_scan", "causal_conv1d", "gated_linear_scan", "gated_blend")
FAST_REFERENCES = {  # the reference backend's runtime paths
    "selective_scan": ("coldstream.kernels.selective_scan.stepwise",),
    "causal_conv1d": ("coldstream.kernels.causal_conv1d.taps",),
}


@pytest.fixture
def references_raise(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a PyTorch reference ran under backend='triton'")

    for op in OPS:
        for module in (f"coldstream.kernels.{op}", f"coldstream.kernels.{op}.ops", *FAST_REFERENCES.get(op, ())):
            mod = importlib.import_module(module)
            for name in dir(mod):
                if name.endswith(("_ref", "_stepwise", "_taps")):
                    monkeypatch.setattr(mod, name, forbidden)


def _grads(*tensors):
    return [t.grad for t in tensors]


def test_scans_and_conv_run_only_triton(references_raise):
    g = torch.Generator().manual_seed(0)
    u, delta, z = (torch.randn(2, 6, 5, generator=g, requires_grad=True) for _ in range(3))
    A = (-torch.rand(6, 4, generator=g)).requires_grad_()
    B, C = (torch.randn(2, 4, 5, generator=g, requires_grad=True) for _ in range(2))
    h0 = torch.randn(2, 6, 4, generator=g, requires_grad=True)
    out, last = selective_scan(u, delta, A, B, C, None, z, None, True, True, h0, backend="triton")
    (out.sum() + last.sum()).backward()
    assert all(gr is not None for gr in _grads(u, delta, A, B, C, z, h0))

    x = torch.randn(2, 6, 5, generator=g, requires_grad=True)
    w = torch.randn(6, 4, generator=g, requires_grad=True)
    causal_conv1d(x, w, backend="triton").sum().backward()
    assert x.grad is not None and w.grad is not None

    xs = torch.randn(2, 5, 6, generator=g, requires_grad=True)
    a = torch.rand(2, 5, 6, generator=g).requires_grad_()
    gated_linear_scan(xs, a, backend="triton").output.sum().backward()
    assert xs.grad is not None and a.grad is not None

    p, q, logits = (torch.randn(3, 7, generator=g, requires_grad=True) for _ in range(3))
    gated_blend(p, q, logits, backend="triton").sum().backward()
    assert all(gr is not None for gr in _grads(p, q, logits))


def test_streaming_steps_run_only_triton(references_raise):
    g = torch.Generator().manual_seed(0)
    state = torch.randn(2, 6, 4, generator=g)
    x, dt = torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)
    A, B, C = -torch.rand(6, 4, generator=g), torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    selective_state_update(state, x, dt, A, B, C, backend="triton")
    conv_state = torch.randn(2, 6, 3, generator=g)
    causal_conv1d_update(x, conv_state, torch.randn(6, 4, generator=g), backend="triton")
