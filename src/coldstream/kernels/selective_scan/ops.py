"""Dispatch of the selective scan to the reference or the Triton kernels."""

from __future__ import annotations

import torch

from .naive import selective_scan_ref


def selective_scan_apply(
    backend, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, resets, cu_seqlens
) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "reference":
        return selective_scan_ref(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, resets, cu_seqlens
        )
    raise RuntimeError("selective_scan: the triton backend is not implemented yet; use backend='reference'")


def selective_state_update_triton(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus) -> torch.Tensor:
    raise RuntimeError("selective_state_update: the triton backend is not implemented yet; use backend='reference'")
