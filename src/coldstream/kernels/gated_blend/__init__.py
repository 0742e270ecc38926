"""Sigmoid-gated blend (1 - sigmoid(l)) * a + sigmoid(l) * b, fused forward and backward."""

from __future__ import annotations

import torch

from .._backend import resolve_backend
from .._checks import expect, expect_float
from .naive import gated_blend_ref
from .ops import gated_blend_apply


def gated_blend(a: torch.Tensor, b: torch.Tensor, logits: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """``(1 - sigmoid(logits)) * a + sigmoid(logits) * b``; a, b, logits of one shape ``[...]``, output in a's dtype.

    GMMix's gate (a = pre-temporal, b = post-temporal branch) and RVMRNN's state update, in one kernel.
    """
    expect("b", b, tuple(a.shape), "a.shape")
    expect("logits", logits, tuple(a.shape), "a.shape")
    for name, t in (("a", a), ("b", b), ("logits", logits)):
        expect_float(name, t)
    be = resolve_backend("gated_blend", backend, [a, b, logits])

    return gated_blend_apply(be, a, b, logits)


__all__ = ["gated_blend", "gated_blend_ref"]
