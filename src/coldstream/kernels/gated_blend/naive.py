"""fp32 PyTorch reference for the sigmoid-gated blend."""

from __future__ import annotations

import torch

from .._checks import acc_dtype


def gated_blend_ref(a: torch.Tensor, b: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``(1 - sigmoid(logits)) * a + sigmoid(logits) * b`` in fp32, returned in ``a.dtype``. All shapes equal."""
    acc = acc_dtype(a.dtype)
    g = torch.sigmoid(logits.to(acc))
    return ((1 - g) * a.to(acc) + g * b.to(acc)).to(a.dtype)
