"""Triton kernel for one streaming step of the selective scan (mamba-ssm's ``selective_state_update``).

One fixed launch configuration (never autotuned), no host synchronisation and no allocation besides the output,
so the step can be captured in a CUDA graph. Program (b, channel block); the state is read and written in place
in its own dtype, the arithmetic is fp32.
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
    DIM,
    G,
    N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
):
    # state [B, D, N]; x, dt, z, out [B, D]; A [D, N]; B, C [B, G, N]
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < DIM
    offs_n = tl.arange(0, N)
    group = offs_d // (DIM // G)
    x_off = pid_b * DIM + offs_d
    s_off = pid_b * DIM * N + offs_d.to(tl.int64)[:, None] * N + offs_n[None, :]
    bc_off = (pid_b * G + group.to(tl.int64))[:, None] * N + offs_n[None, :]
    m2 = mask_d[:, None]

    h = tl.load(state_ptr + s_off, mask=m2, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + x_off, mask=mask_d, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + x_off, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=m2, other=0.0).to(tl.float32)
    Bv = tl.load(B_ptr + bc_off, mask=m2, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + bc_off, mask=m2, other=0.0).to(tl.float32)
    h = tl.exp(dt[:, None] * A) * h + (dt * x)[:, None] * Bv
    tl.store(state_ptr + s_off, h.to(state_ptr.dtype.element_ty), mask=m2)
    y = tl.sum(h * Cv, axis=1)
    if HAS_D:
        y += x * tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_Z:
        zz = tl.load(z_ptr + x_off, mask=mask_d, other=0.0).to(tl.float32)
        y = y * zz * tl.sigmoid(zz)
    tl.store(out_ptr + x_off, y.to(out_ptr.dtype.element_ty), mask=mask_d)
