"""Triton kernel for streaming steps of the causal conv1d (Dao's ``causal_conv1d_update``), state in place.

One fixed launch configuration, no host synchronisation, no allocation besides the output: CUDA-graph safe.
Program (b, channel block) handles the L new inputs one after another, shifting its state row left: row b of
``conv_state``, or with ``HAS_INDICES`` row ``indices[b]`` of a pool of slots, where -1 marks a padding row
(output zeros, no state read or written).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def causal_conv1d_update_kernel(
    x_ptr,
    state_ptr,
    w_ptr,
    bias_ptr,
    out_ptr,
    idx_ptr,
    DIM,
    L,
    S,
    W: tl.constexpr,
    S_P: tl.constexpr,
    BLOCK_D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    HAS_INDICES: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    offs_j = tl.arange(0, S_P)
    slot = pid_b
    mask_s = mask_d  # the state row exists (not a padding row)
    if HAS_INDICES:
        slot = tl.load(idx_ptr + pid_b).to(tl.int64)
        mask_s = mask_d & (slot >= 0)
        slot = tl.maximum(slot, 0)
    s_base = state_ptr + slot * DIM * S + offs_d.to(tl.int64)[:, None] * S  # [BLOCK_D, 1]
    x_base = pid_b * DIM * L + offs_d.to(tl.int64) * L
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    for t in range(0, L):
        st = tl.load(s_base + offs_j[None, :], mask=mask_s[:, None] & (offs_j < S)[None, :], other=0.0)
        st_next = tl.load(s_base + offs_j[None, :] + 1, mask=mask_s[:, None] & (offs_j + 1 < S)[None, :], other=0.0)
        xt = tl.load(x_ptr + x_base + t, mask=mask_d, other=0.0)
        # window = [state[S - W + 1 :], x_t]; out = sum_k w[k] window[k]
        y = tl.load(w_ptr + offs_d * W + (W - 1), mask=mask_d, other=0.0).to(tl.float32) * xt.to(tl.float32)
        for k in tl.static_range(W - 1):
            wk = tl.load(w_ptr + offs_d * W + k, mask=mask_d, other=0.0).to(tl.float32)
            sk = tl.sum(tl.where(offs_j[None, :] == S - (W - 1) + k, st.to(tl.float32), 0.0), axis=1)
            y += wk * sk
        if HAS_BIAS:
            y += bias
        if SILU:
            y = y * tl.sigmoid(y)
        if HAS_INDICES:
            y = tl.where(mask_s, y, 0.0)
        tl.store(out_ptr + x_base + t, y.to(out_ptr.dtype.element_ty), mask=mask_d)
        new = tl.where(offs_j[None, :] == S - 1, xt[:, None].to(st.dtype), st_next)
        tl.debug_barrier()  # every load of this step precedes the shift
        tl.store(s_base + offs_j[None, :], new, mask=mask_s[:, None] & (offs_j < S)[None, :])
        tl.debug_barrier()
