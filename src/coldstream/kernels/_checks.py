"""Shape validation and varlen helpers shared by the ops."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import InputError


def expect(name: str, t: torch.Tensor | None, shape: tuple[int, ...], desc: str) -> None:
    """Raise ``ValueError`` unless ``t`` is ``None`` or has exactly ``shape`` (described as ``desc``)."""
    if t is not None and tuple(t.shape) != tuple(shape):
        raise InputError(f"{name} must have shape {desc} = {list(shape)}, got {list(t.shape)}")


def expect_float(name: str, t: torch.Tensor | None) -> None:
    if t is not None and t.dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        raise InputError(f"{name} must be float32, bfloat16, float16 (or float64 on the reference), got {t.dtype}")


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp32, or fp64 for fp64 inputs (gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_varlen(batch: int, T: int, resets: torch.Tensor | None, cu_seqlens: torch.Tensor | None) -> int:
    """Validate ``resets [B, T]`` / ``cu_seqlens [S + 1]``; return the number of sequences carrying a state."""
    if resets is not None and cu_seqlens is not None:
        raise InputError("pass either resets or cu_seqlens, not both")
    if resets is not None:
        expect("resets", resets, (batch, T), "[B, T]")
        if resets.dtype != torch.bool:  # ~ on an integer mask is not a logical not: the reference would be wrong
            raise InputError(
                f"resets must be a bool mask [B, T] (True where a sequence starts), got {resets.dtype}; "
                "pass resets.bool() or resets != 0"
            )
    if cu_seqlens is None:
        return batch
    if batch != 1:
        raise InputError(f"cu_seqlens packs variable-length sequences along time and needs batch 1, got batch {batch}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise InputError(f"cu_seqlens must have shape [S + 1] with S >= 1, got {list(cu_seqlens.shape)}")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise InputError(f"cu_seqlens must be int32 or int64, got {cu_seqlens.dtype}")
    return cu_seqlens.numel() - 1  # what it holds: check_cu_seqlens


def check_cu_seqlens(
    cu_seqlens: torch.Tensor, T: int, max_seqlen: int | None = None, *, may_sync: bool = False
) -> int | None:
    """Check what ``cu_seqlens`` holds (0 first, T last, non-decreasing, no sequence longer than ``max_seqlen``) and
    return the longest sequence (``max_seqlen`` when given).

    Read on the host only where that adds no device sync: ``cu_seqlens`` on the CPU, or ``may_sync`` (the caller
    reads it anyway). A CUDA ``cu_seqlens`` is otherwise trusted, as flash-attention and fla trust theirs, and so is
    anything under ``torch.compile``; then the return value is ``max_seqlen`` as given (possibly None).
    """
    if torch.compiler.is_compiling() or (cu_seqlens.device.type != "cpu" and not may_sync):
        return max_seqlen
    cu = cu_seqlens.tolist()
    if cu[0] != 0 or cu[-1] != T:
        raise InputError(f"cu_seqlens must start at 0 and end at T = {T} (the packed length), got {cu[0]} ... {cu[-1]}")
    lengths = [b - a for a, b in zip(cu, cu[1:], strict=False)]
    if min(lengths) < 0:
        raise InputError(f"cu_seqlens must be non-decreasing, got {cu}")
    longest = max(lengths)
    if max_seqlen is not None and longest > max_seqlen:
        raise InputError(f"max_seqlen = {max_seqlen} is shorter than the longest packed sequence ({longest})")
    return longest if max_seqlen is None else max_seqlen


def resets_from_cu_seqlens(cu_seqlens: torch.Tensor, T: int) -> torch.Tensor:
    """``[1, T]`` bool mask, True where a packed sequence starts (traceable, no host sync)."""
    return packed_steps(cu_seqlens, T).first[None]


class PackedSteps(NamedTuple):
    """Where each step of a batch-1 input packing S sequences along T stands (see :func:`packed_steps`)."""

    seq: torch.Tensor  # [T] long: the sequence step t belongs to
    first: torch.Tensor  # [T] bool: t is its sequence's first step
    last: torch.Tensor  # [T] bool: t is its sequence's last step
    end: torch.Tensor  # [S] long: each sequence's last step (0 for an empty one)
    nonempty: torch.Tensor  # [S] bool


def packed_steps(cu_seqlens: torch.Tensor, T: int) -> PackedSteps:
    """:class:`PackedSteps` from ``cu_seqlens``, with no host sync and no data-dependent shapes, so the references
    trace under ``torch.compile`` and ``opcheck``."""
    cu = cu_seqlens.long()
    t = torch.arange(T, device=cu.device)
    seq = torch.searchsorted(cu[1:].contiguous(), t, right=True)  # empty sequences before t are passed over
    return PackedSteps(seq, t == cu[seq], t == cu[seq + 1] - 1, (cu[1:] - 1).clamp(min=0), cu[1:] > cu[:-1])


def entering_states(
    batch: int,
    T: int,
    state_shape: tuple[int, ...],
    initial_state: torch.Tensor | None,
    resets: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """For the references: ``(starts [B, T] bool, entering [B, T, *state_shape])``, i.e. where a sequence starts the
    state entering step t is ``entering[:, t]`` instead of h_{t-1}: zero after a reset, a packed sequence's initial
    state (or zero). ``(None, None)`` without resets or cu_seqlens. Traceable, like :func:`packed_steps`."""
    if cu_seqlens is not None:
        steps = packed_steps(cu_seqlens, T)
        if initial_state is None:
            return steps.first[None], torch.zeros(1, T, *state_shape, dtype=dtype, device=device)
        return steps.first[None], initial_state.to(dtype)[steps.seq][None]
    if resets is not None:
        return resets, torch.zeros(batch, T, *state_shape, dtype=dtype, device=device)
    return None, None
