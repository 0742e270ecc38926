"""Mamba-1 (S6) selective scan along time, a drop-in for ``mamba_ssm.selective_scan_fn``, plus its streaming step."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ...errors import InputError
from .._backend import resolve_backend
from .._checks import check_cu_seqlens, check_varlen, expect, expect_float
from .naive import selective_scan_ref, selective_state_update_ref
from .ops import selective_scan_apply, selective_state_update_apply


class SelectiveScanOutput(NamedTuple):
    """``out [B, D, T]`` in the input dtype, ``last_state [S, D, N]`` fp32 (S = B, or the number of packed seqs)."""

    out: torch.Tensor
    last_state: torch.Tensor


def _check_scan(u, delta, A, B, C, D, z, delta_bias, initial_state, resets, cu_seqlens) -> None:
    if u.dim() != 3:
        raise InputError(f"u must have shape [B, D, T], got {list(u.shape)}")
    batch, dim, T = u.shape
    if A.is_complex():
        raise InputError("A: complex A (S4D-style complex states) is not supported; pass a real [D, N] A")
    if A.dim() != 2 or A.shape[0] != dim:
        raise InputError(f"A must have shape [D, N] = [{dim}, N], got {list(A.shape)}")
    n_state = A.shape[1]
    expect("delta", delta, (batch, dim, T), "[B, D, T]")
    expect("z", z, (batch, dim, T), "[B, D, T]")
    expect("D", D, (dim,), "[D]")
    expect("delta_bias", delta_bias, (dim,), "[D]")
    for name, X in (("B", B), ("C", C)):
        if X.dim() == 2:  # time-invariant, one row per channel (selective_scan_fn accepts it too)
            expect(name, X, (dim, n_state), "[D, N] (time-invariant)")
        elif X.dim() == 3:
            expect(name, X, (batch, n_state, T), "[B, N, T]")
        elif X.dim() == 4:
            if dim % X.shape[1] != 0:
                raise InputError(f"{name}: groups ({X.shape[1]}) must divide D ({dim})")
            expect(name, X, (batch, X.shape[1], n_state, T), "[B, G, N, T]")
        else:
            raise InputError(
                f"{name} must have shape [D, N] (time-invariant), [B, N, T] or [B, G, N, T], got {list(X.shape)}"
            )
        if X.is_complex():
            raise InputError(f"{name}: complex B/C (complex A) are not supported; pass real tensors")
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

    Shapes: u, delta, z ``[B, D, T]``; A ``[D, N]`` (fp32, real); B, C ``[B, N, T]``, ``[B, G, N, T]`` or
    time-invariant ``[D, N]`` (B and C may differ in form and group count); D, delta_bias ``[D]``; initial_state
    ``[S, D, N]`` (S = B, or the number of packed sequences). ``resets [B, T]`` bool: a new sequence starts at t
    (the state entering t is zero). ``cu_seqlens [S + 1]``: sequences packed along T of a batch-1 input;
    ``max_seqlen`` (its longest sequence) spares the Triton path a host sync, e.g. under ``torch.compile`` or CUDA
    graphs. Returns ``out [B, D, T]`` in u's dtype, or ``SelectiveScanOutput(out, last_state)`` (a tuple, as
    mamba-ssm's ``(out, last_state)``) when ``return_last_state``; the state is fp32.
    """
    _check_scan(u, delta, A, B, C, D, z, delta_bias, initial_state, resets, cu_seqlens)
    if cu_seqlens is not None:  # without max_seqlen the longest sequence is read on the host anyway
        max_seqlen = check_cu_seqlens(cu_seqlens, u.shape[-1], max_seqlen, may_sync=max_seqlen is None)
    be = resolve_backend("selective_scan", backend, [u, delta, A, B, C, D, z, delta_bias, initial_state])

    out, last = selective_scan_apply(
        be,
        u,
        delta,
        A,
        B,
        C,
        D,
        z,
        delta_bias,
        delta_softplus,
        initial_state,
        resets,
        cu_seqlens,
        max_seqlen,
        return_last_state,
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
    state_batch_indices: torch.Tensor | None = None,
    rounding_seed: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Streaming step(s) of the selective scan (mamba-ssm's ``selective_state_update``), state updated in place.

    One step: state ``[B, D, N]`` (fp32 recommended); x, dt, z ``[B, D]``; A ``[D, N]``; B, C ``[B, N]`` or
    ``[B, G, N]``; D, dt_bias ``[D]``; returns ``out [B, D]`` in x's dtype. L steps in one pass over the state: x, dt,
    z ``[B, D, L]`` and B, C ``[B, N, L]`` or ``[B, G, N, L]``; returns ``[B, D, L]``.

    ``state_batch_indices [B]`` (int, as in mamba-ssm) makes ``state`` a pool of slots ``[slots, D, N]``: row b steps
    slot ``state_batch_indices[b]`` and -1 marks a padding row (zero output, no slot touched); non-padding indices
    must be distinct. ``rounding_seed`` (an int64 tensor of one element, on the state's device) stores a bf16 state
    with stochastic rounding; change it between steps (e.g. ``seed += 1``, which a CUDA graph can capture).
    The Triton kernel uses one fixed launch configuration and allocates only the output, so it can be captured
    in a CUDA graph.
    """
    if state.dim() != 3:
        raise InputError(f"state must have shape [B, D, N], got {list(state.shape)}")
    if x.dim() not in (2, 3):
        raise InputError(f"x must have shape [B, D] (one step) or [B, D, L] (L steps), got {list(x.shape)}")
    batch, dim = x.shape[:2]
    n_state = state.shape[2]
    seq = tuple(x.shape[2:])  # () or (L,)
    if state_batch_indices is not None:
        if state_batch_indices.shape != (batch,) or state_batch_indices.is_floating_point():
            raise InputError(
                f"state_batch_indices must be an integer tensor of shape [B] = [{batch}], got "
                f"{state_batch_indices.dtype} {list(state_batch_indices.shape)}"
            )
        expect("state", state, (state.shape[0], dim, n_state), "[slots, D, N]")
    else:
        expect("state", state, (batch, dim, n_state), "[B, D, N]")
    if rounding_seed is not None:
        if state.dtype != torch.bfloat16 or rounding_seed.numel() != 1 or rounding_seed.is_floating_point():
            raise InputError(
                "rounding_seed (stochastic rounding of the stored state) needs a bf16 state and an integer tensor "
                f"of one element, got a {state.dtype} state and a {rounding_seed.dtype} seed of shape "
                f"{list(rounding_seed.shape)}"
            )
    dims = "[B, D]" if not seq else "[B, D, L]"
    expect("dt", dt, (batch, dim, *seq), dims)
    expect("z", z, (batch, dim, *seq), dims)
    expect("A", A, (dim, n_state), "[D, N]")
    expect("D", D, (dim,), "[D]")
    expect("dt_bias", dt_bias, (dim,), "[D]")
    for name, X in (("B", B), ("C", C)):
        if X.dim() == 2 + len(seq):
            expect(name, X, (batch, n_state, *seq), "[B, N]" if not seq else "[B, N, L]")
        elif X.dim() == 3 + len(seq) and dim % X.shape[1] == 0:
            expect(name, X, (batch, X.shape[1], n_state, *seq), "[B, G, N]" if not seq else "[B, G, N, L]")
        else:
            want = "[B, N] or [B, G, N]" if not seq else "[B, N, L] or [B, G, N, L]"
            raise InputError(f"{name} must have shape {want} with G dividing D, got {list(X.shape)}")
    be = resolve_backend(
        "selective_state_update", backend, [state, x, dt, A, B, C, D, z, dt_bias, state_batch_indices, rounding_seed]
    )
    return selective_state_update_apply(
        be, state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, rounding_seed
    )


__all__ = [
    "SelectiveScanOutput",
    "selective_scan",
    "selective_scan_ref",
    "selective_state_update",
    "selective_state_update_ref",
]
