"""torch.library registration and autograd of the gated linear scan; reference or Triton bodies."""

from __future__ import annotations

import torch
from torch.library import triton_op, wrap_triton

from .naive import gated_linear_scan_bwd_ref, gated_linear_scan_ref

try:  # Triton is optional: without it only the reference backend runs (resolve_backend says why)
    import triton

    from .fused_recurrent import gated_linear_scan_bwd_kernel, gated_linear_scan_fwd_kernel
except ImportError:  # pragma: no cover - depends on the environment
    triton = None


BLOCK_D = 1024  # 8 bf16 (16 bytes) per thread per load with 4 warps: enough bytes in flight to stream HBM
NUM_WARPS = 4


def _grid(n_seq: int, dim: int) -> tuple[int, int]:
    return (n_seq, triton.cdiv(dim, _block(dim)))


def _block(dim) -> int:
    return min(BLOCK_D, triton.next_power_of_2(int(dim)))  # int(): SymInt under torch.compile


@triton_op("coldstream::gated_linear_scan_fwd", mutates_args=())
def gated_linear_scan_fwd(
    x: torch.Tensor,
    a: torch.Tensor,
    initial_state: torch.Tensor | None,
    resets: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    log_gates: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h [B, T, D] in x.dtype, h_T [S, D] fp32)``."""
    if backend != "triton":
        return gated_linear_scan_ref(x, a, initial_state, resets, cu_seqlens, log_gates)
    batch, T, dim = x.shape
    n_seq = batch if cu_seqlens is None else cu_seqlens.shape[0] - 1
    out = torch.empty_like(x)
    final = x.new_empty((n_seq, dim), dtype=torch.float32)
    wrap_triton(gated_linear_scan_fwd_kernel)[_grid(n_seq, dim)](
        x, a, initial_state, resets, cu_seqlens, out, final, T, dim,
        BLOCK_D=_block(dim), LOG_GATES=log_gates, HAS_H0=initial_state is not None,
        HAS_RESETS=resets is not None, VARLEN=cu_seqlens is not None, num_warps=NUM_WARPS,
    )
    return out, final


@triton_op("coldstream::gated_linear_scan_bwd", mutates_args=())
def gated_linear_scan_bwd(
    dout: torch.Tensor,
    dfinal: torch.Tensor | None,
    x: torch.Tensor,
    a: torch.Tensor,
    out: torch.Tensor,
    initial_state: torch.Tensor | None,
    resets: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    log_gates: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dx, da, dinitial_state)``, the last empty without an initial state."""
    if backend != "triton":
        dx, da, dh0 = gated_linear_scan_bwd_ref(dout, dfinal, x, a, initial_state, resets, cu_seqlens, log_gates)
        dh0 = x.new_empty(0) if dh0 is None else dh0.to(initial_state.dtype)
        return dx.to(x.dtype), da.to(a.dtype), dh0
    batch, T, dim = x.shape
    n_seq = batch if cu_seqlens is None else cu_seqlens.shape[0] - 1
    dx = torch.empty_like(x)
    da = torch.empty_like(a)
    dh0 = x.new_empty((n_seq, dim), dtype=torch.float32) if initial_state is not None else x.new_empty(0)
    wrap_triton(gated_linear_scan_bwd_kernel)[_grid(n_seq, dim)](
        a, out, initial_state, resets, cu_seqlens, dout, dfinal, dx, da, dh0, T, dim,
        BLOCK_D=_block(dim), LOG_GATES=log_gates, HAS_H0=initial_state is not None,
        HAS_RESETS=resets is not None, VARLEN=cu_seqlens is not None, HAS_DHT=dfinal is not None,
        num_warps=NUM_WARPS,
    )
    if initial_state is not None:
        dh0 = dh0.to(initial_state.dtype)
    return dx, da, dh0


def _setup_context(ctx, inputs, output):
    x, a, initial_state, resets, cu_seqlens, log_gates, backend = inputs
    ctx.save_for_backward(x, a, output[0], initial_state, resets, cu_seqlens)
    ctx.log_gates, ctx.backend = log_gates, backend


def _backward(ctx, dout, dfinal):
    x, a, out, initial_state, resets, cu_seqlens = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(x)
    dx, da, dh0 = torch.ops.coldstream.gated_linear_scan_bwd(
        dout.contiguous(), None if dfinal is None else dfinal.contiguous(), x, a, out, initial_state, resets,
        cu_seqlens, ctx.log_gates, ctx.backend,
    )
    return dx, da, dh0 if initial_state is not None else None, None, None, None, None


torch.library.register_autograd("coldstream::gated_linear_scan_fwd", _backward, setup_context=_setup_context)


def gated_linear_scan_apply(backend, x, a, initial_state, resets, cu_seqlens, log_gates):
    if cu_seqlens is not None:
        cu_seqlens = cu_seqlens.to(torch.int32)
    if resets is not None and backend == "triton":
        resets = resets.to(torch.int8).contiguous()

    def c(t):
        return None if t is None else t.contiguous()

    return torch.ops.coldstream.gated_linear_scan_fwd(
        c(x), c(a), c(initial_state), resets, cu_seqlens, bool(log_gates), backend
    )
