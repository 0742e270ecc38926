"""fp32 PyTorch reference for the gated diagonal linear recurrence h_t = a_t * h_{t-1} + x_t."""

from __future__ import annotations

import torch

from .._checks import acc_dtype, entering_states, packed_steps


def gated_linear_scan_ref(
    x: torch.Tensor,
    a: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    resets: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    log_gates: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = a_t * h_{t-1} + x_t`` over ``[B, T, D]``; returns ``(h [B, T, D] in x.dtype, h_T [S, D] fp32)``.

    ``log_gates``: ``a`` holds log a_t. ``initial_state [S, D]``; ``resets [B, T]`` bool (True: h_{t-1} := 0);
    ``cu_seqlens [S + 1]`` packs S sequences along T of a batch-1 input.
    """
    acc = acc_dtype(x.dtype)
    batch, T, dim = x.shape
    gate = a.to(acc).exp() if log_gates else a.to(acc)
    _, hs, h, _ = _recurrence(x, gate, initial_state, resets, cu_seqlens, acc)
    out = torch.stack(hs, dim=1) if hs else x.to(acc, copy=True)
    if cu_seqlens is not None:  # each sequence's state after its last step (an empty one keeps its initial state)
        steps = packed_steps(cu_seqlens, T)
        h = out.new_zeros(steps.nonempty.shape[0], dim) if initial_state is None else initial_state.to(acc, copy=True)
        if T > 0:
            h = torch.where(steps.nonempty[:, None], out[0, steps.end], h)
    return out.to(x.dtype), h


def _recurrence(x, gate, initial_state, resets, cu_seqlens, acc):
    """Runs h_t = gate_t * h_{t-1} + x_t. Returns ``(prev, hs, h, starts)``: per step the state it starts from (after
    a reset or a packed sequence's start) and the state after it, the last state (a copy of the initial one at
    T = 0, never the caller's tensor), and the start mask from :func:`entering_states`."""
    batch, T, dim = x.shape
    starts, entering = entering_states(batch, T, (dim,), initial_state, resets, cu_seqlens, acc, x.device)
    h = torch.zeros(batch, dim, dtype=acc, device=x.device)
    if initial_state is not None and cu_seqlens is None:
        h = initial_state.to(acc, copy=True)
    prev, hs = [], []
    for t in range(T):
        if starts is not None:
            h = torch.where(starts[:, t, None], entering[:, t], h)
        prev.append(h)
        h = gate[:, t] * h + x[:, t].to(acc)
        hs.append(h)
    return prev, hs, h, starts


def gated_linear_scan_bwd_ref(
    dout: torch.Tensor,
    dfinal: torch.Tensor | None,
    x: torch.Tensor,
    a: torch.Tensor,
    initial_state: torch.Tensor | None,
    resets: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    log_gates: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Analytic backward: g_t = dout_t + a_{t+1} g_{t+1} (g_T = dfinal); dx_t = g_t; da_t = g_t h_{t-1}
    (times a_t for log-gates); dh_0 = a_0 g_0. Where a sequence starts (a reset, a packed sequence), a_t g_t goes to
    the state entering it (nowhere after a reset; the packed sequence's initial state) instead of to g_{t-1}.
    Traceable (no host sync) with cu_seqlens too. Returns ``(dx, da, dinitial_state)`` in fp32."""
    acc = acc_dtype(x.dtype)
    batch, T, dim = x.shape
    gate = a.to(acc).exp() if log_gates else a.to(acc)
    prev, _, _, starts = _recurrence(x, gate, initial_state, resets, cu_seqlens, acc)  # h_{t-1} as step t saw it
    g = torch.zeros(batch, dim, dtype=acc, device=x.device)
    if dfinal is not None and cu_seqlens is None:
        g = dfinal.to(acc, copy=True)  # never the caller's tensor: at T = 0 it is returned as the initial state's grad
    dlast = None  # packed: each sequence's d final_state enters at its last step
    if dfinal is not None and cu_seqlens is not None:
        steps = packed_steps(cu_seqlens, T)
        dlast = torch.where(steps.last[:, None], dfinal.to(acc)[steps.seq], 0.0)[None]
    dx = torch.zeros(batch, T, dim, dtype=acc, device=x.device)
    da = torch.zeros_like(dx)
    dentering = torch.zeros_like(dx)
    for t in range(T - 1, -1, -1):
        g = g + dout[:, t].to(acc)
        if dlast is not None:
            g = g + dlast[:, t]
        dx[:, t] = g
        # d/d(log a) = a * d/da
        da[:, t] = g * prev[t] * (gate[:, t] if log_gates else 1.0)
        g = g * gate[:, t]  # d h_{t-1}, or d of the state entering a sequence that starts at t
        if starts is not None:
            dentering[:, t] = torch.where(starts[:, t, None], g, 0.0)
            g = torch.where(starts[:, t, None], 0.0, g)
    if initial_state is None:
        return dx, da, None
    if cu_seqlens is None:
        return dx, da, g
    steps = packed_steps(cu_seqlens, T)
    dh0 = torch.zeros(steps.nonempty.shape[0], dim, dtype=acc, device=x.device).index_add(0, steps.seq, dentering[0])
    if dfinal is not None:  # an empty sequence hands its state straight through
        dh0 = torch.where(steps.nonempty[:, None], dh0, dfinal.to(acc))
    return dx, da, dh0
