"""Gated diagonal linear recurrence h_t = a_t * h_{t-1} + x_t (HGRN, minGRU, LRU-style, convex GRU updates)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ...errors import InputError
from .._backend import resolve_backend
from .._checks import check_cu_seqlens, check_varlen, expect, expect_float
from .naive import gated_linear_scan_ref
from .ops import gated_linear_scan_apply, resolve_impl


class ScanOutput(NamedTuple):
    """``output [B, T, D]`` in x's dtype; ``final_state [S, D]`` fp32, or None unless asked for."""

    output: torch.Tensor
    final_state: torch.Tensor | None


def gated_linear_scan(
    x: torch.Tensor,
    a: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    resets: torch.Tensor | None = None,
    *,
    cu_seqlens: torch.Tensor | None = None,
    log_gates: bool = False,
    backend: str = "auto",
    impl: str = "auto",
) -> ScanOutput:
    """``h_t = a_t * h_{t-1} + x_t`` over time, fp32 state; returns ``ScanOutput(h, h_T)``.

    Shapes: x, a ``[B, T, D]`` (a holds log-gates when ``log_gates``); initial_state ``[S, D]``; ``resets [B, T]``
    bool (True: h_{t-1} := 0 before step t); ``cu_seqlens [S + 1]`` packs S sequences along T of a batch-1 input.
    The convex GRU update s_t = (1 - u_t) s_{t-1} + u_t h_t is ``gated_linear_scan(u * h, 1 - u)``.

    ``impl`` picks the Triton kernels: ``"fused_recurrent"`` (step by step), ``"chunk"`` (time tiles scanned in
    registers) or ``"auto"`` (fused_recurrent until a GPU measurement says otherwise). An explicit impl needs the
    Triton backend and never falls back to the reference: with ``backend="auto"`` it runs Triton or raises why not.
    """
    if x.dim() != 3:
        raise InputError(f"x must have shape [B, T, D], got {list(x.shape)}")
    batch, T, dim = x.shape
    expect("a", a, (batch, T, dim), "[B, T, D]")
    expect_float("x", x)
    expect_float("a", a)
    n_seq = check_varlen(batch, T, resets, cu_seqlens)
    if cu_seqlens is not None:
        check_cu_seqlens(cu_seqlens, T)
    expect("initial_state", initial_state, (n_seq, dim), "[S, D]")
    kernels = resolve_impl(impl)
    if impl != "auto" and backend == "reference":
        raise InputError(
            f"gated_linear_scan: impl={impl!r} selects Triton kernels but backend='reference' runs the "
            "PyTorch reference; pass impl='auto' with the reference backend"
        )
    be = resolve_backend("gated_linear_scan", "triton" if impl != "auto" else backend, [x, a, initial_state])

    out, final = gated_linear_scan_apply(
        be, x, a, initial_state, resets, cu_seqlens, log_gates, kernels, store_final=output_final_state
    )
    return ScanOutput(out, final if output_final_state else None)


__all__ = ["ScanOutput", "gated_linear_scan", "gated_linear_scan_ref"]
