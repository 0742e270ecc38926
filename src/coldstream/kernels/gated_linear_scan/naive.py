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
    h = torch.zeros(batch, dim, dtype=acc, device=x.device) if initial_state is None else initial_state.to(acc)
    hs = []
    for t in range(T):
        if resets is not None:
            h = h * (~resets[:, t]).to(acc)[:, None]
        h = gate[:, t] * h + x[:, t].to(acc)
        hs.append(h)
    out = torch.stack(hs, dim=1) if hs else x.to(acc)
    return out.to(x.dtype), h
