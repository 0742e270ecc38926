"""Triton forward and backward of the depthwise causal conv1d (width W <= 8): one thread per channel row.

A program owns ``BLOCK_D`` channels of one row (one channel per thread) and walks the time axis in register tiles
of ``BLOCK_T`` steps. Each tile is read as ``[BLOCK_D, VEC]`` pieces, ``VEC`` steps of 16 bytes (T is innermost in
x ``[B, D, T]``, so a thread's run of steps is one vector load), and split into per-step columns ``[BLOCK_D]`` held
in the thread's registers (``_cols``: reshapes and splits, all within a thread). A tap is then a register index: the
window of step t is the W - 1 steps carried from the previous tile (the initial state ``[B, D, W - 1]`` before the
first) and the tile's own. ``lo [B, T]`` (int32) is the first padded position output t may read (a reset at r
gives lo = r + W - 1), so windows never cross a sequence boundary.

Backward: each pre-activation is computed once per step, giving gpre = dout * act'(pre), dweight and dbias in the
same pass (per-thread sums: one thread owns its channel). dxx[p] = sum_k w[k] gpre[p - k] needs gpre up to W - 1
steps ahead, so the dx columns trail the tile by ``LAG`` steps (W - 1 rounded up to a multiple of VEC, so dx is
still stored as aligned vectors): the first tile's trailing columns are the initial state's gradient, and a last
flush emits the final LAG steps. A program loops over a group of rows and stores dweight and dbias once as partials
``[groups, D, W]`` that the caller sums in a fixed order: no float atomics, so gradients are bitwise repeatable.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _halves(t):
    # [BD, N] -> its first and second halves along N (in-thread reshapes; [BD] each when N = 2)
    N: tl.constexpr = t.shape[1]
    if N == 2:
        a, b = tl.split(t)
    else:
        a, b = tl.split(tl.permute(tl.reshape(t, [t.shape[0], 2, N // 2]), [0, 2, 1]))
    return a, b


@triton.jit
def _cols(tile, N: tl.constexpr):
    # [BD, N] (N a power of two <= 16) -> tuple of its N columns [BD], in order
    if N == 1:
        cols = (tl.reshape(tile, [tile.shape[0]]),)
    else:
        cols = (tile,)
        for _lvl in tl.static_range(4):
            if len(cols) < N:
                nxt = ()
                for c in tl.static_range(len(cols)):
                    a, b = _halves(cols[c])
                    nxt = nxt + (a, b)
                cols = nxt
    return cols


@triton.jit
def _unhalve(a, b):
    # inverse of _halves
    if len(a.shape) == 1:
        t = tl.join(a, b)
    else:
        t = tl.reshape(tl.permute(tl.join(a, b), [0, 2, 1]), [a.shape[0], 2 * a.shape[1]])
    return t


@triton.jit
def _tile(cols, N: tl.constexpr):
    # tuple of N columns [BD] -> [BD, N] (inverse of _cols)
    if N == 1:
        tile = tl.reshape(cols[0], [cols[0].shape[0], 1])
    else:
        parts = cols
        for _lvl in tl.static_range(4):
            if len(parts) > 1:
                nxt = ()
                for c in tl.static_range(len(parts) // 2):
                    nxt = nxt + (_unhalve(parts[2 * c], parts[2 * c + 1]),)
                parts = nxt
        tile = parts[0]
    return tile


@triton.jit
def _load_cols(ptr_row, offs_d, mask_d, t0, T, BLOCK_T: tl.constexpr, VEC: tl.constexpr):
    # steps [t0, t0 + BLOCK_T) of each channel as BLOCK_T columns [BLOCK_D] in fp32 (0 past T), VEC-step vectors
    cols = ()
    for q in tl.static_range(BLOCK_T // VEC):
        t = t0 + q * VEC + tl.arange(0, VEC)
        tile = tl.load(ptr_row[:, None] + t[None, :], mask=mask_d[:, None] & (t < T)[None, :], other=0.0)
        cols = cols + _cols(tile.to(tl.float32), VEC)
    return cols


@triton.jit
def _load_state(init_ptr, row, offs_d, mask_d, DIM, W: tl.constexpr, BLOCK_D: tl.constexpr, HAS_INIT: tl.constexpr):
    # the W - 1 inputs before t = 0 as columns (zeros without an initial state)
    prev = ()
    for k in tl.static_range(W - 1):
        if HAS_INIT:
            v = tl.load(init_ptr + row * DIM * (W - 1) + offs_d.to(tl.int64) * (W - 1) + k, mask=mask_d, other=0.0)
            prev = prev + (v.to(tl.float32),)
        else:
            prev = prev + (tl.zeros([BLOCK_D], dtype=tl.float32),)
    return prev


@triton.jit
def _load_taps(w_ptr, offs_d, mask_d, W: tl.constexpr):
    wk = ()
    for k in tl.static_range(W):
        wk = wk + (tl.load(w_ptr + offs_d * W + k, mask=mask_d, other=0.0).to(tl.float32),)
    return wk


@triton.jit
def _pre(win, i, wk, bias, t, lo, W: tl.constexpr, HAS_LO: tl.constexpr):
    # bias + sum_k w[k] xx[t + k], window columns win[i .. i + W - 1]; taps before lo (a reset) read 0
    acc = bias
    for k in tl.static_range(W):
        xv = win[i + k]
        if HAS_LO:
            xv = tl.where(t + k >= lo, xv, 0.0)
        acc += wk[k] * xv
    return acc


@triton.jit
def causal_conv1d_fwd_kernel(
    x_ptr,
    w_ptr,
    bias_ptr,
    init_ptr,
    lo_ptr,
    out_ptr,
    T,
    DIM,
    W: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
    VEC: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_INIT: tl.constexpr,
    HAS_LO: tl.constexpr,
    SILU: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    base = row * DIM * T + offs_d.to(tl.int64) * T
    wk = _load_taps(w_ptr, offs_d, mask_d, W)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    prev = _load_state(init_ptr, row, offs_d, mask_d, DIM, W, BLOCK_D, HAS_INIT)
    for t0 in range(0, T, BLOCK_T):
        win = prev + _load_cols(x_ptr + base, offs_d, mask_d, t0, T, BLOCK_T, VEC)  # xx[t0 .. t0 + BLOCK_T + W - 1)
        for q in tl.static_range(BLOCK_T // VEC):
            outs = ()
            for i in tl.static_range(q * VEC, (q + 1) * VEC):
                lo = 0
                if HAS_LO:
                    lo = tl.load(lo_ptr + row * T + t0 + i, mask=t0 + i < T, other=0)
                acc = _pre(win, i, wk, bias, t0 + i, lo, W, HAS_LO)
                if SILU:
                    acc = acc * tl.sigmoid(acc)
                outs = outs + (acc,)
            t = t0 + q * VEC + tl.arange(0, VEC)
            tl.store(
                out_ptr + base[:, None] + t[None, :],
                _tile(outs, VEC).to(out_ptr.dtype.element_ty),
                mask=mask_d[:, None] & (t < T)[None, :],
            )
        nxt = ()
        for j in tl.static_range(W - 1):
            nxt = nxt + (win[BLOCK_T + j],)
        prev = nxt


@triton.jit
def _emit_dx(
    gwin,
    lowin,
    wk,
    c0,
    base,
    fbase,
    offs_d,
    mask_d,
    T,
    lo_last,
    dx_ptr,
    dinit_ptr,
    dfinal_ptr,
    N: tl.constexpr,
    W: tl.constexpr,
    VEC: tl.constexpr,
    HAS_INIT: tl.constexpr,
    HAS_LO: tl.constexpr,
    HAS_DFINAL: tl.constexpr,
):
    # dx for steps s = c0 .. c0 + N - 1 (padded p = s + W - 1): sum_k w[k] gpre[s + W - 1 - k], where gwin[j] is
    # gpre[c0 + j] and lowin[j] its lo; steps s < 0 are the initial state's (dinit[s + W - 1]); the final state's
    # gradient joins the last W - 1 padded positions
    if HAS_INIT:
        first = 1 - W
    else:
        first = 0
    for q in tl.static_range(N // VEC):
        if c0 + (q + 1) * VEC > first:  # skip vectors of steps before the padded start (nothing to store)
            cols = ()
            for i in tl.static_range(q * VEC, (q + 1) * VEC):
                acc = tl.zeros_like(gwin[0])
                for k in tl.static_range(W):
                    g = gwin[i + W - 1 - k]
                    if HAS_LO:
                        g = tl.where(c0 + i + W - 1 >= lowin[i + W - 1 - k], g, 0.0)
                    acc += wk[k] * g
                cols = cols + (acc,)
            if HAS_DFINAL:
                if c0 + (q + 1) * VEC > T - (W - 1):  # only the vectors that hold final-state positions
                    withf = ()
                    for i in tl.static_range(VEC):
                        j = c0 + q * VEC + i - (T - (W - 1))
                        m = mask_d & (j >= 0) & (j < W - 1)
                        if HAS_LO:
                            m = m & (c0 + q * VEC + i + W - 1 >= lo_last)
                        df = tl.load(dfinal_ptr + fbase + j, mask=m, other=0.0).to(tl.float32)
                        withf = withf + (cols[i] + df,)
                    cols = withf
            s = c0 + q * VEC + tl.arange(0, VEC)
            tl.store(
                dx_ptr + base[:, None] + s[None, :],
                _tile(cols, VEC).to(dx_ptr.dtype.element_ty),
                mask=mask_d[:, None] & ((s >= 0) & (s < T))[None, :],
            )
            if HAS_INIT:
                if c0 + q * VEC < 0:  # per column: d initial_state is [B, D, W - 1], not a run of whole vectors
                    for i in tl.static_range(VEC):
                        si = c0 + q * VEC + i
                        tl.store(
                            dinit_ptr + fbase + (si + W - 1),
                            cols[i].to(dinit_ptr.dtype.element_ty),
                            mask=mask_d & (si >= 1 - W) & (si < 0),
                        )


@triton.jit
def causal_conv1d_bwd_kernel(
    x_ptr,
    w_ptr,
    bias_ptr,
    init_ptr,
    lo_ptr,
    dout_ptr,
    dfinal_ptr,
    dx_ptr,
    dinit_ptr,
    dw_ptr,
    dbias_ptr,
    T,
    DIM,
    ROWS,
    ROWS_PER_PROGRAM,
    W: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
    VEC: tl.constexpr,
    LAG: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_INIT: tl.constexpr,
    HAS_LO: tl.constexpr,
    SILU: tl.constexpr,
    HAS_DFINAL: tl.constexpr,
):
    # gpre[t] = dout[t] act'(pre[t]); dw[k] = sum_t gpre[t] xx[t + k] [t + k >= lo[t]]; dbias = sum_t gpre[t];
    # dxx[p] = sum_k w[k] gpre[p - k] [p >= lo[p - k]] (+ dfinal on the last W - 1 positions)
    pid_r = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    wk = _load_taps(w_ptr, offs_d, mask_d, W)
    zero = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    else:
        bias = zero
    dw = ()
    for _k in tl.static_range(W):
        dw = dw + (zero,)
    db = zero
    for r in range(0, ROWS_PER_PROGRAM):
        row_i = pid_r * ROWS_PER_PROGRAM + r
        if row_i < ROWS:
            row = row_i.to(tl.int64)
            base = row * DIM * T + offs_d.to(tl.int64) * T
            fbase = row * DIM * (W - 1) + offs_d.to(tl.int64) * (W - 1)
            lo_last = 0
            if HAS_LO and HAS_DFINAL:
                lo_last = tl.load(lo_ptr + row * T + T - 1, mask=T > 0, other=0)
            prev = _load_state(init_ptr, row, offs_d, mask_d, DIM, W, BLOCK_D, HAS_INIT)
            ghist = ()
            lohist = ()
            for _j in tl.static_range(LAG):
                ghist = ghist + (zero,)
                if HAS_LO:
                    lohist = lohist + (tl.full([], 0, tl.int32),)
            for t0 in range(0, T, BLOCK_T):
                win = prev + _load_cols(x_ptr + base, offs_d, mask_d, t0, T, BLOCK_T, VEC)
                douts = _load_cols(dout_ptr + base, offs_d, mask_d, t0, T, BLOCK_T, VEC)
                gs = ()
                los = ()
                for i in tl.static_range(BLOCK_T):
                    lo = 0
                    if HAS_LO:
                        lo = tl.load(lo_ptr + row * T + t0 + i, mask=t0 + i < T, other=0)
                    g = douts[i]
                    if SILU:
                        pre = _pre(win, i, wk, bias, t0 + i, lo, W, HAS_LO)
                        sg = tl.sigmoid(pre)
                        g = g * sg * (1.0 + pre * (1.0 - sg))
                    db += g
                    ndw = ()
                    for k in tl.static_range(W):
                        xv = win[i + k]
                        if HAS_LO:
                            xv = tl.where(t0 + i + k >= lo, xv, 0.0)
                        ndw = ndw + (dw[k] + g * xv,)
                    dw = ndw
                    gs = gs + (g,)
                    if HAS_LO:
                        los = los + (lo,)
                gwin = ghist + gs
                lowin = lohist + los
                _emit_dx(gwin, lowin, wk, t0 - LAG, base, fbase, offs_d, mask_d, T, lo_last, dx_ptr, dinit_ptr,
                         dfinal_ptr, BLOCK_T, W, VEC, HAS_INIT, HAS_LO, HAS_DFINAL)  # fmt: skip
                nxt = ()
                for j in tl.static_range(W - 1):
                    nxt = nxt + (win[BLOCK_T + j],)
                prev = nxt
                ghist = ()
                lohist = ()
                for j in tl.static_range(LAG):
                    ghist = ghist + (gwin[BLOCK_T + j],)
                    if HAS_LO:
                        lohist = lohist + (lowin[BLOCK_T + j],)
            if LAG > 0:  # the last LAG steps (gpre past the last tile is 0)
                tail = ()
                ltail = ()
                for _j in tl.static_range(W - 1):
                    tail = tail + (zero,)
                    if HAS_LO:
                        ltail = ltail + (tl.full([], 0, tl.int32),)
                _emit_dx(ghist + tail, lohist + ltail, wk, tl.cdiv(T, BLOCK_T) * BLOCK_T - LAG, base, fbase, offs_d,
                         mask_d, T, lo_last, dx_ptr, dinit_ptr, dfinal_ptr, LAG, W, VEC, HAS_INIT, HAS_LO,
                         HAS_DFINAL)  # fmt: skip
    # this program's partial sums: [groups, D, W] and [groups, D], summed by the caller in a fixed order
    part = pid_r.to(tl.int64) * DIM + offs_d
    for k in tl.static_range(W):
        tl.store(dw_ptr + part * W + k, dw[k], mask=mask_d)
    if HAS_BIAS:
        tl.store(dbias_ptr + part, db, mask=mask_d)
