"""Shape validation and varlen helpers shared by the ops."""

from __future__ import annotations

import torch


def expect(name: str, t: torch.Tensor | None, shape: tuple[int, ...], desc: str) -> None:
    """Raise ``ValueError`` unless ``t`` is ``None`` or has exactly ``shape`` (described as ``desc``)."""
    if t is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {desc} = {list(shape)}, got {list(t.shape)}")


def expect_float(name: str, t: torch.Tensor | None) -> None:
    if t is not None and t.dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        raise ValueError(f"{name} must be float32, bfloat16, float16 (or float64 on the reference), got {t.dtype}")


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp32, or fp64 for fp64 inputs (gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_varlen(
    batch: int, T: int, resets: torch.Tensor | None, cu_seqlens: torch.Tensor | None
) -> int:
    """Validate ``resets [B, T]`` / ``cu_seqlens [S + 1]``; return the number of sequences carrying a state."""
    if resets is not None and cu_seqlens is not None:
        raise ValueError("pass either resets or cu_seqlens, not both")
    if resets is not None:
        expect("resets", resets, (batch, T), "[B, T]")
    if cu_seqlens is None:
        return batch
    if batch != 1:
        raise ValueError(f"cu_seqlens packs variable-length sequences along time and needs batch 1, got batch {batch}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must have shape [S + 1] with S >= 1, got {list(cu_seqlens.shape)}")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"cu_seqlens must be int32 or int64, got {cu_seqlens.dtype}")
    return cu_seqlens.numel() - 1


def resets_from_cu_seqlens(cu_seqlens: torch.Tensor, T: int) -> torch.Tensor:
    """``[1, T]`` bool mask, True where a packed sequence starts."""
    starts = torch.zeros(T + 1, dtype=torch.bool, device=cu_seqlens.device)  # slot T takes trailing empty sequences
    starts[cu_seqlens[:-1].long()] = True  # no data-dependent shapes: traceable, no host sync
    return starts[None, :T]
