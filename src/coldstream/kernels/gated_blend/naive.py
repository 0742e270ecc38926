"""fp32 PyTorch reference for the sigmoid-gated blend."""

from __future__ import annotations

import torch

from .._checks import acc_dtype


def gated_blend_ref(a: torch.Tensor, b: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``(1 - sigmoid(logits)) * a + sigmoid(logits) * b`` in fp32, returned in ``a.dtype``. All shapes equal."""
    acc = acc_dtype(a.dtype)
    g = torch.sigmoid(logits.to(acc))
    return ((1 - g) * a.to(acc) + g * b.to(acc)).to(a.dtype)


def gated_blend_bwd_ref(
    dout: torch.Tensor, a: torch.Tensor, b: torch.Tensor, logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``da = dout (1 - g)``, ``db = dout g``, ``dlogits = dout (b - a) g (1 - g)`` with g = sigmoid(logits)."""
    acc = acc_dtype(a.dtype)
    g = torch.sigmoid(logits.to(acc))
    do = dout.to(acc)
    db = do * g
    return do - db, db, db * (1 - g) * (b.to(acc) - a.to(acc))
