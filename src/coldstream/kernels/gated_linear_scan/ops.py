"""torch.library registration and autograd of the gated linear scan; reference or Triton bodies.

Two Triton implementations of the same op, chosen by ``impl``: ``"fused_recurrent"`` (fused_recurrent.py, one
program walks time step by step) and ``"chunk"`` (chunk.py, whole [CHUNK_T, BLOCK_D] tiles, scan inside the tile).
``impl`` is an argument of the ``triton_op``s, so torch.compile and opcheck see it like any other.
"""

from __future__ import annotations

import torch
from torch.library import triton_op, wrap_triton

from ...errors import InputError
from .naive import gated_linear_scan_bwd_ref, gated_linear_scan_ref

try:  # Triton is optional: without it only the reference backend runs (resolve_backend says why)
    import triton

    from .chunk import gated_linear_scan_chunk_bwd_kernel, gated_linear_scan_chunk_fwd_kernel
    from .fused_recurrent import gated_linear_scan_bwd_kernel, gated_linear_scan_fwd_kernel
except ImportError:  # pragma: no cover - depends on the environment
    triton = None


BLOCK_D = 1024  # 8 bf16 (16 bytes) per thread per load with 4 warps: enough bytes in flight to stream HBM
NUM_WARPS = 4

# chunk: one fixed config, no autotune (safe inside CUDA graphs, no autotune run on first call; CHUNK_T must not depend
# on T). Chosen from sm_90 compiles (ptxas -v, PTX) on the CPU machine, not yet from timings:
# - BLOCK_D = 32 lanes x 8 bf16 (one 16-byte vector each) x 1 warp: the warps then lie along channels, so each
#   thread owns whole columns of the tile and the time scan runs in its registers (no shuffles, no shared memory,
#   no barriers). A [16, 256] tile over 4 warps puts warps along time: the scan crosses warps through 32 KB of
#   shared memory and barriers.
# - CHUNK_T = 8: the backward holds dout, a_{t+1}, h_{t-1} (and a) tiles in fp32 registers at once; at 16 rows per
#   thread it spills (1.5 KB per thread), at 8 it uses 237 registers, the forward 147. A tile is 4 KB of bf16 per
#   tensor, but what streams HBM is bytes in flight per SM: ~12 resident programs x 8 KB (forward) or ~8 x 12-16 KB
#   (backward), against ~20 KB that Little's law asks for at 3.35 TB/s.
CHUNK_T = 8
CHUNK_BLOCK_D = 256
CHUNK_NUM_WARPS = 1

IMPLS = ("fused_recurrent", "chunk")
# "auto" = fused_recurrent until a GPU run has measured both side by side (bench/test_kernels.py times both at the
# main shape, [1608, 16, 4096] bf16); the next GPU run decides the default.
DEFAULT_IMPL = "fused_recurrent"


def resolve_impl(impl: str) -> str:
    """``"auto" | "fused_recurrent" | "chunk"`` -> the Triton implementation to run."""
    if impl == "auto":
        return DEFAULT_IMPL
    _check_impl(impl, "'auto', ")
    return impl


def _grid(n_seq: int, dim: int, impl: str) -> tuple[int, int]:
    return (n_seq, triton.cdiv(int(dim), _block(dim, impl)))


def _block(dim, impl: str) -> int:
    base = CHUNK_BLOCK_D if impl == "chunk" else BLOCK_D
    return min(base, triton.next_power_of_2(int(dim)))  # int(): SymInt under torch.compile


def _check_impl(impl: str, also: str = "") -> None:
    if impl not in IMPLS:
        raise InputError(f"gated_linear_scan: impl must be one of {also}{', '.join(map(repr, IMPLS))} (got {impl!r})")


