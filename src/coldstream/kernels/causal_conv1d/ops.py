"""torch.library registration and autograd of the causal conv1d; reference or Triton bodies; the step op."""

from __future__ import annotations

import torch
from torch.library import triton_op, wrap_triton

from ...errors import InputError
from .._checks import resets_from_cu_seqlens
from .naive import causal_conv1d_update_ref, segment_lo
from .taps import causal_conv1d_bwd_taps, causal_conv1d_taps

try:  # Triton is optional: without it only the reference backend runs (resolve_backend says why)
    import triton

    from .fused import causal_conv1d_bwd_kernel, causal_conv1d_fwd_kernel
    from .step import causal_conv1d_update_kernel
except ImportError:  # pragma: no cover - depends on the environment
    triton = None


MAX_WIDTH = 8  # widths 1..8 (Dao's causal-conv1d stops at 4)
BLOCK_D = 128  # forward: channels per program, one per thread (BLOCK_D / 32 warps at most NUM_WARPS)
BLOCK_T = 16  # forward: steps per register tile (a multiple of the 16-byte vector: 8 bf16/fp16, 4 fp32 steps)
BWD_BLOCK_D = 128  # backward: the same, with one pre-activation per step and dx trailing by W - 1 steps
BWD_BLOCK_T = 16
NUM_WARPS = 4
MAX_ROWS = 32  # backward: rows per program (dweight, dbias summed in registers across them, stored once)
PROGRAMS_PER_ROW_GROUP = 4096
STEP_BLOCK_D = 64


