"""The one attention dispatch point: every attention in coldstream (encoder, cores, readouts) calls
:func:`attention` with the backend its module was built with.

Backends: ``"sdpa"`` (PyTorch's ``scaled_dot_product_attention``, the default), ``"xformers"`` (memory-efficient
attention, CUDA only, opt-in) and ``"math"`` (softmax(q kᵀ/√d) v written out in fp32: the oracle). A module chooses
its backend once, at construction (as timm's ``fused_attn``); a chosen backend never falls back silently.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F

from coldstream import optional
from coldstream.errors import BackendError, InputError

AttentionBackend = Literal["sdpa", "xformers", "math"]
BACKENDS: tuple[str, ...] = ("sdpa", "xformers", "math")


def xformers_unavailable_reason() -> str | None:
    """``None`` if xFormers memory-efficient attention can run here, else why not."""
    reason = optional.unavailable("xformers")
    if reason is not None:
        return reason
    if not torch.cuda.is_available():
        return "xformers memory_efficient_attention runs on CUDA only and no CUDA device is available"
    return _xformers_probe()


@functools.cache
def _xformers_probe() -> str | None:
    """Importing is not enough: a wheel built for another torch/CUDA imports but has no working operator."""
    xops = optional.require("xformers")
    try:
        q = torch.zeros(1, 8, 1, 64, device="cuda", dtype=torch.float16)
        xops.memory_efficient_attention(q, q, q)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        install = optional.install_command("xformers")
        return f"xformers is installed but cannot run here ({type(e).__name__}: {first}); reinstall: {install}"
    return None


def check_backend(backend: str) -> str:
    """Validate a backend name at construction time; raise with the reason if it cannot run here."""
    if backend not in BACKENDS:
        raise InputError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "xformers":
        reason = xformers_unavailable_reason()
        if reason is not None:
            raise BackendError(f"attention='xformers' cannot be used: {reason}. Use attention='sdpa' instead.")
    return backend


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q kᵀ / √d) v in fp32 (dropout on the probabilities), cast back. ``[B, H, N, Dh]`` -> same."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    probs = torch.matmul(q.float() * scale, k.float().transpose(-2, -1)).softmax(dim=-1)
    if dropout_p > 0.0:
        probs = F.dropout(probs, dropout_p)
    return torch.matmul(probs, v.float()).to(q.dtype)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa", dropout_p: float = 0.0
) -> torch.Tensor:
    """Unmasked multi-head attention with scale 1/√Dh.

    Args:
        q, k, v: ``[B, H, N, Dh]`` (k, v may have another length M).
        backend: ``"sdpa"``, ``"xformers"`` or ``"math"``.
        dropout_p: dropout on the attention probabilities (pass 0 in eval mode).

    Returns:
        ``[B, H, N, Dh]`` in q's dtype.
    """
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    if backend == "math":
        return math_attention(q, k, v, dropout_p)
    if backend == "xformers":
        if not q.is_cuda:
            raise BackendError(
                f"attention='xformers' needs CUDA tensors, got device={q.device}; use attention='sdpa' on CPU"
            )
        xops = optional.require("xformers", "attention='xformers'")
        # xFormers takes [B, N, H, Dh]; a transpose of the middle dims keeps the last dim contiguous.
        out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), p=dropout_p)
        return out.transpose(1, 2)
    raise InputError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
