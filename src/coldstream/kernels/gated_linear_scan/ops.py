"""Dispatch of the gated linear scan to the reference or the Triton kernels."""

from __future__ import annotations

from .naive import gated_linear_scan_ref


def gated_linear_scan_apply(backend, x, a, initial_state, resets, cu_seqlens, log_gates):
    if backend == "reference":
        return gated_linear_scan_ref(x, a, initial_state, resets, cu_seqlens, log_gates)
    raise RuntimeError("gated_linear_scan: the triton backend is not implemented yet; use backend='reference'")
