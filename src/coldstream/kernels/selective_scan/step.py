"""Triton kernel for streaming steps of the selective scan (mamba-ssm's ``selective_state_update``).

One fixed launch configuration (never autotuned), no host synchronisation and no allocation besides the output,
so the step can be captured in a CUDA graph. Program (b, channel block) reads its ``[BLOCK_D, N]`` state once,
runs the L steps of x ``[B, D, L]`` in registers (fp32 arithmetic) and writes the state back once in its own dtype:
L steps per state pass is the only way under the single step's HBM floor. With ``HAS_INDICES`` row b steps slot
``indices[b]`` of a pool of states (-1: a padding row, zero output, no state read or written). With ``STOCHASTIC``
a bf16 state is stored with stochastic rounding (16 random bits from Philox under ``seed``), so a long stream
kept in bf16 does not drift the way round-to-nearest does.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def selective_state_update_kernel(
    state_ptr,
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    out_ptr,
    idx_ptr,
    seed_ptr,
    DIM,
    G,
    L,
    N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_INDICES: tl.constexpr,
    STOCHASTIC: tl.constexpr,
):
    # state [slots, D, N]; x, dt, z, out [B, D, L]; A [D, N]; B, C [B, G, N, L]
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    offs_n = tl.arange(0, N)
    slot = pid_b
    mask_s = mask_d  # the state row exists (not a padding row)
    if HAS_INDICES:
        slot = tl.load(idx_ptr + pid_b).to(tl.int64)
        mask_s = mask_d & (slot >= 0)
        slot = tl.maximum(slot, 0)
    group = offs_d // (DIM // G)
    x_base = (pid_b * DIM + offs_d) * L
    s_off = slot * DIM * N + offs_d.to(tl.int64)[:, None] * N + offs_n[None, :]
    bc_base = ((pid_b * G + group.to(tl.int64))[:, None] * N + offs_n[None, :]) * L
    m2 = mask_d[:, None]

    h = tl.load(state_ptr + s_off, mask=mask_s[:, None], other=0.0).to(tl.float32)
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=m2, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    for t in range(0, L):
        x = tl.load(x_ptr + x_base + t, mask=mask_d, other=0.0).to(tl.float32)
        dt = tl.load(dt_ptr + x_base + t, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias
        if SOFTPLUS:
            dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
        Bv = tl.load(B_ptr + bc_base + t, mask=m2, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_base + t, mask=m2, other=0.0).to(tl.float32)
        h = tl.exp(dt[:, None] * A) * h + (dt * x)[:, None] * Bv
        y = tl.sum(h * Cv, axis=1)
        if HAS_D:
            y += x * Dv
        if HAS_Z:
            zz = tl.load(z_ptr + x_base + t, mask=mask_d, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        if HAS_INDICES:
            y = tl.where(mask_s, y, 0.0)
        tl.store(out_ptr + x_base + t, y.to(out_ptr.dtype.element_ty), mask=mask_d)
    if STOCHASTIC:
        # bf16 keeps the top 16 bits of an fp32: add 16 uniform random bits below them, then truncate
        rnd = (tl.randint(tl.load(seed_ptr), s_off.to(tl.uint32)) & 0xFFFF).to(tl.uint32)
        bits = h.to(tl.uint32, bitcast=True) + rnd
        h = ((bits >> 16) << 16).to(tl.float32, bitcast=True)
    tl.store(state_ptr + s_off, h.to(state_ptr.dtype.element_ty), mask=mask_s[:, None])