@triton_op("coldstream::gated_linear_scan_fwd", mutates_args=())
def gated_linear_scan_fwd(
    x: torch.Tensor,
    a: torch.Tensor,
    initial_state: torch.Tensor | None,
    resets: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    log_gates: bool,
    backend: str,
    impl: str = DEFAULT_IMPL,
    store_final: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h [B, T, D] in x.dtype, h_T [S, D] fp32)``; ``impl`` picks the Triton kernels (unused by the reference).
    Without ``store_final`` the Triton kernels skip the final state's store and ``h_T`` is an empty tensor."""
    if backend != "triton":
        out, final = gated_linear_scan_ref(x, a, initial_state, resets, cu_seqlens, log_gates)
        return out, final if store_final else final.new_empty(0)
    _check_impl(impl)
    batch, T, dim = x.shape
    n_seq = batch if cu_seqlens is None else cu_seqlens.shape[0] - 1
    out = torch.empty_like(x)
    final = x.new_empty((n_seq, dim) if store_final else (0,), dtype=torch.float32)
    flags = dict(
        LOG_GATES=log_gates,
        HAS_H0=initial_state is not None,
        HAS_RESETS=resets is not None,
        VARLEN=cu_seqlens is not None,
        STORE_FINAL=store_final,
    )
    args = (x, a, initial_state, resets, cu_seqlens, out, final, T, dim)
    if impl == "chunk":
        wrap_triton(gated_linear_scan_chunk_fwd_kernel)[_grid(n_seq, dim, impl)](
            *args,
            CHUNK_T=CHUNK_T,
            BLOCK_D=_block(dim, impl),
            **flags,
            num_warps=CHUNK_NUM_WARPS,
        )
    else:
        wrap_triton(gated_linear_scan_fwd_kernel)[_grid(n_seq, dim, impl)](
            *args,
            BLOCK_D=_block(dim, impl),
            **flags,
            num_warps=NUM_WARPS,
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
    impl: str = DEFAULT_IMPL,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dx, da, dinitial_state)``, the last empty without an initial state."""
    if backend != "triton":
        dx, da, dh0 = gated_linear_scan_bwd_ref(dout, dfinal, x, a, initial_state, resets, cu_seqlens, log_gates)
        dh0 = x.new_empty(0) if dh0 is None else dh0.to(initial_state.dtype)
        return dx.to(x.dtype), da.to(a.dtype), dh0
    _check_impl(impl)
    batch, T, dim = x.shape
    n_seq = batch if cu_seqlens is None else cu_seqlens.shape[0] - 1
    dx = torch.empty_like(x)
    da = torch.empty_like(a)
    dh0 = x.new_empty((n_seq, dim), dtype=torch.float32) if initial_state is not None else x.new_empty(0)
    flags = dict(
        LOG_GATES=log_gates,
        HAS_H0=initial_state is not None,
        HAS_RESETS=resets is not None,
        VARLEN=cu_seqlens is not None,
        HAS_DHT=dfinal is not None,
    )
    args = (a, out, initial_state, resets, cu_seqlens, dout, dfinal, dx, da, dh0, T, dim)
    if impl == "chunk":
        wrap_triton(gated_linear_scan_chunk_bwd_kernel)[_grid(n_seq, dim, impl)](
            *args,
            CHUNK_T=CHUNK_T,
            BLOCK_D=_block(dim, impl),
            **flags,
            num_warps=CHUNK_NUM_WARPS,
        )
    else:
        wrap_triton(gated_linear_scan_bwd_kernel)[_grid(n_seq, dim, impl)](
            *args,
            BLOCK_D=_block(dim, impl),
            **flags,
            num_warps=NUM_WARPS,
        )
    if initial_state is not None:
        dh0 = dh0.to(initial_state.dtype)
    return dx, da, dh0


def _setup_context(ctx, inputs, output):
    x, a, initial_state, resets, cu_seqlens, log_gates, backend, *rest = inputs
    ctx.save_for_backward(x, a, output[0], initial_state, resets, cu_seqlens)
    ctx.log_gates, ctx.backend, ctx.impl = log_gates, backend, rest[0] if rest else DEFAULT_IMPL


def _backward(ctx, dout, dfinal):
    x, a, out, initial_state, resets, cu_seqlens = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(x)
    if dfinal is not None and dfinal.numel() == 0:  # the final state was not stored: nothing flows back into it
        dfinal = None
    dx, da, dh0 = torch.ops.coldstream.gated_linear_scan_bwd(
        dout.contiguous(),
        None if dfinal is None else dfinal.contiguous(),
        x,
        a,
        out,
        initial_state,
        resets,
        cu_seqlens,
        ctx.log_gates,
        ctx.backend,
        ctx.impl,
    )
    return dx, da, dh0 if initial_state is not None else None, None, None, None, None, None, None


torch.library.register_autograd("coldstream::gated_linear_scan_fwd", _backward, setup_context=_setup_context)


def gated_linear_scan_apply(
    backend, x, a, initial_state, resets, cu_seqlens, log_gates, impl=DEFAULT_IMPL, store_final=True
):
    if cu_seqlens is not None:
        cu_seqlens = cu_seqlens.to(torch.int32)
    if resets is not None and backend == "triton":
        resets = resets.to(torch.int8).contiguous()

    def c(t):
        return None if t is None else t.contiguous()

    return torch.ops.coldstream.gated_linear_scan_fwd(
        c(x), c(a), c(initial_state), resets, cu_seqlens, bool(log_gates), backend, impl, bool(store_final)
    )
