"""fp32 PyTorch references for the Mamba-1 (S6) selective scan and its single streaming step.

These are the test oracles and the CPU runtime path. They follow mamba-ssm's ``selective_scan_ref`` convention
(channels before time) and add ``initial_state``, per-sequence ``resets`` and packed ``cu_seqlens``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import acc_dtype, entering_states, packed_steps
from .._pool import gather_rows, mask_rows, scatter_rows


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
    starts, entering = entering_states(batch, T, (dim, n_state), initial_state, resets, cu_seqlens, acc, u.device)
    h = torch.zeros(batch, dim, n_state, dtype=acc, device=u.device)
    if initial_state is not None and cu_seqlens is None:
        h = initial_state.to(acc, copy=True)  # never the caller's tensor: at T = 0 it is returned as the last state
    ys, hs = [], []
    for t in range(T):
        if starts is not None:
            h = torch.where(starts[:, t, None, None], entering[:, t], h)
        h = decay[:, :, t] * h + drive[:, :, t]
        ys.append((h * Ct[:, :, t]).sum(-1))
        if cu_seqlens is not None:  # kept only to read each packed sequence's last state
            hs.append(h)
    y = torch.stack(ys, dim=-1) if ys else u32.new_zeros(batch, dim, 0)  # [B, D, T]
    if cu_seqlens is not None:  # each sequence's state after its last step (an empty one keeps its initial state)
        steps = packed_steps(cu_seqlens, T)
        h = h.new_zeros(steps.nonempty.shape[0], dim, n_state)
        if initial_state is not None:
            h = initial_state.to(acc, copy=True)
        if T > 0:
            h = torch.where(steps.nonempty[:, None, None], torch.stack(hs)[steps.end, 0], h)
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
    state_batch_indices: torch.Tensor | None = None,
    rounding_seed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Streaming step(s) of the selective scan; updates ``state [B, D, N]`` in place and returns ``out``.

    One step: x, dt, z, out ``[B, D]``; B, C ``[B, N]`` or ``[B, G, N]``. L steps: x, dt, z, out ``[B, D, L]``; B, C
    ``[B, N, L]`` or ``[B, G, N, L]``. A ``[D, N]``; D, dt_bias ``[D]``. ``state_batch_indices [B]`` makes ``state``
    a pool ``[slots, D, N]`` (row b steps slot ``state_batch_indices[b]``; -1: padding row, zero output).
    ``rounding_seed`` (an int64 tensor of one element) stores a bf16 state with stochastic rounding.
    """
    if state_batch_indices is not None:
        rows, valid = gather_rows(state, state_batch_indices)
        out = selective_state_update_ref(rows, x, dt, A, B, C, D, z, dt_bias, dt_softplus, None, rounding_seed)
        scatter_rows(state, state_batch_indices, rows)
        return mask_rows(out, valid)
    acc = acc_dtype(x.dtype)
    dim = x.shape[1]
    steps = x.dim() == 3
    if not steps:  # one step: a sequence of one
        x, dt = x[..., None], dt[..., None]
        z = None if z is None else z[..., None]
        B, C = B[..., None], C[..., None]
    dt32 = dt.to(acc)
    if dt_bias is not None:
        dt32 = dt32 + dt_bias.to(acc)[:, None]
    if dt_softplus:
        dt32 = F.softplus(dt32)

    def per_channel(X):  # [B, N, L] or [B, G, N, L] -> [B, D, N, L]
        X = X.to(acc)
        return X[:, None] if X.dim() == 3 else X.repeat_interleave(dim // X.shape[1], dim=1)

    Bx, Cx = per_channel(B), per_channel(C)
    h = state.to(acc)
    ys = []
    for t in range(x.shape[-1]):
        h = torch.exp(dt32[..., t, None] * A.to(acc)) * h + (dt32[..., t] * x[..., t].to(acc))[..., None] * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + x.to(acc) * D.to(acc)[:, None]
    if z is not None:
        y = y * F.silu(z.to(acc))
    if rounding_seed is not None:
        h = stochastic_round_bf16(h.float(), rounding_seed)
    state.copy_(h.to(state.dtype))
    y = y.to(x.dtype)
    return y if steps else y[..., 0]


def stochastic_round_bf16(h: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """fp32 ``h`` rounded to a bf16 value at random, up or down in proportion to its distance from each (unbiased):
    16 pseudo-random bits (a hash of the element's index and ``seed``) added below the bits bf16 keeps, then
    truncated. The Triton step draws its bits from Philox instead; both are unbiased, neither matches the other."""
    offsets = torch.arange(h.numel(), device=h.device, dtype=torch.int64).view(h.shape)
    r = offsets * 0x9E3779B1 + seed.to(torch.int64).reshape(()) * 0x85EBCA77
    r = (r ^ (r >> 15)) * 0x2C1B3C6D
    r = (r ^ (r >> 12)) * 0x297A2D39
    rnd = ((r ^ (r >> 15)) & 0xFFFF).to(torch.int32)
    bits = (h.contiguous().view(torch.int32) + rnd) & -65536  # -65536 = 0xFFFF0000: keep sign, exponent, 7 bits
    return bits.view(torch.float32)


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
    u_t; dC_t = sum_d gy_t h_t; dh_0 = exp(dt_0 A) g_0. Where a sequence starts (a reset, a packed sequence) the
    gradient exp(dt_t A) g_t goes to the state entering it (nowhere after a reset; the packed sequence's initial
    state) instead of to g_{t-1}. Traceable (no host sync) with cu_seqlens too. Returns
    ``[du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state]`` (None for absent inputs).
    """
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
    drive = (dt * u32)[:, :, None, :] * Bx
    starts, entering = entering_states(batch, T, (dim, n_state), initial_state, resets, cu_seqlens, acc, u.device)
    h = torch.zeros(batch, dim, n_state, dtype=acc, device=u.device)
    if initial_state is not None and cu_seqlens is None:
        h = initial_state.to(acc)
    hs = []
    for t in range(T):
        if starts is not None:
            h = torch.where(starts[:, t, None, None], entering[:, t], h)
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
    carry = torch.zeros(batch, dim, n_state, dtype=acc, device=u.device)  # dL/dh_t from step t + 1 on
    if dlast is not None and cu_seqlens is None:
        carry = dlast.to(acc, copy=True)  # never the caller's tensor: at T = 0 it is the initial state's gradient
    steps = packed_steps(cu_seqlens, T) if cu_seqlens is not None else None
    dlast_at = None  # packed: each sequence's d last_state enters at its last step
    if dlast is not None and steps is not None:
        dlast_at = torch.where(steps.last[:, None, None], dlast.to(acc)[steps.seq], 0.0)[None]
    gs = [None] * T
    dentering = [None] * T  # at a sequence's start the gradient goes to the state entering it, not to h_{t-1}
    for t in range(T - 1, -1, -1):
        g = carry + gy[:, :, None, t] * Cx[..., t]
        if dlast_at is not None:
            g = g + dlast_at[:, t]
        gs[t] = g
        carry = decay[..., t] * g
        if starts is not None:
            dentering[t] = torch.where(starts[:, t, None, None], carry, 0.0)
            carry = torch.where(starts[:, t, None, None], 0.0, carry)
    Gm = torch.stack(gs, dim=-1) if T > 0 else torch.zeros_like(H)
    dh0 = carry
    if steps is not None:
        dh0 = carry.new_zeros(steps.nonempty.shape[0], dim, n_state)
        if T > 0:
            dh0 = dh0.index_add(0, steps.seq, torch.stack(dentering, dim=1)[0])
        if dlast is not None:  # an empty sequence hands its state straight through
            dh0 = torch.where(steps.nonempty[:, None, None], dh0, dlast.to(acc))
    q = Gm * (H - drive)  # g_t * decay_t * (the state step t started from)
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