def _vec(x: torch.Tensor) -> int:
    """Steps per 16-byte vector of x (8 for bf16/fp16, 4 for fp32)."""
    return max(1, 16 // x.element_size())


def _blocks(dim: int, T: int, vec: int, block_d: int, block_t: int) -> tuple[int, int, int]:
    """``(channels per program, steps per register tile, warps)``: one channel per thread; a tile of whole vectors
    (powers of two, so any knob value works) no longer than the sequence needs."""
    # int(): under torch.compile / opcheck with dynamic shapes these are SymInts; block sizes must be plain ints
    bd = min(triton.next_power_of_2(block_d), triton.next_power_of_2(int(dim)))
    bt = min(max(triton.next_power_of_2(block_t), vec), max(triton.next_power_of_2(int(T)), vec))
    return bd, bt, max(1, min(NUM_WARPS, bd // 32))


def _final_state(x: torch.Tensor, initial_state: torch.Tensor | None, lo: torch.Tensor | None, width: int):
    """The last W - 1 entries of [initial_state | x], zeroed where they precede the last sequence start."""
    batch, dim, T = x.shape
    if width == 1:
        return x.new_zeros(batch, dim, 0)
    head = initial_state if initial_state is not None else x.new_zeros(batch, dim, width - 1)
    tail = torch.cat([head.to(x.dtype), x[..., max(T - (width - 1), 0) :]], dim=-1)[..., -(width - 1) :]
    if lo is not None:
        pos = torch.arange(T, T + width - 1, device=x.device)
        tail = tail * (pos[None] >= lo[:, -1:]).to(x.dtype)[:, None]
    return tail.clone()


@triton_op("coldstream::causal_conv1d_fwd", mutates_args=())
def causal_conv1d_fwd(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    resets: torch.Tensor | None,
    silu: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out [B, D, T], final_state [B, D, W - 1])`` in x's dtype."""
    act = "silu" if silu else None
    batch, dim, T = x.shape
    width = weight.shape[1]
    lo = segment_lo(resets, batch, T, width, x.device) if resets is not None else None
    if backend != "triton":
        return causal_conv1d_taps(x, weight, bias, initial_state, act, resets), _final_state(
            x, initial_state, lo, width
        )
    out = torch.empty_like(x)
    vec = _vec(x)
    bd, bt, warps = _blocks(dim, T, vec, BLOCK_D, BLOCK_T)
    grid = (batch, triton.cdiv(dim, bd))
    wrap_triton(causal_conv1d_fwd_kernel)[grid](
        x,
        weight,
        bias,
        initial_state,
        lo,
        out,
        T,
        dim,
        W=width,
        BLOCK_D=bd,
        BLOCK_T=bt,
        VEC=vec,
        HAS_BIAS=bias is not None,
        HAS_INIT=initial_state is not None,
        HAS_LO=lo is not None,
        SILU=silu,
        num_warps=warps,
    )
    return out, _final_state(x, initial_state, lo, width)


@triton_op("coldstream::causal_conv1d_bwd", mutates_args=())
def causal_conv1d_bwd(
    dout: torch.Tensor,
    dfinal: torch.Tensor | None,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    resets: torch.Tensor | None,
    silu: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dx, dweight, dbias, dinitial_state)``; absent inputs get empty gradients."""
    if backend != "triton":
        dx, dw, db, dinit = causal_conv1d_bwd_taps(
            dout, dfinal, x, weight, bias, initial_state, "silu" if silu else None, resets
        )
        return (
            dx.to(x.dtype, copy=True),
            dw.to(weight.dtype),
            x.new_empty(0) if db is None else db.to(bias.dtype),
            x.new_empty(0) if dinit is None else dinit.to(initial_state.dtype, copy=True),
        )
    batch, dim, T = x.shape
    width = weight.shape[1]
    lo = segment_lo(resets, batch, T, width, x.device) if resets is not None else None
    dx = torch.empty_like(x)
    dinit = torch.empty_like(initial_state) if initial_state is not None else x.new_empty(0)
    vec = _vec(x)
    bd, bt, warps = _blocks(dim, T, vec, BWD_BLOCK_D, BWD_BLOCK_T)
    n_dblocks = triton.cdiv(dim, bd)
    rows = max(1, min(MAX_ROWS, int(batch * n_dblocks) // PROGRAMS_PER_ROW_GROUP))
    groups = triton.cdiv(batch, rows)
    # per-program partials (every entry written), summed below in a fixed order: deterministic, no atomics
    dw_part = torch.empty(groups, dim, width, dtype=torch.float32, device=x.device)
    db_part = torch.empty(groups, dim, dtype=torch.float32, device=x.device) if bias is not None else x.new_empty(0)
    grid = (groups, n_dblocks)
    wrap_triton(causal_conv1d_bwd_kernel)[grid](
        x,
        weight,
        bias,
        initial_state,
        lo,
        dout,
        dfinal,
        dx,
        dinit,
        dw_part,
        db_part,
        T,
        dim,
        batch,
        rows,
        W=width,
        BLOCK_D=bd,
        BLOCK_T=bt,
        VEC=vec,
        LAG=vec * triton.cdiv(width - 1, vec),  # dx trails gpre by W - 1 steps, rounded up to whole vectors
        HAS_BIAS=bias is not None,
        HAS_INIT=initial_state is not None,
        HAS_LO=lo is not None,
        SILU=silu,
        HAS_DFINAL=dfinal is not None and width > 1,
        num_warps=warps,
    )
    dw = dw_part.sum(0).to(weight.dtype)
    db = db_part.sum(0).to(bias.dtype) if bias is not None else db_part
    return dx, dw, db, dinit


def _setup_context(ctx, inputs, output):
    x, weight, bias, initial_state, resets, silu, backend = inputs
    ctx.save_for_backward(x, weight, bias, initial_state, resets)
    ctx.silu, ctx.backend = silu, backend


def _backward(ctx, dout, dfinal):
    x, weight, bias, initial_state, resets = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(x)
    dx, dw, db, dinit = torch.ops.coldstream.causal_conv1d_bwd(
        dout.contiguous(),
        None if dfinal is None else dfinal.contiguous(),
        x,
        weight,
        bias,
        initial_state,
        resets,
        ctx.silu,
        ctx.backend,
    )
    return (dx, dw, db if bias is not None else None, dinit if initial_state is not None else None, None, None, None)


torch.library.register_autograd("coldstream::causal_conv1d_fwd", _backward, setup_context=_setup_context)


def causal_conv1d_apply(backend, x, weight, bias, initial_state, activation, resets, cu_seqlens):
    """Run the registered op; cu_seqlens become resets of the batch-1 row and per-sequence final states."""
    width = weight.shape[1]
    T = x.shape[-1]
    if cu_seqlens is not None:
        if initial_state is not None:
            raise InputError(
                "causal_conv1d: initial_state with cu_seqlens is not supported; pass one row per "
                "sequence with a [B, D, W - 1] initial_state instead"
            )
        resets = resets_from_cu_seqlens(cu_seqlens, T)
    if resets is not None and backend == "triton":
        resets = resets.contiguous()

    def c(t):
        return None if t is None else t.contiguous()

    out, final = torch.ops.coldstream.causal_conv1d_fwd(
        c(x), c(weight), c(bias), c(initial_state), resets, activation == "silu", backend
    )
    if cu_seqlens is not None:
        cu = cu_seqlens.long()
        bos, eos = cu[:-1], cu[1:]
        idx = eos[:, None] - (width - 1) + torch.arange(width - 1, device=x.device)  # [S, W - 1]
        valid = idx >= bos[:, None]
        gathered = x[0][:, idx.clamp(min=0)]  # [D, S, W - 1]
        final = (gathered * valid.to(x.dtype)).permute(1, 0, 2).contiguous()
    return out, final


@triton_op("coldstream::causal_conv1d_update", mutates_args={"conv_state"})
def causal_conv1d_update_op(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    silu: bool,
    backend: str,
    conv_state_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Streaming steps: ``x [B, D, L]``, ``conv_state [B, D, S]`` (or ``[slots, D, S]`` indexed by
    ``conv_state_indices [B]``, -1 = padding row) shifted in place; returns ``[B, D, L]``."""
    if backend != "triton":
        return causal_conv1d_update_ref(
            x, conv_state, weight, bias, "silu" if silu else None, conv_state_indices=conv_state_indices
        )
    batch, dim, L = x.shape
    out = torch.empty_like(x)
    bd = STEP_BLOCK_D
    wrap_triton(causal_conv1d_update_kernel)[(batch, triton.cdiv(dim, bd))](
        x,
        conv_state,
        weight,
        bias,
        out,
        conv_state_indices,
        dim,
        L,
        conv_state.shape[2],
        W=weight.shape[1],
        S_P=triton.next_power_of_2(int(conv_state.shape[2])),
        BLOCK_D=bd,
        HAS_BIAS=bias is not None,
        SILU=silu,
        HAS_INDICES=conv_state_indices is not None,
        num_warps=4,
    )
    return out


def causal_conv1d_update_apply(backend, x, conv_state, weight, bias, activation, conv_state_indices=None):
    """Run the registered step op on either backend (``x [B, D]`` or ``[B, D, L]``; conv_state updated in place)."""
    if backend == "triton" and not conv_state.is_contiguous():
        raise InputError("causal_conv1d_update: conv_state must be contiguous (it is updated in place)")
    x3 = x[..., None] if x.dim() == 2 else x
    out = torch.ops.coldstream.causal_conv1d_update(
        x3.contiguous(),
        conv_state,
        weight.contiguous(),
        None if bias is None else bias.contiguous(),
        activation == "silu",
        backend,
        None if conv_state_indices is None else conv_state_indices.to(torch.int32).contiguous(),
    )
    return out[..., 0] if x.dim() == 2 else out
