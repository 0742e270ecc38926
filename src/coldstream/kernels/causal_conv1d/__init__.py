"""Depthwise causal conv1d (width <= 8) with state carry, and its single streaming step."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ...errors import InputError
from .._backend import resolve_backend
from .._checks import check_cu_seqlens, check_varlen, expect, expect_float
from .naive import causal_conv1d_ref, causal_conv1d_update_ref
from .ops import MAX_WIDTH, causal_conv1d_apply, causal_conv1d_update_apply


class CausalConv1dOutput(NamedTuple):
    """``output [B, D, T]`` and ``final_state [S, D, W - 1]``, both in x's dtype."""

    output: torch.Tensor
    final_state: torch.Tensor


def _check_activation(activation: str | None) -> None:
    if activation not in (None, "silu", "swish"):
        raise InputError(f"activation must be None or 'silu', got {activation!r}")


def _check_weight(weight: torch.Tensor, dim: int) -> None:
    if weight.dim() != 2 or weight.shape[0] != dim or not 1 <= weight.shape[1] <= MAX_WIDTH:
        raise InputError(
            f"weight must have shape [D, W] = [{dim}, W] with 1 <= W <= {MAX_WIDTH}, got {list(weight.shape)}"
        )


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    activation: str | None = "silu",
    return_final_state: bool = False,
    *,
    resets: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor | CausalConv1dOutput:
    """Depthwise causal conv over time: ``out[b, d, t] = act(bias[d] + sum_k weight[d, k] x[b, d, t - W + 1 + k])``.

    Shapes: x ``[B, D, T]``; weight ``[D, W]`` with W <= 8; bias ``[D]``; initial_state ``[S, D, W - 1]`` (the
    inputs before t = 0); ``resets [B, T]`` bool (no window reaches before a reset); ``cu_seqlens [S + 1]``
    (batch-1 packed sequences). Returns ``out`` in x's dtype, or ``CausalConv1dOutput(out, final_state)``.
    """
    _check_activation(activation)
    if x.dim() != 3:
        raise InputError(f"x must have shape [B, D, T], got {list(x.shape)}")
    batch, dim, T = x.shape
    _check_weight(weight, dim)
    width = weight.shape[1]
    expect("bias", bias, (dim,), "[D]")
    expect_float("x", x)
    n_seq = check_varlen(batch, T, resets, cu_seqlens)
    if cu_seqlens is not None:
        check_cu_seqlens(cu_seqlens, T)
    expect("initial_state", initial_state, (n_seq, dim, width - 1), "[S, D, W - 1]")
    act = "silu" if activation in ("silu", "swish") else None
    be = resolve_backend("causal_conv1d", backend, [x, weight, bias, initial_state])
    if T == 0:  # nothing to convolve: the state passes through
        out = x.new_empty(batch, dim, 0)
        final = x.new_zeros(n_seq, dim, width - 1) if initial_state is None else initial_state.clone()
        return CausalConv1dOutput(out, final) if return_final_state else out

    out, final = causal_conv1d_apply(be, x, weight, bias, initial_state, act, resets, cu_seqlens)
    return CausalConv1dOutput(out, final) if return_final_state else out


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    *,
    conv_state_indices: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Streaming step(s) (Dao's ``causal_conv1d_update``): ``conv_state`` is shifted left in place.

    Shapes: x ``[B, D]`` or ``[B, D, L]``; conv_state ``[B, D, S]`` with S >= W - 1 (the last S inputs); weight
    ``[D, W]``; bias ``[D]``. Returns the output with x's shape and dtype. One fixed launch configuration, so it
    is safe to capture in a CUDA graph.

    ``conv_state_indices [B]`` (int, as in causal-conv1d) makes ``conv_state`` a pool of slots ``[slots, D, S]``:
    row b steps slot ``conv_state_indices[b]``, and -1 marks a padding row (output zeros, no slot touched), so a
    captured graph can serve whichever streams are active. Non-padding indices must be distinct.
    """
    _check_activation(activation)
    if x.dim() not in (2, 3):
        raise InputError(f"x must have shape [B, D] or [B, D, L], got {list(x.shape)}")
    batch, dim = x.shape[:2]
    _check_weight(weight, dim)
    rows = batch
    if conv_state_indices is not None:
        if conv_state_indices.shape != (batch,) or conv_state_indices.is_floating_point():
            raise InputError(
                f"conv_state_indices must be an integer tensor of shape [B] = [{batch}], got "
                f"{conv_state_indices.dtype} {list(conv_state_indices.shape)}"
            )
        rows = conv_state.shape[0] if conv_state.dim() == 3 else -1
    if conv_state.dim() != 3 or conv_state.shape[:2] != (rows, dim) or conv_state.shape[2] < weight.shape[1] - 1:
        want = "[slots" if conv_state_indices is not None else f"[B = {batch}"
        raise InputError(
            f"conv_state must have shape {want}, D = {dim}, S >= W - 1 = {weight.shape[1] - 1}], "
            f"got {list(conv_state.shape)}"
        )
    expect("bias", bias, (dim,), "[D]")
    act = "silu" if activation in ("silu", "swish") else None
    be = resolve_backend("causal_conv1d_update", backend, [x, conv_state, weight, bias])
    if be == "triton" and conv_state.shape[2] == 0:
        raise InputError(
            "causal_conv1d_update: backend='triton' needs conv_state with at least one column (a width-1 "
            "conv carries no state: use backend='reference')"
        )
    return causal_conv1d_update_apply(be, x, conv_state, weight, bias, act, conv_state_indices)


__all__ = [
    "CausalConv1dOutput",
    "causal_conv1d",
    "causal_conv1d_ref",
    "causal_conv1d_update",
    "causal_conv1d_update_ref",
]
