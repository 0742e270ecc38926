"""Chunked Triton kernels for h_t = a_t * h_{t-1} + x_t over ``[B, T, D]`` (channels contiguous).

Same contract as ``fused_recurrent.py`` (log gates, initial state, final state, resets, cu_seqlens; fp32 state,
output in the input dtype), different schedule: a program (sequence, channel block) loads a whole
``[CHUNK_T, BLOCK_D]`` tile of every input of a chunk of time at once, so all its loads are independent and many
bytes are in flight, then runs the recurrence inside the tile with ``tl.associative_scan`` along time and carries
the fp32 state from chunk to chunk. ``fused_recurrent`` instead issues one dependent load -> compute -> store step
per time step. HBM traffic is the same minimum (forward: x, a in, h out; backward: dout, a, h_{t-1} in, dx, da out);
the backward's shifted tiles (a_{t+1}, h_{t-1}) overlap the neighbouring rows and come from cache.

Rows past the end of a sequence are padded with the scan's identity element (gate 1, input 0), so the state after
the last row of a tile is the state after the last valid step. The backward walks chunks from the end and lays each
tile's rows out in reverse time order, so its reverse-time recurrence is again a forward scan. The fixed config
(CHUNK_T, BLOCK_D, warps) and why it was chosen are in ``ops.py``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._common import load_state_or_zeros, sequence_bounds


@triton.jit
def _first_order_combine(a1, x1, a2, x2):
    # (a1, x1) then (a2, x2): h -> a2 * (a1 * h + x1) + x2
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _gate(a_ptr, resets_ptr, rows, offs, mask, valid, LOG_GATES: tl.constexpr, HAS_RESETS: tl.constexpr):
    """fp32 gate tile at ``offs``: exp of log-gates, 0 where a reset is set, the identity 1 where not ``valid``."""
    a = tl.load(a_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if LOG_GATES:
        a = tl.exp(a)
    if HAS_RESETS:
        reset = tl.load(resets_ptr + rows, mask=valid, other=0) != 0
        a = tl.where(reset[:, None], 0.0, a)
    return tl.where(valid[:, None], a, 1.0)


@triton.jit
def gated_linear_scan_chunk_fwd_kernel(
    x_ptr,
    a_ptr,
    h0_ptr,
    resets_ptr,
    cu_ptr,
    out_ptr,
    hT_ptr,
    T,
    DIM,
    CHUNK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    LOG_GATES: tl.constexpr,
    HAS_H0: tl.constexpr,
    HAS_RESETS: tl.constexpr,
    VARLEN: tl.constexpr,
    STORE_FINAL: tl.constexpr,
):
    pid_s = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    bos, eos = sequence_bounds(cu_ptr, pid_s, T, VARLEN)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    offs_t = tl.arange(0, CHUNK_T)
    h = load_state_or_zeros(h0_ptr, pid_s, DIM, offs_d, mask_d, HAS_H0, BLOCK_D)
    for c in range(0, tl.cdiv(eos - bos, CHUNK_T)):
        rows = bos + c * CHUNK_T + offs_t  # [CHUNK_T] int64
        valid = rows < eos
        offs = rows[:, None] * DIM + offs_d[None, :]  # [CHUNK_T, BLOCK_D]
        mask = valid[:, None] & mask_d[None, :]
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        a = _gate(a_ptr, resets_ptr, rows, offs, mask, valid, LOG_GATES, HAS_RESETS)
        # the carried state enters through the first row: x_0 + a_0 h; then the scan yields h itself
        x = tl.where(offs_t[:, None] == 0, x + a * h[None, :], x)
        _, h_tile = tl.associative_scan((a, x), axis=0, combine_fn=_first_order_combine)
        tl.store(out_ptr + offs, h_tile.to(out_ptr.dtype.element_ty), mask=mask)
        h = tl.sum(tl.where(offs_t[:, None] == CHUNK_T - 1, h_tile, 0.0), axis=0)  # last row (identity padding)
    if STORE_FINAL:
        tl.store(hT_ptr + pid_s * DIM + offs_d, h, mask=mask_d)


@triton.jit
def gated_linear_scan_chunk_bwd_kernel(
    a_ptr,
    out_ptr,
    h0_ptr,
    resets_ptr,
    cu_ptr,
    dout_ptr,
    dhT_ptr,
    dx_ptr,
    da_ptr,
    dh0_ptr,
    T,
    DIM,
    CHUNK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    LOG_GATES: tl.constexpr,
    HAS_H0: tl.constexpr,
    HAS_RESETS: tl.constexpr,
    VARLEN: tl.constexpr,
    HAS_DHT: tl.constexpr,
):
    # g = dL/dh_t:  g_t = dout_t + a_{t+1} g_{t+1} (a reverse-time scan of (a_{t+1}, dout_t));  dx_t = g_t;
    # da_t = g_t h_{t-1} (times a_t for log-gates);  dh_0 = a_0 g_0
    pid_s = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    bos, eos = sequence_bounds(cu_ptr, pid_s, T, VARLEN)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    offs_t = tl.arange(0, CHUNK_T)
    # g of the step after the current chunk (dL/dh_T past the end)
    g_next = load_state_or_zeros(dhT_ptr, pid_s, DIM, offs_d, mask_d, HAS_DHT, BLOCK_D)
    h0 = load_state_or_zeros(h0_ptr, pid_s, DIM, offs_d, mask_d, HAS_H0, BLOCK_D)
    n_chunks = tl.cdiv(eos - bos, CHUNK_T)
    for i in range(0, n_chunks):
        # chunks in reverse order, and rows in reverse time order inside the tile, so the reverse-time recurrence
        # is a forward scan over the tile (Triton lowers reverse=True with cross-lane shuffles)
        rows = bos + (n_chunks - i) * CHUNK_T - 1 - offs_t  # [CHUNK_T] int64
        valid = rows < eos
        offs = rows[:, None] * DIM + offs_d[None, :]  # [CHUNK_T, BLOCK_D]
        mask = valid[:, None] & mask_d[None, :]
        dout = tl.load(dout_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        # a_{t+1}: the gate that carries g_{t+1} back to step t; identity past the end of the sequence
        nxt = (rows + 1) < eos
        a_next = _gate(
            a_ptr, resets_ptr, rows + 1, offs + DIM, nxt[:, None] & mask_d[None, :], nxt, LOG_GATES, HAS_RESETS
        )
        has_prev = (rows > bos) & valid
        h_prev = tl.load(out_ptr + offs - DIM, mask=has_prev[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
        h_prev = tl.where((rows == bos)[:, None], h0[None, :], h_prev)
        if HAS_RESETS:
            reset = tl.load(resets_ptr + rows, mask=valid, other=0) != 0
            h_prev = tl.where(reset[:, None], 0.0, h_prev)
        # the carried g enters through the chunk's last step (tile row 0): dout + a_{t+1} g_{t+1}
        dout = tl.where(offs_t[:, None] == 0, dout + a_next * g_next[None, :], dout)
        _, g = tl.associative_scan((a_next, dout), axis=0, combine_fn=_first_order_combine)
        da = g * h_prev
        if LOG_GATES:  # d/d(log a) = a * d/da; a reset's h_prev is already 0
            da = da * tl.exp(tl.load(a_ptr + offs, mask=mask, other=0.0).to(tl.float32))
        tl.store(dx_ptr + offs, g.to(dx_ptr.dtype.element_ty), mask=mask)
        tl.store(da_ptr + offs, da.to(da_ptr.dtype.element_ty), mask=mask)
        g_next = tl.sum(tl.where(offs_t[:, None] == CHUNK_T - 1, g, 0.0), axis=0)  # the chunk's first step
    if HAS_H0:
        # dh_0 = a_bos g_bos; an empty sequence passes dh_T straight through (gate identity 1)
        nonempty = bos < eos
        a0 = tl.load(a_ptr + bos * DIM + offs_d, mask=mask_d & nonempty, other=0.0).to(tl.float32)
        if LOG_GATES:
            a0 = tl.exp(a0)
        if HAS_RESETS:
            a0 = tl.where(tl.load(resets_ptr + bos, mask=nonempty, other=0) != 0, 0.0, a0)
        a0 = tl.where(nonempty, a0, 1.0)
        tl.store(dh0_ptr + pid_s * DIM + offs_d, a0 * g_next, mask=mask_d)
