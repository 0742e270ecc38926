"""The one attention dispatch point: PyTorch SDPA (default), xFormers memory-efficient attention (CUDA, opt-in),
and a plain math path (the oracle).

The backend is chosen once, at module construction (timm ``fused_attn``, DINOv2 ``XFORMERS_DISABLED``); a chosen
backend never falls back silently.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F

AttentionBackend = Literal["sdpa", "xformers", "math"]
BACKENDS: tuple[str, ...] = ("sdpa", "xformers", "math")
XFORMERS_INSTALL = "pip install xformers==0.0.35  # needs a CUDA build of torch >= 2.10"


class AttentionBackendError(RuntimeError):
    """An attention backend was asked for that cannot run here or on this input."""


def xformers_unavailable_reason() -> str | None:
    """``None`` if xFormers memory-efficient attention can run here, else why not."""
    try:
        import xformers.ops  # noqa: F401
    except Exception as e:  # ImportError, or a broken extension build
        return f"xformers is not importable ({type(e).__name__}: {e}); install it with: {XFORMERS_INSTALL}"
    if not torch.cuda.is_available():
        return "xformers memory_efficient_attention runs on CUDA only and no CUDA device is available"
    return _xformers_probe()


@functools.cache
def _xformers_probe() -> str | None:
    """Importing is not enough: a wheel built for another torch/CUDA imports but has no working operator."""
    import xformers.ops as xops

    try:
        q = torch.zeros(1, 8, 1, 64, device="cuda", dtype=torch.float16)
        xops.memory_efficient_attention(q, q, q)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"xformers is installed but cannot run here ({type(e).__name__}: {first}); reinstall: {XFORMERS_INSTALL}"
    return None


def check_backend(backend: str) -> str:
    """Validate a backend name at construction time; raise with the reason if it cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "xformers":
        reason = xformers_unavailable_reason()
        if reason is not None:
            raise AttentionBackendError(f"attention='xformers' cannot be used: {reason}. Use attention='sdpa' instead.")
    return backend


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) v in fp32, cast back. ``[B, H, N, Dh]`` -> ``[B, H, N, Dh]``."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    attn = torch.matmul(q.float() * scale, k.float().transpose(-2, -1)).softmax(dim=-1)
    return torch.matmul(attn, v.float()).to(q.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """Unmasked multi-head attention with scale 1/√Dh.

    Args:
        q, k, v: ``[B, H, N, Dh]`` (k, v may have another length M).
        backend: ``"sdpa"``, ``"xformers"`` or ``"math"``.

    Returns:
        ``[B, H, N, Dh]`` in q's dtype.
    """
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    if backend == "math":
        return math_attention(q, k, v)
    if backend == "xformers":
        if not q.is_cuda:
            raise AttentionBackendError(
                f"attention='xformers' needs CUDA tensors, got device={q.device}; use attention='sdpa' on CPU"
            )
        import xformers.ops as xops

        # xFormers takes [B, N, H, Dh]; a transpose of the middle dims keeps the last dim contiguous.
        out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
