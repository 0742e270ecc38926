"""Triton kernels for h_t = a_t * h_{t-1} + x_t over ``[B, T, D]`` (channels contiguous).

Program (sequence, channel block) walks time with the ``[BLOCK_D]`` fp32 state in registers; each step reads
x_t and a_t and writes h_t, so the forward moves 3 values per element and the backward 5 (dh, a, h_{t-1} in;
dx, da out), the minimum for this recurrence. The backward reads h_{t-1} from the forward's output (in the input
dtype), as fla's HGRN does, instead of storing an fp32 copy.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._common import load_state_or_zeros, sequence_bounds


@triton.jit
def gated_linear_scan_fwd_kernel(
    x_ptr,
    a_ptr,
    h0_ptr,
    resets_ptr,
    cu_ptr,
    out_ptr,
    hT_ptr,
    T,
    DIM,
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
    h = load_state_or_zeros(h0_ptr, pid_s, DIM, offs_d, mask_d, HAS_H0, BLOCK_D)
    for t in range(bos, eos):
        off = t * DIM + offs_d
        x = tl.load(x_ptr + off, mask=mask_d, other=0.0).to(tl.float32)
        a = tl.load(a_ptr + off, mask=mask_d, other=0.0).to(tl.float32)
        if LOG_GATES:
            a = tl.exp(a)
        if HAS_RESETS:
            a = tl.where(tl.load(resets_ptr + t) != 0, 0.0, a)
        h = a * h + x
        tl.store(out_ptr + off, h.to(out_ptr.dtype.element_ty), mask=mask_d)
    if STORE_FINAL:
        tl.store(hT_ptr + pid_s * DIM + offs_d, h, mask=mask_d)


@triton.jit
def gated_linear_scan_bwd_kernel(
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
    BLOCK_D: tl.constexpr,
    LOG_GATES: tl.constexpr,
    HAS_H0: tl.constexpr,
    HAS_RESETS: tl.constexpr,
    VARLEN: tl.constexpr,
    HAS_DHT: tl.constexpr,
):
    # g = dL/dh_t:  g_t = dout_t + a_{t+1} g_{t+1};  dx_t = g_t;  da_t = g_t h_{t-1};  dh_0 = a_0 g_0
    pid_s = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    bos, eos = sequence_bounds(cu_ptr, pid_s, T, VARLEN)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    g = load_state_or_zeros(dhT_ptr, pid_s, DIM, offs_d, mask_d, HAS_DHT, BLOCK_D)
    h0 = load_state_or_zeros(h0_ptr, pid_s, DIM, offs_d, mask_d, HAS_H0, BLOCK_D)
    for i in range(0, eos - bos):
        t = eos - 1 - i
        off = t * DIM + offs_d
        g += tl.load(dout_ptr + off, mask=mask_d, other=0.0).to(tl.float32)
        a_raw = tl.load(a_ptr + off, mask=mask_d, other=0.0).to(tl.float32)
        if LOG_GATES:
            a = tl.exp(a_raw)
        else:
            a = a_raw
        h_prev = tl.load(out_ptr + off - DIM, mask=mask_d & (t > bos), other=0.0).to(tl.float32)
        h_prev = tl.where(t > bos, h_prev, h0)
        if HAS_RESETS:
            reset = tl.load(resets_ptr + t) != 0
            a = tl.where(reset, 0.0, a)
            h_prev = tl.where(reset, 0.0, h_prev)
        da = g * h_prev
        if LOG_GATES:
            da = da * a
        tl.store(dx_ptr + off, g.to(dx_ptr.dtype.element_ty), mask=mask_d)
        tl.store(da_ptr + off, da.to(da_ptr.dtype.element_ty), mask=mask_d)
        g = g * a
    if HAS_H0:
        tl.store(dh0_ptr + pid_s * DIM + offs_d, g, mask=mask_d)
