"""Triton forward and backward of the selective scan.

Forward (``selective_scan_fwd_kernel``): a time loop in which each thread owns one channel and its N fp32 states,
so the recurrence and the readout sum over N never leave the thread (no shuffles, no barriers); the per-channel
streams (u, delta, z, y, out) move as tiles of K steps, one 16-byte vector per thread, and the state is stored every
CKPT_EVERY steps (``ckpt``, nothing at T <= CKPT_EVERY) for the backward. This is what makes the short-T,
huge-batch case fast: the forward reads u, delta, z once and writes out once, and is bound by the N exponentials per
step. Long sequences with too few programs to fill the GPU split time into chunks: the same kernel runs every chunk
from a zero state (pass 1), ``selective_scan_fwd_carry_kernel`` carries the state across chunks, and the kernel
reruns every chunk from its carried state (pass 2).

Backward (``selective_scan_bwd_kernel``): for each of its sequences and channel blocks, a program walks the K-step
chunks in reverse, on ``[K, BLOCK_D, N]`` tiles whose layout (Triton's default for them) keeps time inside each
thread (N on 16 lanes, channels on 2 lanes and the warps). It loads the chunk's streams once, in time order, computes
the per-(d, t) terms (softplus, dt * u, silu(z) and its derivative) once per ``[K, BLOCK_D]`` tile and the decays
``exp2(dt * A log2 e)`` once per ``[K, BLOCK_D, N]`` tile, then runs two loops over the chunk's steps, unrolled and
in-thread (picking step k's slice of a tile is a register select): the forward recompute h_t = decay_t h_{t-1} +
dt_t u_t B_t from the chunk's checkpoint, and the adjoint g_t = gy_t C_t + decay_{t+1} g_{t+1} in reverse, whose
decays are the recompute's (at the chunk's last step, the decay of the next chunk's first step, carried over from
the chunk walked before it; 1 past the sequence's end): one exponential per state update. The forward saves the
ungated readout y when z is given, so dz needs no second sum over N.

The backward has no atomics, so its gradients are bitwise identical run to run. A program covers a few sequences
and a few consecutive channel blocks of one B/C group (``ops._bwd_split``). dB and dC are sums over channels: the
program's first block stores its chunk sums into the program's own partial (``[splits, B, G, N, T]``, one per split
of a group's channel blocks), later blocks load and add to them (a barrier at each of their chunks makes the earlier
stores of other threads visible). dA, dD and d(delta_bias) are sums over sequences and time: each block keeps them in
registers over the program's sequences and stores them once into partial ``[programs along rows, D, ...]``. The
caller (``ops.selective_scan_bwd``) sums both kinds of partial over their first dimension, a fixed order.

Layouts (all contiguous): u, delta, z, out ``[B, D, T]``; B, C ``[B, G, N, T]`` (the forward takes them time-major,
``[B, G, T, N]``); A ``[D, N]`` fp32; state ``[S, D, N]`` fp32. With ``VARLEN`` the batch is 1 and sequence ``s``
runs ``cu_seqlens[s]:cu_seqlens[s + 1]``.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _softplus(x):
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit(do_not_specialize=["stride_s_d", "stride_s_n", "stride_at_n", "stride_bc_n"])
def selective_scan_fwd_kernel(
    u_ptr,
    delta_ptr,
    A2T_ptr,
    BC_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    h0T_ptr,
    resets_ptr,
    cu_ptr,
    hc_ptr,
    out_ptr,
    hlast_ptr,
    ckpt_ptr,
    y_ptr,
    end_ptr,
    decay_ptr,
    T,
    DIM,
    G,
    n_ckpt,
    n_hc,
    hc_every,
    chunk_len,
    n_chunks,
    stride_s_d,
    stride_s_n,
    stride_at_n,
    stride_bc_n,
    N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    K: tl.constexpr,
    CKPT_EVERY: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr,
    HAS_RESETS: tl.constexpr,
    VARLEN: tl.constexpr,
    CHUNKED: tl.constexpr,
    END_STATE: tl.constexpr,
    STORE_LAST: tl.constexpr,
    STORE_CKPT: tl.constexpr,
    STORE_Y: tl.constexpr,
):
    """Forward over time chunk ``program_id(2)`` (``chunk_len`` steps) of one sequence and channel block: one thread
    per channel holds its N fp32 states (``[N, BLOCK_D]``, N in-thread, channels across lanes and warps), so neither
    the recurrence nor the readout sum over N crosses threads.

    u, delta, z, y and out move as ``[K, BLOCK_D]`` tiles of K consecutive steps, contiguous for a channel, so a
    thread loads or stores a tile column as one vector (16 bytes at the K ops.py picks); softplus, dt * u, D * u and
    silu(z) run once per tile, and step k's column is picked out of the tile in registers (a select over the
    in-thread K axis, no data movement). B and C come time-major and packed (``BC`` ``[B, G, T, N]`` int64 holding
    the fp32 pair (B, C): one load for both, per step, shared by the block); A pre-scaled by log2(e) and the initial
    state channel-major (``A2T`` [N, D], ``h0T`` [S, N, D]). The state is stored every CKPT_EVERY steps (``ckpt``)
    for the chunked backward.

    Sequential path (one chunk per sequence): the state starts from ``h0T`` (or zero) and ends in ``hlast``. Chunked
    path (``CHUNKED``): pass 1 (``END_STATE``) runs every chunk from a zero state and stores its end state and its
    total decay (zero after a reset) into ``end``/``decay`` [S, chunks, D, N], with no outputs; after
    ``selective_scan_fwd_carry_kernel`` has combined them, pass 2 reruns chunk c > 0 from the carried state
    ``hc[s, c * hc_every - 1]`` (the backward's checkpoint at the chunk's start, when hc is ckpt)."""
    pid_s = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    pid_c = tl.program_id(2)
    if VARLEN:
        bos = tl.load(cu_ptr + pid_s).to(tl.int64)
        eos = tl.load(cu_ptr + pid_s + 1).to(tl.int64)
        row = pid_s * 0
    else:
        bos = pid_s * 0
        eos = bos + T
        row = pid_s
    i_lo = pid_c * chunk_len  # the chunk's first step, counted from the sequence's start
    t_hi = tl.minimum(bos + i_lo + chunk_len, eos)  # one past its last step
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    offs_n = tl.arange(0, N)
    offs_k = tl.arange(0, K)
    group = (pid_d * BLOCK_D) // (DIM // G)
    x_base = row * DIM * T + offs_d.to(tl.int64) * T  # [BLOCK_D]
    bc_base = (row * G + group) * T * N + offs_n * stride_bc_n  # [N]
    # Layout steering: the loop's [N, BLOCK_D] layout follows the loads. A is read transposed (A2T [N, D], channels
    # contiguous, row stride unspecialised so nothing is vectorised) and the states and B, C through unspecialised
    # strides (stride_s_d = N, stride_s_n = stride_bc_n = 1): a visibly contiguous N axis makes Triton spread N over
    # lanes, and every readout sum would then cross threads.
    state_in = offs_d.to(tl.int64)[None, :] * stride_s_d + offs_n[:, None] * stride_s_n  # [N, BLOCK_D]
    A2 = tl.load(A2T_ptr + offs_n[:, None] * stride_at_n + offs_d[None, :], mask=mask_d[None, :], other=0.0)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    h = tl.zeros([N, BLOCK_D], dtype=tl.float32)
    if not END_STATE:
        if HAS_H0:  # h0T [S, N, D]: read like A2T, for the same reason
            if pid_c == 0:
                h = tl.load(
                    h0T_ptr + pid_s * N * DIM + offs_n[:, None] * stride_at_n + offs_d[None, :],
                    mask=mask_d[None, :],
                    other=0.0,
                )
        if CHUNKED:
            if pid_c > 0:
                hc = ((pid_s * n_hc + pid_c * hc_every - 1) * DIM) * N + state_in
                h = tl.load(hc_ptr + hc, mask=mask_d[None, :], other=0.0)
    if END_STATE:
        dt_sum = tl.zeros([BLOCK_D], dtype=tl.float32)
        reset_seen = pid_s * 0 != 0
    n_tiles = tl.cdiv(t_hi - bos - i_lo, K)
    for j in range(0, n_tiles):
        i0 = i_lo + j * K  # the tile's first step, counted from the sequence's start
        if STORE_CKPT:
            if (i0 % CKPT_EVERY == 0) & (i0 > i_lo):
                ck = ((pid_s * n_ckpt + i0 // CKPT_EVERY - 1) * DIM) * N + state_in
                tl.store(ckpt_ptr + ck, h, mask=mask_d[None, :])
        t = bos + i0 + offs_k  # [K]
        mask_t = t < t_hi
        m2 = mask_t[:, None] & mask_d[None, :]  # [K, BLOCK_D]
        x_off = x_base[None, :] + t[:, None]
        u = tl.load(u_ptr + x_off, mask=m2, other=0.0).to(tl.float32)
        dt = tl.load(delta_ptr + x_off, mask=m2, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias[None, :]
        if SOFTPLUS:
            dt = _softplus(dt)
        dt = tl.where(m2, dt, 0.0)  # a padded step leaves the state as it is (decay 1, no drive)
        dtu = dt * u
        if END_STATE:
            dt_sum += tl.sum(dt, axis=0)
        y = tl.zeros([K, BLOCK_D], dtype=tl.float32)
        for k in tl.static_range(K):
            pick = offs_k[:, None] == k
            dt_k = tl.sum(tl.where(pick, dt, 0.0), axis=0)  # [BLOCK_D], step k's column, in registers
            dtu_k = tl.sum(tl.where(pick, dtu, 0.0), axis=0)
            tk = bos + i0 + k
            # [N] int64: fp32 B_t[n] in the low word, C_t[n] in the high word (zero past the chunk's end)
            bc = tl.load(BC_ptr + bc_base + tk * N, mask=tk < t_hi, other=0)
            Bt = (bc & 0xFFFFFFFF).to(tl.uint32).to(tl.float32, bitcast=True)
            decay = tl.exp2(dt_k[None, :] * A2)  # [N, BLOCK_D]
            if HAS_RESETS:
                reset = tl.load(resets_ptr + row * T + tk, mask=tk < t_hi, other=0) != 0
                decay = tl.where(reset, 0.0, decay)
                if END_STATE:
                    reset_seen = reset_seen | reset
            h = decay * h + dtu_k[None, :] * Bt[:, None]
            if not END_STATE:
                Ct = (bc >> 32).to(tl.uint32).to(tl.float32, bitcast=True)
                y_k = tl.sum(h * Ct[:, None], axis=0)  # [BLOCK_D]
                y = tl.where(pick, y_k[None, :], y)
        if not END_STATE:
            if HAS_D:
                y += Dv[None, :] * u
            if STORE_Y:  # the ungated readout, so the backward's dz needs no second sum over N
                tl.store(y_ptr + x_off, y.to(y_ptr.dtype.element_ty), mask=m2)
            if HAS_Z:
                zz = tl.load(z_ptr + x_off, mask=m2, other=0.0).to(tl.float32)
                y = y * zz * tl.sigmoid(zz)
            tl.store(out_ptr + x_off, y.to(out_ptr.dtype.element_ty), mask=m2)
    if END_STATE:
        part = ((pid_s * n_chunks + pid_c) * DIM) * N + state_in
        tl.store(end_ptr + part, h, mask=mask_d[None, :])
        total = tl.exp2(dt_sum[None, :] * A2)  # the chunk's decay: the product of its steps' decays ...
        total = tl.where(reset_seen, 0.0, total)  # ... zero once a reset has cut the chunk
        tl.store(decay_ptr + part, total, mask=mask_d[None, :])
    if STORE_LAST:
        tl.store(hlast_ptr + pid_s * DIM * N + state_in, h, mask=mask_d[None, :])


@triton.jit
def selective_scan_fwd_carry_kernel(
    end_ptr,
    decay_ptr,
    h0_ptr,
    cu_ptr,
    hc_ptr,
    hlast_ptr,
    T,
    DIM,
    n_chunks,
    n_hc,
    hc_every,
    chunk_len,
    N: tl.constexpr,
    BLOCK: tl.constexpr,
    HAS_H0: tl.constexpr,
    VARLEN: tl.constexpr,
    STORE_LAST: tl.constexpr,
):
    """Chunked forward, between its two passes: for one sequence and BLOCK of its D * N states, walk the chunks in
    order, h_c = decay_{c-1} * h_{c-1} + end_{c-1} (h_0 the initial state or zero), and store the state entering
    chunk c > 0 into ``hc[s, c * hc_every - 1]`` and the one after the last chunk into ``hlast``. end, decay
    ``[S, chunks, D, N]``; h0, hlast ``[S, D, N]``; hc ``[S, n_hc, D, N]``, all fp32."""
    pid_s = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < DIM * N
    if VARLEN:
        length = tl.load(cu_ptr + pid_s + 1) - tl.load(cu_ptr + pid_s)
    else:
        length = T
    if HAS_H0:
        h = tl.load(h0_ptr + pid_s * DIM * N + offs, mask=mask, other=0.0)
    else:
        h = tl.zeros([BLOCK], dtype=tl.float32)
    for c in range(0, tl.cdiv(length, chunk_len)):
        if c > 0:
            tl.store(hc_ptr + (pid_s * n_hc + c * hc_every - 1) * DIM * N + offs, h, mask=mask)
        part = (pid_s * n_chunks + c) * DIM * N + offs
        h = tl.load(decay_ptr + part, mask=mask, other=0.0) * h + tl.load(end_ptr + part, mask=mask, other=0.0)
    if STORE_LAST:
        tl.store(hlast_ptr + pid_s * DIM * N + offs, h, mask=mask)


@triton.jit
def selective_scan_bwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    h0_ptr,
    resets_ptr,
    cu_ptr,
    ckpt_ptr,
    y_ptr,
    dout_ptr,
    dlast_ptr,
    du_ptr,
    ddelta_ptr,
    dA_ptr,
    dB_ptr,
    dC_ptr,
    dD_ptr,
    dz_ptr,
    dbias_ptr,
    dh0_ptr,
    T,
    DIM,
    G,
    n_ckpt,
    S,
    ROWS_PER_PROGRAM,
    BLOCKS_PER_PROGRAM,
    GROUP_BLOCKS,
    SPLITS,
    split_stride,
    N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    K: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr,
    HAS_RESETS: tl.constexpr,
    VARLEN: tl.constexpr,
    HAS_CKPT: tl.constexpr,
    HAS_DLAST: tl.constexpr,
    HAS_Y: tl.constexpr,
):
    # Chunk tile [K, BLOCK_D, N]: Triton's default layout puts N on 16 lanes, channels on the remaining lanes and
    # the warps, and time inside the thread, so both step loops run in registers; sums over N take 4 shuffle
    # stages, sums over channels (dB, dC) one lane stage plus the warps.
    #
    # Program (pid_r, pid_c) covers ROWS_PER_PROGRAM sequences and up to BLOCKS_PER_PROGRAM consecutive channel
    # blocks of one B/C group (pid_c = group * SPLITS + split). Its dB/dC live in partial ``split`` ([SPLITS, B, G,
    # N, T], split_stride apart): the first block stores there, the next ones add to what it stored (the program
    # owns those entries, so no other program touches them); dA, dD, d(delta_bias) are summed in registers over the
    # rows and stored once per block into partial pid_r ([programs along rows, D, N] / [.., D]). The caller sums the
    # partials in a fixed order: no atomics, bitwise repeatable.
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    group = pid_c // SPLITS
    split = pid_c % SPLITS
    blk_lo = split * BLOCKS_PER_PROGRAM
    blk_hi = tl.minimum(blk_lo + BLOCKS_PER_PROGRAM, GROUP_BLOCKS)
    part = split.to(tl.int64) * split_stride  # this program's dB/dC partial
    offs_n = tl.arange(0, N)
    offs_k = tl.arange(0, K)
    k3 = offs_k[:, None, None]
    all_n = (offs_n < N)[None, :]  # full-shape masks for the [K, N] partials
    for blk in range(blk_lo, blk_hi):
        offs_d = group * (DIM // G) + blk * BLOCK_D + tl.arange(0, BLOCK_D)
        mask_d = offs_d < DIM
        accumulate = blk > blk_lo  # a block after this program's first adds to the dB/dC partial
        A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_d[:, None], other=0.0).to(tl.float32)
        A2 = A * LOG2E  # decay = exp2(dt * A log2 e)
        if HAS_D:
            Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        dA_acc = tl.zeros([BLOCK_D, N], dtype=tl.float32)
        dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)

        for r in range(0, ROWS_PER_PROGRAM):
            s_idx = pid_r * ROWS_PER_PROGRAM + r
            if s_idx < S:
                pid_s = s_idx.to(tl.int64)
                if VARLEN:
                    bos = tl.load(cu_ptr + pid_s).to(tl.int64)
                    eos = tl.load(cu_ptr + pid_s + 1).to(tl.int64)
                    row = pid_s * 0
                else:
                    bos = pid_s * 0
                    eos = bos + T
                    row = pid_s
                x_base = row * DIM * T + offs_d.to(tl.int64)[None, :] * T  # [1, BLOCK_D]
                bc_base = (row * G + group) * N * T + offs_n.to(tl.int64)[None, :] * T  # [1, N]
                state_off = pid_s * DIM * N + offs_d.to(tl.int64)[:, None] * N + offs_n[None, :]  # [BLOCK_D, N]
                if HAS_DLAST:
                    g_carry = tl.load(dlast_ptr + state_off, mask=mask_d[:, None], other=0.0).to(tl.float32)
                else:
                    g_carry = tl.zeros([BLOCK_D, N], dtype=tl.float32)
                dh0 = g_carry  # an empty sequence hands its state straight through
                n_chunks = tl.cdiv(eos - bos, K)
                dn_carry = tl.full([BLOCK_D, N], 1.0, dtype=tl.float32)  # decay of the step after the chunk
                for cc in range(0, n_chunks):
                    c = n_chunks - 1 - cc
                    # the previous block stored this chunk's dB/dC partial, maybe from other threads of this
                    # program: a barrier makes those stores visible to the loads below
                    if blk > blk_lo:
                        tl.debug_barrier()
                    h = tl.zeros([BLOCK_D, N], dtype=tl.float32)  # state entering the chunk
                    if HAS_H0:
                        if c == 0:
                            h = tl.load(h0_ptr + state_off, mask=mask_d[:, None], other=0.0).to(tl.float32)
                    if HAS_CKPT:
                        if c > 0:
                            ck = ((pid_s * n_ckpt + c - 1) * DIM) * N + offs_d.to(tl.int64)[:, None] * N
                            h = tl.load(ckpt_ptr + ck + offs_n[None, :], mask=mask_d[:, None], other=0.0)
                    # every load of the chunk first, time in order, so that their latencies overlap
                    t = bos + c * K + offs_k
                    mask_t = t < eos
                    m2 = mask_t[:, None] & mask_d[None, :]  # [K, BLOCK_D]
                    part_off = part + bc_base + t[:, None]  # [K, N]
                    mask_part = mask_t[:, None] & all_n
                    dC_prev = tl.load(dC_ptr + part_off, mask=mask_part & accumulate, other=0.0)
                    dB_prev = tl.load(dB_ptr + part_off, mask=mask_part & accumulate, other=0.0)
                    x_off = x_base + t[:, None]
                    u = tl.load(u_ptr + x_off, mask=m2, other=0.0).to(tl.float32)
                    dt_raw = tl.load(delta_ptr + x_off, mask=m2, other=0.0).to(tl.float32)
                    dout = tl.load(dout_ptr + x_off, mask=m2, other=0.0).to(tl.float32)
                    if HAS_Z:
                        zz = tl.load(z_ptr + x_off, mask=m2, other=0.0).to(tl.float32)
                        if HAS_Y:
                            y = tl.load(y_ptr + x_off, mask=m2, other=0.0).to(tl.float32)
                    if HAS_RESETS:
                        rs = tl.load(resets_ptr + row * T + t, mask=mask_t, other=0)
                    Bt = tl.load(B_ptr + bc_base + t[:, None], mask=mask_t[:, None], other=0.0).to(tl.float32)
                    Ct = tl.load(C_ptr + bc_base + t[:, None], mask=mask_t[:, None], other=0.0).to(tl.float32)
                    # per-(d, t) math, once per [K, BLOCK_D] tile
                    if HAS_BIAS:
                        dt_raw += bias[None, :]
                    if SOFTPLUS:
                        dt = _softplus(dt_raw)
                    else:
                        dt = dt_raw
                    dt = tl.where(m2, dt, 0.0)  # a padded step: decay 1, no drive
                    dtu = dt * u
                    if HAS_Z:
                        sz = tl.sigmoid(zz)
                        gy = dout * zz * sz
                    else:
                        gy = dout
                    # the chunk's decays, one exponential per (step, channel, state), shared by the forward
                    # recompute and the adjoint
                    decay = tl.exp2(dt[:, :, None] * A2[None, :, :])  # [K, BLOCK_D, N]
                    if HAS_RESETS:
                        decay = tl.where(rs[:, None, None] != 0, 0.0, decay)
                    drive = dtu[:, :, None] * Bt[:, None, :]
                    # ---- forward recompute from the chunk's entering state, step by step in each thread (time
                    # is in-thread in this layout: picking step k's slice is a register select)
                    hm = tl.zeros([K, BLOCK_D, N], dtype=tl.float32)  # decay_t * h_{t-1}
                    for k in tl.static_range(K):
                        pick = k3 == k
                        h = tl.sum(tl.where(pick, decay, -0.0), axis=0) * h
                        hm = tl.where(pick, h[None, :, :], hm)
                        h = h + tl.sum(tl.where(pick, drive, -0.0), axis=0)
                    hs = hm + drive  # h_t
                    if HAS_Z:
                        if not HAS_Y:
                            y = tl.sum(hs * Ct[:, None, :], axis=2)  # [K, BLOCK_D]
                            if HAS_D:
                                y += Dv[None, :] * u
                        dz = dout * y * sz * (1.0 + zz * (1.0 - sz))
                        tl.store(dz_ptr + x_off, dz.to(dz_ptr.dtype.element_ty), mask=m2)
                    dC_part = tl.sum(gy[:, :, None] * hs, axis=1)  # [K, N]: dC_t = sum_d gy_t h_t
                    tl.store(dC_ptr + part_off, dC_prev + dC_part, mask=mask_part)
                    # ---- adjoint, step by step in reverse: g_t = gy_t C_t + decay_{t+1} g_{t+1}, the decay of
                    # step t+1 the one computed above (or, at the chunk's last step, the one carried from the chunk
                    # after it; 1 past the sequence's end, where g is d last_state)
                    gh = gy[:, :, None] * Ct[:, None, :]
                    g = g_carry
                    gs = tl.zeros([K, BLOCK_D, N], dtype=tl.float32)
                    for j in tl.static_range(K):
                        pick = k3 == K - 1 - j
                        g = tl.sum(tl.where(pick, gh, -0.0), axis=0) + dn_carry * g
                        gs = tl.where(pick, g[None, :, :], gs)
                        dn_carry = tl.sum(tl.where(pick, decay, -0.0), axis=0)
                    g_carry = g  # dL/dh at the chunk's first step, and dn_carry that step's decay
                    if HAS_H0:
                        if c == 0:
                            dh0 = dn_carry * g
                    # ---- parameter and input gradients, time in order
                    q = gs * hm  # g_t * decay_t * h_{t-1}
                    dA_acc += tl.sum(q * dt[:, :, None], axis=0)
                    gB = tl.sum(gs * Bt[:, None, :], axis=2)  # [K, BLOCK_D]
                    ddt = tl.sum(q * A2[None, :, :], axis=2) * LN2 + u * gB
                    du = dt * gB
                    if HAS_D:
                        du += gy * Dv[None, :]
                        dD_acc += tl.sum(gy * u, axis=0)
                    dB_part = tl.sum(gs * dtu[:, :, None], axis=1)  # [K, N]
                    tl.store(dB_ptr + part_off, dB_prev + dB_part, mask=mask_part)
                    if SOFTPLUS:
                        ddt = ddt * tl.sigmoid(dt_raw)
                    ddt = tl.where(m2, ddt, 0.0)
                    if HAS_BIAS:
                        dbias_acc += tl.sum(ddt, axis=0)
                    tl.store(du_ptr + x_off, du.to(du_ptr.dtype.element_ty), mask=m2)
                    tl.store(ddelta_ptr + x_off, ddt.to(ddelta_ptr.dtype.element_ty), mask=m2)
                if HAS_H0:
                    tl.store(dh0_ptr + state_off, dh0, mask=mask_d[:, None])
        # this block's sums over the program's rows: partial pid_r of [programs along rows, D, N] and [.., D]
        row_part = pid_r.to(tl.int64) * DIM + offs_d
        tl.store(dA_ptr + row_part[:, None] * N + offs_n[None, :], dA_acc, mask=mask_d[:, None])
        if HAS_D:
            tl.store(dD_ptr + row_part, dD_acc, mask=mask_d)
        if HAS_BIAS:
            tl.store(dbias_ptr + row_part, dbias_acc, mask=mask_d)
