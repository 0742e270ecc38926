"""fp32 PyTorch reference for the gated diagonal linear recurrence h_t = a_t * h_{t-1} + x_t."""

from __future__ import annotations

import torch

from .._checks import acc_dtype


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
    if cu_seqlens is not None:
        outs, lasts = [], []
        bounds = cu_seqlens.tolist()
        for s in range(len(bounds) - 1):
            sl = slice(bounds[s], bounds[s + 1])
            o, last = gated_linear_scan_ref(
                x[:, sl], a[:, sl], None if initial_state is None else initial_state[s : s + 1], log_gates=log_gates
            )
            outs.append(o)
            lasts.append(last)
        return torch.cat(outs, dim=1), torch.cat(lasts, dim=0)
    acc = acc_dtype(x.dtype)
    batch, T, dim = x.shape
    gate = a.to(acc).exp() if log_gates else a.to(acc)
    h = torch.zeros(batch, dim, dtype=acc, device=x.device)
    if initial_state is not None:
        h = initial_state.to(acc, copy=True)  # never the caller's tensor: at T = 0 it is returned as the final state
    hs = []
    for t in range(T):
        if resets is not None:
            h = h * (~resets[:, t]).to(acc)[:, None]
        h = gate[:, t] * h + x[:, t].to(acc)
        hs.append(h)
    out = torch.stack(hs, dim=1) if hs else x.to(acc, copy=True)
    return out.to(x.dtype), h


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
    (times a_t for log-gates); dh_0 = a_0 g_0. Returns ``(dx, da, dinitial_state)`` in fp32."""
    if cu_seqlens is not None:
        bounds = cu_seqlens.tolist()
        parts = [
            gated_linear_scan_bwd_ref(
                dout[:, bounds[s] : bounds[s + 1]], None if dfinal is None else dfinal[s : s + 1],
                x[:, bounds[s] : bounds[s + 1]], a[:, bounds[s] : bounds[s + 1]],
                None if initial_state is None else initial_state[s : s + 1], None, None, log_gates,
            )
            for s in range(len(bounds) - 1)
        ]
        dh0 = torch.cat([p[2] for p in parts]) if initial_state is not None else None
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1), dh0
    acc = acc_dtype(x.dtype)
    batch, T, dim = x.shape
    gate = a.to(acc).exp() if log_gates else a.to(acc)
    keep = None if resets is None else (~resets).to(acc)[..., None]  # [B, T, 1]: 0 where h_{t-1} := 0
    if keep is not None:
        gate = gate * keep
    h0 = torch.zeros(batch, dim, dtype=acc, device=x.device) if initial_state is None else initial_state.to(acc)
    hs, h = [], h0
    for t in range(T):
        hs.append(h if keep is None else h * keep[:, t])  # h_{t-1}, zeroed by a reset before step t
        h = gate[:, t] * h + x[:, t].to(acc)
    g = torch.zeros(batch, dim, dtype=acc, device=x.device)
    if dfinal is not None:
        g = dfinal.to(acc, copy=True)  # never the caller's tensor: at T = 0 it is returned as the initial state's grad
    dx = torch.zeros(batch, T, dim, dtype=acc, device=x.device)
    da = torch.zeros_like(dx)
    for t in range(T - 1, -1, -1):
        g = g + dout[:, t].to(acc)
        dx[:, t] = g
        # d/d(log a) = a * d/da
        da[:, t] = g * hs[t] * (gate[:, t] if log_gates else 1.0)
        g = g * gate[:, t]
    return dx, da, g if initial_state is not None else None
