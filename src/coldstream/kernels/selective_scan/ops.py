"""torch.library registration and autograd of the selective scan; dispatch to the reference or Triton kernels.

``coldstream::selective_scan_fwd`` / ``_bwd`` are ``triton_op``s: their bodies launch the Triton kernels through
``wrap_triton`` (backend ``"triton"``) or run the fp32 reference math (backend ``"reference"``), so both trace
under ``torch.compile(fullgraph=True)`` and the reference path passes ``torch.library.opcheck`` on CPU.
"""

from __future__ import annotations

import math

import torch
from torch.library import triton_op, wrap_triton

from ...errors import BackendError, InputError
from . import stepwise
from .naive import selective_scan_bwd_ref, selective_scan_ref, selective_state_update_ref

try:  # Triton is optional: without it only the reference backend runs (resolve_backend says why)
    import triton

    from .chunk import selective_scan_bwd_kernel, selective_scan_fwd_carry_kernel, selective_scan_fwd_kernel
    from .step import selective_state_update_kernel
except ImportError:  # pragma: no cover - depends on the environment
    triton = None


BLOCK_D = 16  # backward: channels per program (the [N, BLOCK_D, K] chunk tile)
CHUNK = 16  # backward chunk length K; the forward stores the state every K steps
NUM_WARPS = 8
FWD_NUM_WARPS = 4
FWD_BLOCK_D = 32 * FWD_NUM_WARPS  # forward: one thread per channel
FWD_TILE: int | None = None  # forward: steps per [K, BLOCK_D] tile (None: one 16-byte vector of u per thread)
# Forward path rule (_fwd_chunk_len): the chunked forward runs when the sequential one would launch fewer than
# FWD_CHUNKED_BELOW programs (sequences x channel blocks; 2 per SM of an H100) and the longest sequence spans at
# least two chunks of FWD_CHUNK_T steps. Both are guesses until timed on a GPU (bench/test_tuning.py).
FWD_CHUNK_T = 256
FWD_CHUNKED_BELOW = 2 * 132
FWD_CARRY_BLOCK = 1024  # carry pass: states per program
MAX_PAIRS = 16  # backward: (sequence, channel block) pairs per program at most (_bwd_split) ...
PROGRAMS_PER_ROW_GROUP = 8192  # ... one more pair per program for every this many pairs in the launch
BWD_MAXNREG: int | None = None  # backward: register cap per thread (None: ptxas decides; 219 at the bench shape, sm_90)
STEP_BLOCK_D = 64  # streaming step: [64, N] state tile per program, 8 fp32 per thread with 4 warps
STEP_NUM_WARPS = 4


def _chunk_len(max_len: int) -> int:
    return max(2, min(CHUNK, triton.next_power_of_2(max(max_len, 1))))


def triton_unsupported(A: torch.Tensor, dim: int, groups: int) -> str | None:
    """Why the Triton kernels cannot run this shape, or None."""
    n = A.shape[1]
    if n & (n - 1) or n > 64:
        return f"d_state must be a power of two <= 64 for the Triton kernels (got {n})"
    return None


def _block_d(dim: int, groups: int, base: int = BLOCK_D) -> int:
    """Channel block: ``base``, capped by the channel count, and dividing the group size when B/C are grouped."""
    dim, groups = int(dim), int(groups)  # SymInts under torch.compile; block sizes must be plain ints
    block = min(base, triton.next_power_of_2(dim))
    if groups == 1:
        return block
    per_group = dim // groups
    return min(block, per_group & -per_group)  # largest power of two dividing the group size


