"""Prologue pieces shared by the ``fused_recurrent`` and ``chunk`` kernels (inlined by Triton)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def sequence_bounds(cu_ptr, pid_s, T, VARLEN: tl.constexpr):
    """Rows ``[bos, eos)`` of sequence ``pid_s`` (int64) in the flattened ``[rows, D]`` layout: ``cu_seqlens``
    bounds for packed sequences, else ``T`` rows per sequence."""
    if VARLEN:
        bos = tl.load(cu_ptr + pid_s).to(tl.int64)
        eos = tl.load(cu_ptr + pid_s + 1).to(tl.int64)
    else:
        bos = pid_s * T
        eos = bos + T
    return bos, eos


@triton.jit
def load_state_or_zeros(ptr, pid_s, DIM, offs_d, mask_d, PRESENT: tl.constexpr, BLOCK_D: tl.constexpr):
    """fp32 ``[BLOCK_D]`` slice of the per-sequence ``[S, D]`` tensor at ``ptr`` (an initial state or the gradient
    of the final state), or zeros when the caller passed none."""
    if PRESENT:
        v = tl.load(ptr + pid_s * DIM + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    else:
        v = tl.zeros([BLOCK_D], dtype=tl.float32)
    return v
