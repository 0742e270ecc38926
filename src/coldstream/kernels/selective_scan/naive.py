"""fp32 PyTorch references for the Mamba-1 (S6) selective scan and its single streaming step.

These are the test oracles and the CPU runtime path. They follow mamba-ssm's ``selective_scan_ref`` convention
(channels before time) and add ``initial_state``, per-sequence ``resets`` and packed ``cu_seqlens``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import acc_dtype


def _expand_bc(X: torch.Tensor, dim: int) -> torch.Tensor:
    """``[B, N, T]`` -> ``[B, 1, N, T]``; ``[B, G, N, T]`` -> ``[B, dim, N, T]`` (a group serves dim // G channels)."""
    if X.dim() == 3:
        return X[:, None]
    return X.repeat_interleave(dim // X.shape[1], dim=1)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    resets: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective scan, fp32 (fp64 for fp64 inputs) arithmetic; returns ``(out [B, D, T], last_state [S, D, N])``.

    Shapes: u, delta, z ``[B, D, T]``; A ``[D, N]``; B, C ``[B, N, T]`` or ``[B, G, N, T]``; D, delta_bias ``[D]``;
    initial_state ``[S, D, N]``; resets ``[B, T]`` bool (True: the state entering step t is zero);
    cu_seqlens ``[S + 1]`` (batch must be 1; S = B otherwise). Recurrence, per channel d and state n:

        dt_t = softplus(delta_t + delta_bias)            (softplus only if delta_softplus)
        h_t  = exp(dt_t * A) * h_{t-1} + dt_t * u_t * B_t
        y_t  = <h_t, C_t> + D * u_t ;  out_t = y_t * silu(z_t)
    """
    if cu_seqlens is not None:
        outs, lasts = [], []
        bounds = cu_seqlens.tolist()
        for s in range(len(bounds) - 1):
            sl = slice(bounds[s], bounds[s + 1])
            Bs = B[..., sl]
            Cs = C[..., sl]
            o, last = selective_scan_ref(
                u[..., sl], delta[..., sl], A, Bs, Cs, D, None if z is None else z[..., sl], delta_bias,
                delta_softplus, None if initial_state is None else initial_state[s : s + 1],
            )
            outs.append(o)
            lasts.append(last)
        return torch.cat(outs, dim=-1), torch.cat(lasts, dim=0)

    dtype_in = u.dtype
    acc = acc_dtype(dtype_in)
    batch, dim, T = u.shape
    n_state = A.shape[1]
    u32, delta32, A32 = u.to(acc), delta.to(acc), A.to(acc)
    if delta_bias is not None:
        delta32 = delta32 + delta_bias.to(acc)[:, None]
    if delta_softplus:
        delta32 = F.softplus(delta32)
    Bx = _expand_bc(B.to(acc), dim)
    Cx = _expand_bc(C.to(acc), dim)
    decay = torch.exp(torch.einsum("bdl,dn->bdln", delta32, A32))  # [B, D, T, N]
    drive = (delta32 * u32)[:, :, :, None] * Bx.transpose(-1, -2)  # [B, D, T, N]
    Ct = Cx.transpose(-1, -2)  # [B, 1|D, T, N]
    h = torch.zeros(batch, dim, n_state, dtype=acc, device=u.device)
    if initial_state is not None:
        h = initial_state.to(acc, copy=True)  # never the caller's tensor: at T = 0 it is returned as the last state
    ys = []
    for t in range(T):
        if resets is not None:
            h = h * (~resets[:, t]).to(acc)[:, None, None]
        h = decay[:, :, t] * h + drive[:, :, t]
        ys.append((h * Ct[:, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u32.new_zeros(batch, dim, 0)  # [B, D, T]
    if D is not None:
        y = y + u32 * D.to(acc)[:, None]
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(dtype_in), h


def selective_state_update_ref(
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
) -> torch.Tensor:
    """One step of the selective scan; updates ``state [B, D, N]`` in place and returns ``out [B, D]``.

    Shapes: x, dt, z ``[B, D]``; A ``[D, N]``; B, C ``[B, N]`` or ``[B, G, N]``; D, dt_bias ``[D]``.
    """
    acc = acc_dtype(x.dtype)
    dim = x.shape[1]
    dt32 = dt.to(acc)
    if dt_bias is not None:
        dt32 = dt32 + dt_bias.to(acc)
    if dt_softplus:
        dt32 = F.softplus(dt32)
    Bx = B.to(acc) if B.dim() == 2 else B.to(acc).repeat_interleave(dim // B.shape[1], dim=1)
    Cx = C.to(acc) if C.dim() == 2 else C.to(acc).repeat_interleave(dim // C.shape[1], dim=1)
    if Bx.dim() == 2:
        Bx, Cx = Bx[:, None], Cx[:, None]
    h = state.to(acc)
    h = torch.exp(dt32[..., None] * A.to(acc)) * h + (dt32 * x.to(acc))[..., None] * Bx
    state.copy_(h.to(state.dtype))
    y = (h * Cx).sum(-1)
    if D is not None:
        y = y + x.to(acc) * D.to(acc)
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(x.dtype)


def selective_scan_bwd_ref(
    dout: torch.Tensor,
    dlast: torch.Tensor | None,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    initial_state: torch.Tensor | None,
    resets: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
) -> list[torch.Tensor | None]:
    """Analytic backward of :func:`selective_scan_ref` (B, C in ``[B, G, N, T]``), fp32; mirrors the Triton kernel.

    With g_t = dL/dh_t (g_t = gy_t C_t + exp(dt_{t+1} A) g_{t+1}, g_T = dlast) and q_t = g_t * exp(dt_t A) h_{t-1}:
    dA = sum_t q_t dt_t; d dt_t = <q_t, A> + u_t <g_t, B_t>; du_t = dt_t <g_t, B_t> + D gy_t; dB_t = sum_d g_t dt_t
    u_t; dC_t = sum_d gy_t h_t; dh_0 = exp(dt_0 A) g_0. Returns
    ``[du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state]`` (None for absent inputs).
    """
    if cu_seqlens is not None:
        bounds = cu_seqlens.tolist()
        parts = []
        for s in range(len(bounds) - 1):
            sl = slice(bounds[s], bounds[s + 1])
            parts.append(selective_scan_bwd_ref(
                dout[..., sl], None if dlast is None else dlast[s : s + 1], u[..., sl], delta[..., sl], A,
                B[..., sl], C[..., sl], D, None if z is None else z[..., sl], delta_bias, delta_softplus,
                None if initial_state is None else initial_state[s : s + 1], None, None,
            ))
        cat_t = [0, 1, 3, 4, 6]
        out: list[torch.Tensor | None] = []
        for i in range(9):
            vals = [p[i] for p in parts]
            if vals[0] is None:
                out.append(None)
            elif i in cat_t:
                out.append(torch.cat(vals, dim=-1))
            elif i == 8:
                out.append(torch.cat(vals, dim=0))
            else:
                out.append(torch.stack(vals).sum(0))
        return out

    acc = acc_dtype(u.dtype)
    batch, dim, T = u.shape
    n_state = A.shape[1]
    groups = B.shape[1]
    u32, A32 = u.to(acc), A.to(acc)
    dt_raw = delta.to(acc)
    if delta_bias is not None:
        dt_raw = dt_raw + delta_bias.to(acc)[:, None]
    dt = F.softplus(dt_raw) if delta_softplus else dt_raw
    Bx = B.to(acc).repeat_interleave(dim // groups, dim=1)  # [B, D, N, T]
    Cx = C.to(acc).repeat_interleave(dim // groups, dim=1)
    decay = torch.exp(dt[:, :, None, :] * A32[None, :, :, None])  # [B, D, N, T]
    if resets is not None:
        decay = decay * (~resets).to(acc)[:, None, None, :]
    drive = (dt * u32)[:, :, None, :] * Bx
    h = torch.zeros(batch, dim, n_state, dtype=acc, device=u.device)
    if initial_state is not None:
        h = initial_state.to(acc)
    hs = []
    for t in range(T):
        h = decay[..., t] * h + drive[..., t]
        hs.append(h)
    H = torch.stack(hs, dim=-1) if hs else drive  # [B, D, N, T]
    y = (H * Cx).sum(2)
    if D is not None:
        y = y + u32 * D.to(acc)[:, None]
    dout32 = dout.to(acc)
    dz = None
    if z is not None:
        z32 = z.to(acc)
        sz = torch.sigmoid(z32)
        dz = dout32 * y * sz * (1 + z32 * (1 - sz))
        gy = dout32 * z32 * sz
    else:
        gy = dout32
    g = torch.zeros(batch, dim, n_state, dtype=acc, device=u.device)
    if dlast is not None:
        g = dlast.to(acc, copy=True)  # never the caller's tensor: at T = 0 it is returned as the initial state's grad
    gs = [None] * T
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            g = g * decay[..., t + 1]
        g = g + gy[:, :, None, t] * Cx[..., t]
        gs[t] = g
    if T > 0:
        Gm = torch.stack(gs, dim=-1)
        dh0 = decay[..., 0] * Gm[..., 0]
    else:
        Gm = torch.zeros_like(H)
        dh0 = g
    q = Gm * (H - drive)
    dA = (q * dt[:, :, None, :]).sum((0, 3))
    gB = (Gm * Bx).sum(2)
    ddt = (q * A32[None, :, :, None]).sum(2) + u32 * gB
    du = dt * gB
    dD = None
    if D is not None:
        du = du + gy * D.to(acc)[:, None]
        dD = (gy * u32).sum((0, 2))
    dB = (Gm * (dt * u32)[:, :, None, :]).reshape(batch, groups, dim // groups, n_state, T).sum(2)
    dC = (gy[:, :, None, :] * H).reshape(batch, groups, dim // groups, n_state, T).sum(2)
    if delta_softplus:
        ddt = ddt * torch.sigmoid(dt_raw)
    dbias = ddt.sum((0, 2)) if delta_bias is not None else None
    return [du, ddt, dA, dB, dC, dD, dz, dbias, dh0 if initial_state is not None else None]
