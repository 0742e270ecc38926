"""The reference backend's runtime path: the fp32 math of ``naive.py``, one time step at a time, in place.

``naive.selective_scan_ref`` and ``selective_scan_bwd_ref`` are written to be read: they build every ``[B, D, N, T]``
intermediate (decays, drives, states, their gradients) before reducing it, which on a CPU is several passes over
tensors far larger than the caches. Here each step computes its decay, updates the state in place and reduces it
(the sum over N, and in the backward the sums over channels for dB and dC) with batched matmuls, so the only
``[T, ...]``-sized tensor is the state history the backward needs. Same inputs, same recurrence, same fp32 (fp64
for fp64 inputs) accumulation; tests/kernels/test_selective_scan_stepwise.py holds it to the naive reference.

Packed sequences (``cu_seqlens``) are left to the naive reference (``supported`` says so). B and C come in the
op's ``[B, G, N, T]`` layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import acc_dtype


def supported(cu_seqlens: torch.Tensor | None) -> bool:
    """Whether these inputs take the stepwise path (everything but packed sequences)."""
    return cu_seqlens is None


class _Prepared:
    """Per-step operands, time-major so that step t's slices are contiguous.

    The state is laid out ``[B, G, N, D / G]``: channels innermost, so every elementwise op runs over rows of D / G
    contiguous values and broadcasts only over outer dims (with N innermost, the usual ``[.., D, N]``, each op's
    inner loop would be N = 4 or 16 values long, and that is where a CPU spends its time)."""

    def __init__(self, u, delta, A, B, C, delta_bias, delta_softplus):
        acc = acc_dtype(u.dtype)
        batch, dim, T = u.shape
        self.batch, self.dim, self.T = batch, dim, T
        self.groups = G = B.shape[1]
        self.n_state = N = A.shape[1]
        self.per_group = Dg = dim // G
        self.acc = acc
        self.u = u.to(acc)
        dt_raw = delta.to(acc)
        if delta_bias is not None:
            dt_raw = dt_raw + delta_bias.to(acc)[:, None]
        self.dt_raw = dt_raw
        self.dt = F.softplus(dt_raw) if delta_softplus else dt_raw  # [B, D, T]
        self.A = A.to(acc).view(G, Dg, N).transpose(-1, -2).contiguous()  # [G, N, D/G]

        def time_major(t):  # [B, ..., T] -> [T, B, ...]
            return t.movedim(-1, 0).contiguous()

        self.dtT = time_major(self.dt).view(T, batch, G, 1, Dg)
        self.dtuT = time_major(self.dt * self.u).view(T, batch, G, 1, Dg)
        self.BT = time_major(B.to(acc)).view(T, batch, G, N, 1)
        self.CT = time_major(C.to(acc)).view(T, batch, G, 1, N)

    def state(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """A zero state ``[B, G, N, D/G]``, or ``like`` (``[B, D, N]``, e.g. an initial state) in this layout."""
        shape = (self.batch, self.groups, self.n_state, self.per_group)
        if like is None:
            return self.u.new_zeros(shape)
        return self.u.new_empty(shape).copy_(self.from_bdn(like))  # a copy: the backward updates it in place

    def from_bdn(self, t: torch.Tensor) -> torch.Tensor:  # [B, D, N] -> [B, G, N, D/G] (a view)
        return t.reshape(self.batch, self.groups, self.per_group, self.n_state).transpose(-1, -2)

    def to_bdn(self, h: torch.Tensor) -> torch.Tensor:  # [B, G, N, D/G] -> [B, D, N]
        return h.transpose(-1, -2).reshape(self.batch, self.dim, self.n_state)

    def decay(self, t: int, out: torch.Tensor) -> torch.Tensor:
        return torch.mul(self.dtT[t], self.A, out=out).exp_()


def _history(p: _Prepared, initial_state, resets, keep: bool):
    """Runs the recurrence: ``(y [T, B, D] ungated without D, last state, states [T, B, G, N, D/G] or None)``."""
    h = p.state(initial_state)
    states = p.u.new_empty(p.T, *h.shape) if keep else None
    ys = p.u.new_empty(p.T, p.batch, p.groups, 1, p.per_group)
    dec = torch.empty_like(h)
    for t in range(p.T):
        if resets is not None:
            h = h.masked_fill(resets[:, t].view(-1, 1, 1, 1), 0.0)
        new = states[t] if keep else h
        torch.mul(h, p.decay(t, dec), out=new).addcmul_(p.dtuT[t], p.BT[t])
        torch.matmul(p.CT[t], new, out=ys[t])
        h = new
    return ys.view(p.T, p.batch, p.dim), h, states


def selective_scan_stepwise(
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, resets
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward; the arguments and results of ``naive.selective_scan_ref`` (B, C ``[B, G, N, T]``; no cu_seqlens)."""
    p = _Prepared(u, delta, A, B, C, delta_bias, delta_softplus)
    yT, h, _ = _history(p, initial_state, resets, keep=False)
    y = yT.permute(1, 2, 0)
    if D is not None:
        y = y + p.u * D.to(p.acc)[:, None]
    if z is not None:
        y = y * F.silu(z.to(p.acc))
    return y.to(u.dtype), p.to_bdn(h)


