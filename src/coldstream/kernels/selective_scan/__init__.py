"""Mamba-1 (S6) selective scan along time, a drop-in for ``mamba_ssm.selective_scan_fn``, plus its streaming step."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ...errors import InputError
from .._backend import resolve_backend
from .._checks import check_cu_seqlens, check_varlen, expect, expect_float
from .naive import selective_scan_ref, selective_state_update_ref
from .ops import selective_scan_apply, selective_state_update_triton


class SelectiveScanOutput(NamedTuple):
    """``out [B, D, T]`` in the input dtype, ``last_state [S, D, N]`` fp32 (S = B, or the number of packed seqs)."""

    out: torch.Tensor
    last_state: torch.Tensor


def _check_scan(u, delta, A, B, C, D, z, delta_bias, initial_state, resets, cu_seqlens) -> None:
    if u.dim() != 3:
        raise InputError(f"u must have shape [B, D, T], got {list(u.shape)}")
    batch, dim, T = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise InputError(f"A must have shape [D, N] = [{dim}, N], got {list(A.shape)}")
    n_state = A.shape[1]
    expect("delta", delta, (batch, dim, T), "[B, D, T]")
    expect("z", z, (batch, dim, T), "[B, D, T]")
    expect("D", D, (dim,), "[D]")
    expect("delta_bias", delta_bias, (dim,), "[D]")
    for name, X in (("B", B), ("C", C)):
        if X.dim() == 3:
            expect(name, X, (batch, n_state, T), "[B, N, T]")
        elif X.dim() == 4:
            if dim % X.shape[1] != 0:
                raise InputError(f"{name}: groups ({X.shape[1]}) must divide D ({dim})")
            expect(name, X, (batch, X.shape[1], n_state, T), "[B, G, N, T]")
        else:
            raise InputError(f"{name} must have shape [B, N, T] or [B, G, N, T], got {list(X.shape)}")
    for name, t in (("u", u), ("delta", delta), ("z", z), ("B", B), ("C", C)):
        expect_float(name, t)
    n_seq = check_varlen(batch, T, resets, cu_seqlens)
    expect("initial_state", initial_state, (n_seq, dim, n_state), "[S, D, N]")


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    *,
    resets: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    max_seqlen: int | None = None,
    backend: str = "auto",
) -> torch.Tensor | SelectiveScanOutput:
    """Selective scan with mamba-ssm's ``selective_scan_fn`` signature and return convention.

    Shapes: u, delta, z ``[B, D, T]``; A ``[D, N]`` (fp32); B, C ``[B, N, T]`` or ``[B, G, N, T]``; D, delta_bias
    ``[D]``; initial_state ``[S, D, N]`` (S = B, or the number of packed sequences). ``resets [B, T]`` bool: a new
    sequence starts at t (the state entering t is zero). ``cu_seqlens [S + 1]``: sequences packed along T of a
    batch-1 input; ``max_seqlen`` (its longest sequence) spares the Triton path a host sync, e.g. under
    ``torch.compile`` or CUDA graphs. Returns ``out [B, D, T]`` in u's dtype, or
    ``SelectiveScanOutput(out, last_state)`` (a tuple, as mamba-ssm's ``(out, last_state)``) when
    ``return_last_state``; the state is fp32.
    """
    _check_scan(u, delta, A, B, C, D, z, delta_bias, initial_state, resets, cu_seqlens)
    if cu_seqlens is not None:  # without max_seqlen the longest sequence is read on the host anyway
        max_seqlen = check_cu_seqlens(cu_seqlens, u.shape[-1], max_seqlen, may_sync=max_seqlen is None)
    be = resolve_backend("selective_scan", backend, [u, delta, A, B, C, D, z, delta_bias, initial_state])

    out, last = selective_scan_apply(
        be, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, resets, cu_seqlens, max_seqlen
    )
    return SelectiveScanOutput(out, last) if return_last_state else out


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """One streaming step of the selective scan (mamba-ssm's ``selective_state_update``), state updated in place.

    Shapes: state ``[B, D, N]`` (fp32 recommended); x, dt, z ``[B, D]``; A ``[D, N]``; B, C ``[B, N]`` or
    ``[B, G, N]``; D, dt_bias ``[D]``. Returns ``out [B, D]`` in x's dtype. The Triton kernel uses one fixed launch
    configuration and allocates only the output, so it can be captured in a CUDA graph.
    """
    if state.dim() != 3:
        raise InputError(f"state must have shape [B, D, N], got {list(state.shape)}")
    batch, dim, n_state = state.shape
    expect("x", x, (batch, dim), "[B, D]")
    expect("dt", dt, (batch, dim), "[B, D]")
    expect("z", z, (batch, dim), "[B, D]")
    expect("A", A, (dim, n_state), "[D, N]")
    expect("D", D, (dim,), "[D]")
    expect("dt_bias", dt_bias, (dim,), "[D]")
    for name, X in (("B", B), ("C", C)):
        if X.dim() == 2:
            expect(name, X, (batch, n_state), "[B, N]")
        elif X.dim() == 3 and dim % X.shape[1] == 0:
            expect(name, X, (batch, X.shape[1], n_state), "[B, G, N]")
        else:
            raise InputError(f"{name} must have shape [B, N] or [B, G, N] with G dividing D, got {list(X.shape)}")
    be = resolve_backend("selective_state_update", backend, [state, x, dt, A, B, C, D, z, dt_bias])
    if be == "reference":
        return selective_state_update_ref(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)

    return selective_state_update_triton(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)


__all__ = [
    "SelectiveScanOutput",
    "selective_scan",
    "selective_scan_ref",
    "selective_state_update",
    "selective_state_update_ref",
]
