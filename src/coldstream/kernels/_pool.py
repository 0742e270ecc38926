"""A pool of per-stream states indexed by batch row (``state_batch_indices`` / ``conv_state_indices``), for the
references: gather the rows a batch steps, scatter them back; -1 marks a padding row. Written without
data-dependent shapes, so the reference ops trace under ``torch.compile`` and pass ``opcheck``."""

from __future__ import annotations

import torch


def gather_rows(pool: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows [B, ...], valid [B] bool)``: a copy of ``pool[indices]``, padding rows (-1) reading slot 0."""
    idx = indices.long()
    return pool[idx.clamp(min=0)].clone(), idx >= 0


def scatter_rows(pool: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor) -> None:
    """``pool[indices[b]] = rows[b]`` in place for every non-padding row (indices distinct); other slots unchanged."""
    idx = indices.long()
    hit = (idx[:, None] == torch.arange(pool.shape[0], device=idx.device)[None]).to(rows.dtype)  # [B, slots]
    taken = hit.sum(0).clamp(max=1).view(-1, *([1] * (pool.dim() - 1)))
    pool.copy_((pool * (1 - taken) + torch.einsum("bs,b...->s...", hit, rows)).to(pool.dtype))


def mask_rows(out: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Zero the padding rows of a ``[B, ...]`` output."""
    return out * valid.view(-1, *([1] * (out.dim() - 1))).to(out.dtype)
