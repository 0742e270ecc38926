"""Triton forward and backward of the depthwise causal conv1d (width W <= 8).

The input is read as ``xx = [initial_state | x]`` through two pointers (``[B, D, W - 1]`` and ``[B, D, T]``), so
padded position p < W - 1 comes from the state and p >= W - 1 from x. ``lo [B, T]`` (int32) is the first padded
position output t may read (a reset at r gives lo = r + W - 1), so windows never cross a sequence boundary.
Program (row, channel block, time block) for the forward; the backward loops over a group of rows to accumulate
the weight and bias gradients in registers and stores them once per program as partials ``[groups, D, W]`` that
the caller sums in a fixed order: no float atomics, so gradients are bitwise identical run to run.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _load_xx(x_ptr, init_ptr, row, offs_d, mask_d, p, T, DIM, W: tl.constexpr, HAS_INIT: tl.constexpr):
    # xx[row, d, p] for padded positions p ([BLOCK_T]); 0 outside [0, T + W - 1) or without a state
    in_x = (p >= W - 1) & (p < T + W - 1)
    xv = tl.load(
        x_ptr + row * DIM * T + offs_d.to(tl.int64)[:, None] * T + (p - (W - 1))[None, :],
        mask=mask_d[:, None] & in_x[None, :],
        other=0.0,
    ).to(tl.float32)
    if HAS_INIT:
        in_s = (p >= 0) & (p < W - 1)
        sv = tl.load(
            init_ptr + row * DIM * (W - 1) + offs_d.to(tl.int64)[:, None] * (W - 1) + p[None, :],
            mask=mask_d[:, None] & in_s[None, :],
            other=0.0,
        ).to(tl.float32)
        xv += sv
    return xv


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
    HAS_BIAS: tl.constexpr,
    HAS_INIT: tl.constexpr,
    HAS_LO: tl.constexpr,
    SILU: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    pid_t = tl.program_id(2)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    mask_t = t < T
    if HAS_LO:
        lo = tl.load(lo_ptr + row * T + t, mask=mask_t, other=0)
    acc = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[:, None]
    for k in tl.static_range(W):
        p = t + k
        xv = _load_xx(x_ptr, init_ptr, row, offs_d, mask_d, p, T, DIM, W, HAS_INIT)
        if HAS_LO:
            xv = tl.where((p >= lo)[None, :], xv, 0.0)
        wk = tl.load(w_ptr + offs_d * W + k, mask=mask_d, other=0.0).to(tl.float32)
        acc += wk[:, None] * xv
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(
        out_ptr + row * DIM * T + offs_d.to(tl.int64)[:, None] * T + t[None, :],
        acc.to(out_ptr.dtype.element_ty),
        mask=mask_d[:, None] & mask_t[None, :],
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
    W_P: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_INIT: tl.constexpr,
    HAS_LO: tl.constexpr,
    SILU: tl.constexpr,
    HAS_DFINAL: tl.constexpr,
):
    # Over padded positions p: dxx[p] = sum_k w[k] gpre[p - k] [p >= lo[p - k]] (+ dfinal for the last W - 1),
    # with gpre = dout * act'(pre) recomputed; dw[k] = sum_t gpre[t] xx[t + k]; dbias = sum_t gpre[t].
    pid_r = tl.program_id(0)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    offs_w = tl.arange(0, W_P)
    dw_acc = tl.zeros([BLOCK_D, W_P], dtype=tl.float32)
    db_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    for r in range(0, ROWS_PER_PROGRAM):
        row_i = pid_r * ROWS_PER_PROGRAM + r
        if row_i < ROWS:
            row = row_i.to(tl.int64)
            # positions p < W - 1 hold the initial state: visited only when it has a gradient to receive
            for p0 in range(0 if HAS_INIT else W - 1, T + W - 1, BLOCK_T):
                p = p0 + tl.arange(0, BLOCK_T)
                xp = _load_xx(x_ptr, init_ptr, row, offs_d, mask_d, p, T, DIM, W, HAS_INIT)
                dxx = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
                for k in tl.static_range(W):
                    t = p - k  # the output that reads xx[p] through tap k
                    mask_t = (t >= 0) & (t < T)
                    if HAS_LO:
                        lo = tl.load(lo_ptr + row * T + t, mask=mask_t, other=0)
                    pre = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
                    if HAS_BIAS:
                        pre += bias[:, None]
                    for j in tl.static_range(W):
                        xv = _load_xx(x_ptr, init_ptr, row, offs_d, mask_d, t + j, T, DIM, W, HAS_INIT)
                        if HAS_LO:
                            xv = tl.where((t + j >= lo)[None, :], xv, 0.0)
                        wj = tl.load(w_ptr + offs_d * W + j, mask=mask_d, other=0.0).to(tl.float32)
                        pre += wj[:, None] * xv
                    m2 = mask_d[:, None] & mask_t[None, :]
                    g = tl.load(
                        dout_ptr + row * DIM * T + offs_d.to(tl.int64)[:, None] * T + t[None, :], mask=m2, other=0.0
                    ).to(tl.float32)
                    if SILU:
                        s = tl.sigmoid(pre)
                        g = g * s * (1.0 + pre * (1.0 - s))
                    if HAS_LO:
                        g_in = tl.where((p >= lo)[None, :], g, 0.0)
                    else:
                        g_in = g
                    wk = tl.load(w_ptr + offs_d * W + k, mask=mask_d, other=0.0).to(tl.float32)
                    dxx += wk[:, None] * g_in
                    dw_acc += tl.where(offs_w[None, :] == k, tl.sum(g_in * xp, axis=1)[:, None], 0.0)
                    if k == W - 1:  # t = p - (W - 1) visits every output once over the loop's positions
                        db_acc += tl.sum(g, axis=1)
                if HAS_DFINAL:
                    # final state j holds xx[T + j] (masked by lo[T - 1]); its gradient joins there
                    j = p - T
                    in_f = (j >= 0) & (j < W - 1)
                    df = tl.load(
                        dfinal_ptr + row * DIM * (W - 1) + offs_d.to(tl.int64)[:, None] * (W - 1) + j[None, :],
                        mask=mask_d[:, None] & in_f[None, :],
                        other=0.0,
                    ).to(tl.float32)
                    if HAS_LO:
                        lo_last = tl.load(lo_ptr + row * T + T - 1)
                        df = tl.where((p >= lo_last)[None, :], df, 0.0)
                    dxx += df
                in_x = (p >= W - 1) & (p < T + W - 1)
                tl.store(
                    dx_ptr + row * DIM * T + offs_d.to(tl.int64)[:, None] * T + (p - (W - 1))[None, :],
                    dxx.to(dx_ptr.dtype.element_ty),
                    mask=mask_d[:, None] & in_x[None, :],
                )
                if HAS_INIT:
                    in_s = (p >= 0) & (p < W - 1)
                    tl.store(
                        dinit_ptr + row * DIM * (W - 1) + offs_d.to(tl.int64)[:, None] * (W - 1) + p[None, :],
                        dxx.to(dinit_ptr.dtype.element_ty),
                        mask=mask_d[:, None] & in_s[None, :],
                    )
    # this program's partial sums: [groups, D, W] and [groups, D], summed by the caller in a fixed order
    part = pid_r.to(tl.int64) * DIM
    tl.store(
        dw_ptr + (part + offs_d)[:, None] * W + offs_w[None, :],
        dw_acc,
        mask=mask_d[:, None] & (offs_w < W)[None, :],
    )
    if HAS_BIAS:
        tl.store(dbias_ptr + part + offs_d, db_acc, mask=mask_d)
