"""Dispatch of the causal conv to the reference or the Triton kernels."""

from __future__ import annotations

import torch

from .naive import causal_conv1d_ref


def causal_conv1d_apply(backend, x, weight, bias, initial_state, activation, resets, cu_seqlens):
    if backend == "reference":
        return causal_conv1d_ref(x, weight, bias, initial_state, activation, resets, cu_seqlens)
    raise RuntimeError("causal_conv1d: the triton backend is not implemented yet; use backend='reference'")


def causal_conv1d_update_triton(x, conv_state, weight, bias, activation) -> torch.Tensor:
    raise RuntimeError("causal_conv1d_update: the triton backend is not implemented yet; use backend='reference'")