def _bwd_split(n_seq: int, groups: int, group_blocks: int) -> tuple[int, int]:
    """Backward work per program: ``(rows, blocks)``, sequences times channel blocks (of one B/C group).

    While the launch has fewer than ``PROGRAMS_PER_ROW_GROUP`` pairs per program slot, every program takes one pair
    (most parallel); past that, up to ``MAX_PAIRS``, split about evenly between blocks and rows: more blocks per
    program means fewer dB/dC partials (one per split of a group's blocks, ``[splits, B, G, N, T]``), more rows
    fewer dA/dD/d(delta_bias) partials (one per row of the grid, ``[programs along rows, D, N]``). At the
    project's shape (1608 x 2048 channels, T = 16) that is 4 x 4: 105 MB of dB/dC and 53 MB of dA partials."""
    pairs = max(1, min(MAX_PAIRS, n_seq * groups * group_blocks // PROGRAMS_PER_ROW_GROUP))
    blocks = min(group_blocks, 1 << (math.isqrt(pairs).bit_length() - 1))  # a power of two <= sqrt(pairs)
    return max(1, pairs // blocks), max(1, blocks)


def _pack_bc(B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``[B, G, N, T]`` B and C -> ``[B, G, T, N]`` int64 whose words are fp32 B (low) and C (high): the forward
    reads both with one load per state (B, C are tiny next to u, delta, z)."""
    bc = torch.stack([B.transpose(-1, -2).float(), C.transpose(-1, -2).float()], dim=-1)  # [B, G, T, N, 2]
    return bc.contiguous().view(torch.int64).squeeze(-1)


def _empty(ref: torch.Tensor) -> torch.Tensor:
    return ref.new_empty(0)


def _opt(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None or t.numel() == 0 else t


def _fwd_tile(u: torch.Tensor, ckpt_every: int) -> int:
    """Steps per forward tile: one 16-byte vector of u per thread (4 fp32, 8 fp16/bf16), at most the checkpoint
    spacing (so checkpoints fall on tile starts)."""
    tile = FWD_TILE or 16 // u.element_size()
    return min(tile, ckpt_every)


def _fwd_chunk_len(programs: int, max_seqlen: int, ckpt_every: int) -> int | None:
    """The chunked forward's chunk length (a multiple of the checkpoint spacing), or None for the sequential one.

    Rule: chunked when the sequential forward would launch fewer than ``FWD_CHUNKED_BELOW`` programs (sequences x
    channel blocks: too few to fill the GPU, each walking all of T) and the longest sequence spans at least two
    chunks of ``FWD_CHUNK_T`` steps. At B = 4, D = 2048, T = 4096: 64 programs, so 16 chunks of 256 steps (1024
    programs per pass); at 1608 sequences x 2048 channels, T = 16: 25,728 programs, sequential."""
    chunk = triton.cdiv(FWD_CHUNK_T, ckpt_every) * ckpt_every
    if programs < FWD_CHUNKED_BELOW and max_seqlen >= 2 * chunk:
        return chunk
    return None


@triton_op("coldstream::selective_scan_fwd", mutates_args=())
def selective_scan_fwd(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    resets: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    max_seqlen: int,
    delta_softplus: bool,
    backend: str,
    for_backward: bool = True,
    store_last: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``(out [B, D, T], last_state [S, D, N] fp32, ckpt [S, chunks - 1, D, N] fp32, y)``; B, C 4-D.

    On the Triton path the checkpoints and ``y`` (the ungated readout ``[B, D, T]``, saved for dz when z is given)
    are stored only ``for_backward`` (else ``ckpt`` has no chunks and ``y`` is empty), and the last state only with
    ``store_last`` (else it is empty).
    """
    batch, dim, T = u.shape
    n_state = A.shape[1]
    n_seq = batch if cu_seqlens is None else cu_seqlens.shape[0] - 1
    if backend != "triton":
        if stepwise.supported(cu_seqlens):
            out, last = stepwise.selective_scan_stepwise(
                u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, resets
            )
        else:
            out, last = selective_scan_ref(
                u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, resets, cu_seqlens
            )
        return out, last, u.new_empty((n_seq, 0, dim, n_state), dtype=last.dtype), u.new_empty(0)
    ckpt_every = _chunk_len(max_seqlen)  # the backward's chunk: it starts each chunk from a checkpoint
    n_ckpt = max(triton.cdiv(max_seqlen, ckpt_every) - 1, 0) if for_backward else 0
    f32 = dict(dtype=torch.float32, device=u.device)
    out = torch.empty_like(u)
    last = torch.empty(n_seq, dim, n_state, **f32) if store_last else torch.empty(0, **f32)
    ckpt = torch.empty(n_seq, n_ckpt, dim, n_state, **f32)
    y = torch.empty_like(u) if z is not None and for_backward else u.new_empty(0)
    groups = B.shape[1]
    bd = _block_d(dim, groups, FWD_BLOCK_D)
    d_blocks = triton.cdiv(dim, bd)
    chunk = _fwd_chunk_len(n_seq * d_blocks, max_seqlen, ckpt_every)
    n_chunks = 1 if chunk is None else triton.cdiv(max_seqlen, chunk)
    if chunk is None:
        hc, hc_every, n_hc = ckpt, 1, n_ckpt  # unused
    elif n_ckpt > 0:  # the carried states are checkpoints: the carry pass stores them where the backward reads them
        hc, hc_every, n_hc = ckpt, chunk // ckpt_every, n_ckpt
    else:
        hc, hc_every, n_hc = torch.empty(n_seq, n_chunks - 1, dim, n_state, **f32), 1, n_chunks - 1
    h0 = None if initial_state is None else initial_state.contiguous()
    common = dict(
        u_ptr=u,
        delta_ptr=delta,
        A2T_ptr=(A.float() * math.log2(math.e)).t().contiguous(),
        BC_ptr=_pack_bc(B, C),
        D_ptr=D,
        z_ptr=z,
        bias_ptr=delta_bias,
        h0T_ptr=None if h0 is None else h0.transpose(1, 2).contiguous(),
        resets_ptr=resets,
        cu_ptr=cu_seqlens,
        hc_ptr=hc,
        out_ptr=out,
        hlast_ptr=last,
        ckpt_ptr=ckpt,
        y_ptr=y,
        T=T,
        DIM=dim,
        G=groups,
        n_ckpt=n_ckpt,
        n_hc=n_hc,
        hc_every=hc_every,
        chunk_len=max_seqlen if chunk is None else chunk,
        n_chunks=n_chunks,
        stride_s_d=n_state,
        stride_s_n=1,
        stride_at_n=dim,
        stride_bc_n=1,
        N=n_state,
        BLOCK_D=bd,
        K=_fwd_tile(u, ckpt_every),
        CKPT_EVERY=ckpt_every,
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus,
        HAS_H0=h0 is not None,
        HAS_RESETS=resets is not None,
        VARLEN=cu_seqlens is not None,
        STORE_CKPT=n_ckpt > 0,
        STORE_Y=y.numel() > 0,
        num_warps=FWD_NUM_WARPS,
    )
    grid = (n_seq, d_blocks, n_chunks)
    if chunk is not None:
        # pass 1: every chunk's end state from a zero state, and its total decay; then the carry across chunks
        end = torch.empty(n_seq, n_chunks, dim, n_state, **f32)
        decay = torch.empty_like(end)
        pass1 = dict(common, end_ptr=end, decay_ptr=decay, STORE_CKPT=False, STORE_Y=False)
        wrap_triton(selective_scan_fwd_kernel)[grid](**pass1, CHUNKED=True, END_STATE=True, STORE_LAST=False)
        wrap_triton(selective_scan_fwd_carry_kernel)[(n_seq, triton.cdiv(dim * n_state, FWD_CARRY_BLOCK))](
            end,
            decay,
            h0,
            cu_seqlens,
            hc,
            last,
            T,
            dim,
            n_chunks,
            n_hc,
            hc_every,
            chunk,
            N=n_state,
            BLOCK=FWD_CARRY_BLOCK,
            HAS_H0=h0 is not None,
            VARLEN=cu_seqlens is not None,
            STORE_LAST=store_last,
        )
    # the sequential forward, or pass 2 of the chunked one: every chunk's outputs from its carried state
    wrap_triton(selective_scan_fwd_kernel)[grid](
        **common,
        end_ptr=None,
        decay_ptr=None,
        CHUNKED=chunk is not None,
        END_STATE=False,
        STORE_LAST=store_last and chunk is None,
    )
    return out, last, ckpt, y


@triton_op("coldstream::selective_scan_bwd", mutates_args=())
def selective_scan_bwd(
    dout: torch.Tensor,
    dlast: torch.Tensor | None,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    resets: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    ckpt: torch.Tensor,
    y: torch.Tensor,
    max_seqlen: int,
    delta_softplus: bool,
    backend: str,
) -> list[torch.Tensor]:
    """Returns ``[du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state]`` (empty for absent inputs)."""
    batch, dim, T = u.shape
    n_state = A.shape[1]
    if backend != "triton":
        if stepwise.supported(cu_seqlens):
            grads = stepwise.selective_scan_bwd_stepwise(
                dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, resets
            )
        else:
            grads = selective_scan_bwd_ref(
                dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, resets, cu_seqlens
            )
        inputs = [u, delta, A, B, C, D, z, delta_bias, initial_state]
        return [_empty(u) if g is None else g.to(x.dtype) for g, x in zip(grads, inputs, strict=True)]
    n_seq = batch if cu_seqlens is None else cu_seqlens.shape[0] - 1
    K = _chunk_len(max_seqlen)
    n_ckpt = ckpt.shape[1]
    groups = B.shape[1]
    du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else _empty(u)
    dh0 = (
        torch.empty(n_seq, dim, n_state, dtype=torch.float32, device=u.device)
        if initial_state is not None
        else _empty(u)
    )
    bd = _block_d(dim, groups, BLOCK_D)  # the module's value at call time (bench/test_tuning.py patches it)
    group_blocks = triton.cdiv(dim // groups, bd)
    rows, blocks = _bwd_split(int(n_seq), int(groups), int(group_blocks))
    row_programs = triton.cdiv(n_seq, rows)
    splits = triton.cdiv(group_blocks, blocks)
    # Partial sums, each entry written by exactly one program, summed below in a fixed order: deterministic, no
    # atomics. dB/dC: one partial per split of a group's channel blocks (zeroed with cu_seqlens, whose sequences
    # need not cover all of T on a GPU); dA, dD, d(delta_bias): one per row of the grid.
    part_bc = torch.zeros if cu_seqlens is not None else torch.empty
    dB_part = part_bc((splits, *B.shape), dtype=torch.float32, device=u.device)
    dC_part = part_bc((splits, *C.shape), dtype=torch.float32, device=u.device)
    dA_part = torch.empty(row_programs, dim, n_state, dtype=torch.float32, device=u.device)
    dD_part = torch.empty(row_programs, dim, dtype=torch.float32, device=u.device) if D is not None else _empty(u)
    dbias_part = (
        torch.empty(row_programs, dim, dtype=torch.float32, device=u.device) if delta_bias is not None else _empty(u)
    )
    grid = (row_programs, groups * splits)
    wrap_triton(selective_scan_bwd_kernel)[grid](
        u,
        delta,
        A,
        B,
        C,
        D,
        z,
        delta_bias,
        initial_state,
        resets,
        cu_seqlens,
        ckpt,
        y,
        dout,
        dlast,
        du,
        ddelta,
        dA_part,
        dB_part,
        dC_part,
        dD_part,
        dz,
        dbias_part,
        dh0,
        T,
        dim,
        groups,
        n_ckpt,
        n_seq,
        rows,
        blocks,
        group_blocks,
        splits,
        B.numel(),
        N=n_state,
        BLOCK_D=bd,
        K=K,
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus,
        HAS_H0=initial_state is not None,
        HAS_RESETS=resets is not None,
        VARLEN=cu_seqlens is not None,
        HAS_CKPT=n_ckpt > 0,
        HAS_DLAST=dlast is not None,
        HAS_Y=y.numel() > 0,
        num_warps=NUM_WARPS,
        **({} if BWD_MAXNREG is None else {"maxnreg": BWD_MAXNREG}),
    )
    dB = dB_part[0] if splits == 1 else dB_part.sum(0)
    dC = dC_part[0] if splits == 1 else dC_part.sum(0)
    return [
        du,
        ddelta,
        dA_part.sum(0).to(A.dtype),
        dB.to(B.dtype),
        dC.to(C.dtype),
        dD_part.sum(0).to(D.dtype) if D is not None else dD_part,
        dz,
        dbias_part.sum(0).to(delta_bias.dtype) if delta_bias is not None else dbias_part,
        dh0.to(initial_state.dtype) if initial_state is not None else dh0,
    ]


_SAVED = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state", "resets", "cu_seqlens")


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, initial_state, resets, cu_seqlens, max_seqlen, softplus, backend = inputs[:14]
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, resets, cu_seqlens, output[2], output[3])
    ctx.max_seqlen, ctx.softplus, ctx.backend = max_seqlen, softplus, backend


def _backward(ctx, dout, dlast, _dckpt, _dy):
    u, delta, A, B, C, D, z, delta_bias, initial_state, resets, cu_seqlens, ckpt, y = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(u)
    if dlast is not None and dlast.numel() == 0:  # the last state was not stored (not asked for)
        dlast = None
    grads = torch.ops.coldstream.selective_scan_bwd(
        dout.contiguous(),
        None if dlast is None else dlast.contiguous(),
        u,
        delta,
        A,
        B,
        C,
        D,
        z,
        delta_bias,
        initial_state,
        resets,
        cu_seqlens,
        ckpt,
        y,
        ctx.max_seqlen,
        ctx.softplus,
        ctx.backend,
    )
    present = [u, delta, A, B, C, D, z, delta_bias, initial_state]
    grads = [g if x is not None else None for g, x in zip(grads, present, strict=True)]
    return (*grads, None, None, None, None, None, None, None)


torch.library.register_autograd("coldstream::selective_scan_fwd", _backward, setup_context=_setup_context)


def _as_groups(B: torch.Tensor, C: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """B and C as ``[B, G, N, T]`` with one G. Time-invariant ``[D, N]`` becomes one group per channel (expanded
    over batch and time, so its gradient is summed back by autograd); different group counts meet at their least
    common multiple, which divides D as both counts do."""
    batch, dim, T = shape

    def four(X):
        if X.dim() == 2:
            return X[None, :, :, None].expand(batch, dim, X.shape[1], T)
        return X.unsqueeze(1) if X.dim() == 3 else X

    B4, C4 = four(B), four(C)
    groups = math.lcm(B4.shape[1], C4.shape[1])

    def widen(X):
        g = X.shape[1]
        if g == groups:
            return X
        return X[:, :, None].expand(batch, g, groups // g, *X.shape[2:]).reshape(batch, groups, *X.shape[2:])

    return widen(B4), widen(C4)


def selective_scan_apply(
    backend,
    u,
    delta,
    A,
    B,
    C,
    D,
    z,
    delta_bias,
    delta_softplus,
    initial_state,
    resets,
    cu_seqlens,
    max_seqlen=None,
    return_last_state=True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise layouts (contiguous, B/C 4-D with one group count, int8 resets, int32 cu_seqlens) and run the
    registered op. Without ``return_last_state`` the Triton path stores no last state (``last`` is empty)."""
    B4, C4 = _as_groups(B, C, u.shape)
    T = u.shape[-1]
    if backend == "triton":
        reason = triton_unsupported(A, u.shape[1], B4.shape[1])
        if reason is not None:
            raise BackendError(
                f"selective_scan: backend='triton' cannot run these inputs: {reason}; "
                "reference: available (backend='reference')"
            )
    if cu_seqlens is None:
        max_seqlen = T
    else:
        if max_seqlen is None:  # one host sync; callers under torch.compile or CUDA graphs pass it
            max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        cu_seqlens = cu_seqlens.to(torch.int32)
    rs = resets.to(torch.int8).contiguous() if resets is not None else None
    if backend == "reference":
        rs = resets  # the reference takes the bool mask as is

    def c(t):
        return None if t is None else t.contiguous()

    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias, initial_state)
    )
    out, last, _, _ = torch.ops.coldstream.selective_scan_fwd(
        c(u),
        c(delta),
        c(A),
        c(B4),
        c(C4),
        c(D),
        c(z),
        c(delta_bias),
        c(initial_state),
        rs,
        cu_seqlens,
        max_seqlen,
        bool(delta_softplus),
        backend,
        needs_grad,
        bool(return_last_state),
    )
    return out, last


@triton_op("coldstream::selective_state_update", mutates_args={"state"})
def selective_state_update_op(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    dt_bias: torch.Tensor | None,
    dt_softplus: bool,
    backend: str,
    state_batch_indices: torch.Tensor | None = None,
    rounding_seed: torch.Tensor | None = None,
) -> torch.Tensor:
    """L steps, ``state [B or slots, D, N]`` updated in place; x, dt, z ``[B, D, L]``; B, C ``[B, G, N, L]``;
    returns ``out [B, D, L]``."""
    if backend != "triton":
        return selective_state_update_ref(
            state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, rounding_seed
        )
    batch, dim, steps = x.shape
    out = torch.empty_like(x)
    bd = STEP_BLOCK_D
    grid = (batch, triton.cdiv(dim, bd))
    wrap_triton(selective_state_update_kernel)[grid](
        state,
        x,
        dt,
        A,
        B,
        C,
        D,
        z,
        dt_bias,
        out,
        state_batch_indices,
        rounding_seed,
        dim,
        B.shape[1],
        steps,
        N=state.shape[2],
        BLOCK_D=bd,
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=dt_bias is not None,
        SOFTPLUS=dt_softplus,
        HAS_INDICES=state_batch_indices is not None,
        STOCHASTIC=rounding_seed is not None,
        num_warps=STEP_NUM_WARPS,
    )
    return out


def selective_state_update_apply(
    backend, state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices=None, rounding_seed=None
) -> torch.Tensor:
    """Run the registered step op on either backend: one step (x ``[B, D]``) runs as a sequence of one."""
    if backend == "triton":
        if not state.is_contiguous():
            raise InputError("selective_state_update: state must be contiguous (it is updated in place)")
        reason = triton_unsupported(A, x.shape[1], 1)
        if reason is not None:
            raise BackendError(f"selective_state_update: backend='triton' cannot run these inputs: {reason}")
    one = x.dim() == 2

    def c(t):
        return None if t is None else t.contiguous()

    def seq(t):  # x, dt, z -> [B, D, L]
        return None if t is None else c(t[..., None] if one else t)

    def groups(t):  # B, C -> [B, G, N, L]
        t = seq(t)
        return t.unsqueeze(1) if t.dim() == 3 else t

    out = torch.ops.coldstream.selective_state_update(
        state,
        seq(x),
        seq(dt),
        c(A),
        groups(B),
        groups(C),
        c(D),
        seq(z),
        c(dt_bias),
        bool(dt_softplus),
        backend,
        None if state_batch_indices is None else state_batch_indices.to(torch.int32).contiguous(),
        None if rounding_seed is None else rounding_seed.to(torch.int64).reshape(1).contiguous(),
    )
    return out[..., 0] if one else out