def selective_scan_bwd_stepwise(
    dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, resets
) -> list[torch.Tensor | None]:
    """Backward; the arguments and results of ``naive.selective_scan_bwd_ref`` (no cu_seqlens). Recomputes the
    states, then walks time in reverse with g_t = dL/dh_t (see naive.py for the formulas)."""
    p = _Prepared(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, T, G, N, Dg = p.batch, p.dim, p.T, p.groups, p.n_state, p.per_group
    yT, _, states = _history(p, initial_state, resets, keep=True)
    y = yT.permute(1, 2, 0)
    if D is not None:
        y = y + p.u * D.to(p.acc)[:, None]
    dout32 = dout.to(p.acc)
    dz = None
    if z is not None:
        z32 = z.to(p.acc)
        sz = torch.sigmoid(z32)
        dz = dout32 * y * sz * (1 + z32 * (1 - sz))
        gy = dout32 * z32 * sz
    else:
        gy = dout32
    gyT = gy.movedim(-1, 0).contiguous().view(T, batch, G, 1, Dg)
    h0 = p.state(initial_state)
    g = p.state(dlast)  # dL/dh_t, built up in place
    dA = torch.zeros_like(g)  # summed over the batch at the end
    dBT = p.u.new_empty(T, batch, G, N, 1)
    dCT = p.u.new_empty(T, batch, G, N, 1)
    gBT = p.u.new_empty(T, batch, G, 1, Dg)  # <g_t, B_t>
    qAT = p.u.new_empty(T, batch, G, Dg)  # <q_t, A>
    dec, q = torch.empty_like(g), torch.empty_like(g)
    for t in range(T - 1, -1, -1):
        g.addcmul_(gyT[t], p.CT[t].transpose(-1, -2))
        torch.matmul(states[t], gyT[t].transpose(-1, -2), out=dCT[t])
        torch.matmul(p.BT[t].transpose(-1, -2), g, out=gBT[t])
        torch.matmul(g, p.dtuT[t].transpose(-1, -2), out=dBT[t])
        prev = states[t - 1] if t > 0 else h0
        if resets is not None:
            prev = prev.masked_fill(resets[:, t].view(-1, 1, 1, 1), 0.0)
        torch.mul(g, p.decay(t, dec), out=g)  # now exp(dt_t A) g_t: the gradient handed to h_{t-1}
        torch.mul(g, prev, out=q)  # q_t = g_t * exp(dt_t A) h_{t-1}
        dA.addcmul_(q, p.dtT[t])
        torch.sum(q.mul_(p.A), -2, out=qAT[t])
        if resets is not None:  # a reset cuts the gradient's path to earlier states
            g.masked_fill_(resets[:, t].view(-1, 1, 1, 1), 0.0)

    def channels(t):  # [T, B, G, ..., D/G] -> [B, D, T]
        return t.reshape(T, batch, dim).permute(1, 2, 0)

    gB = channels(gBT)
    ddt = channels(qAT) + p.u * gB
    du = p.dt * gB
    dD = None
    if D is not None:
        du = du + gy * D.to(p.acc)[:, None]
        dD = (gy * p.u).sum((0, 2))
    if delta_softplus:
        ddt = ddt * torch.sigmoid(p.dt_raw)
    dbias = ddt.sum((0, 2)) if delta_bias is not None else None
    dB = dBT.view(T, batch, G, N).permute(1, 2, 3, 0)
    dC = dCT.view(T, batch, G, N).permute(1, 2, 3, 0)
    dh0 = p.to_bdn(g) if initial_state is not None else None
    return [du, ddt, dA.sum(0).transpose(-1, -2).reshape(dim, N), dB, dC, dD, dz, dbias, dh0]
