"""torch.library registration and autograd of the gated blend; reference or Triton bodies."""

from __future__ import annotations

import torch
from torch.library import triton_op, wrap_triton

from .naive import gated_blend_bwd_ref, gated_blend_ref

try:  # Triton is optional: without it only the reference backend runs (resolve_backend says why)
    import triton

    from .fused import gated_blend_bwd_kernel, gated_blend_fwd_kernel
except ImportError:  # pragma: no cover - depends on the environment
    triton = None


BLOCK = 2048
NUM_WARPS = 8


@triton_op("coldstream::gated_blend_fwd", mutates_args=())
def gated_blend_fwd(a: torch.Tensor, b: torch.Tensor, logits: torch.Tensor, backend: str) -> torch.Tensor:
    if backend != "triton":
        return gated_blend_ref(a, b, logits)
    out = torch.empty_like(a)
    n = a.numel()
    wrap_triton(gated_blend_fwd_kernel)[(triton.cdiv(n, BLOCK),)](
        a, b, logits, out, n, BLOCK=BLOCK, num_warps=NUM_WARPS
    )
    return out


@triton_op("coldstream::gated_blend_bwd", mutates_args=())
def gated_blend_bwd(
    dout: torch.Tensor, a: torch.Tensor, b: torch.Tensor, logits: torch.Tensor, backend: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend != "triton":
        da, db, dl = gated_blend_bwd_ref(dout, a, b, logits)
        return da.to(a.dtype), db.to(b.dtype), dl.to(logits.dtype)
    da, db, dl = torch.empty_like(a), torch.empty_like(b), torch.empty_like(logits)
    n = a.numel()
    wrap_triton(gated_blend_bwd_kernel)[(triton.cdiv(n, BLOCK),)](
        a, b, logits, dout, da, db, dl, n, BLOCK=BLOCK, num_warps=NUM_WARPS
    )
    return da, db, dl


def _setup_context(ctx, inputs, output):
    a, b, logits, backend = inputs
    ctx.save_for_backward(a, b, logits)
    ctx.backend = backend


def _backward(ctx, dout):
    a, b, logits = ctx.saved_tensors
    da, db, dl = torch.ops.coldstream.gated_blend_bwd(dout.contiguous(), a, b, logits, ctx.backend)
    return da, db, dl, None


torch.library.register_autograd("coldstream::gated_blend_fwd", _backward, setup_context=_setup_context)


def gated_blend_apply(backend, a, b, logits):
    return torch.ops.coldstream.gated_blend_fwd(a.contiguous(), b.contiguous(), logits.contiguous(), backend)
