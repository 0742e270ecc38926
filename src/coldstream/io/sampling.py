"""Which frames to decode: clip sampling (a stride from the frame rates, frames centred in the video), random temporal
offsets for training, per-rank sharding.

All functions work on frame indices only (no decoding), so every backend samples identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch

from coldstream.errors import InputError

NUM_FRAMES = 16  # frames per clip (T) unless a task asks for another count

_T = TypeVar("_T")


def clip_stride(native_fps: float, target_fps: float | None) -> int:
    """Frame stride ``max(1, round(native_fps / target_fps))`` with Python rounding (30 -> 12 fps gives 2).

    ``target_fps=None`` (or a video whose rate is unknown, ``native_fps <= 0``) means stride 1.
    """
    if target_fps is None or native_fps is None or native_fps <= 0:
        return 1
    if target_fps <= 0:
        raise InputError(f"target_fps must be positive, got {target_fps}")
    return max(1, int(round(native_fps / target_fps)))


def _short_clip(n_total: int, num_frames: int, stride: int) -> list[int]:
    # Too short for `num_frames` strided frames: take them from the start and repeat the last one taken.
    idx = list(range(0, n_total, stride))[:num_frames]
    return idx + [idx[-1]] * (num_frames - len(idx))


def centered_clip_indices(n_total: int, num_frames: int = NUM_FRAMES, stride: int = 1) -> list[int]:
    """``num_frames`` indices ``stride`` apart, centred in a video of ``n_total`` frames.

    ``start = (n_total - 1 - (num_frames - 1) * stride) // 2`` when the span ``(num_frames - 1) * stride`` is shorter
    than the video; otherwise frames ``0, stride, 2*stride, ...`` that exist, then the last of them repeated.

    Example: 300 frames at 30 fps, target 6 fps -> stride 5, start (299 - 75) // 2 = 112: ``[112, 117, ..., 187]``.
    """
    _check(n_total, num_frames, stride)
    span = (num_frames - 1) * stride
    if span >= n_total:
        return _short_clip(n_total, num_frames, stride)
    start = (n_total - 1 - span) // 2
    return [start + i * stride for i in range(num_frames)]


def random_clip_indices(
    n_total: int, num_frames: int = NUM_FRAMES, stride: int = 1, generator: torch.Generator | None = None
) -> list[int]:
    """Training variant of :func:`centered_clip_indices`: the start is uniform over every start that fits.

    Short videos are handled as in the centred rule (from the start, last frame repeated), so a short video gives the
    same clip in both modes.
    """
    _check(n_total, num_frames, stride)
    span = (num_frames - 1) * stride
    if span >= n_total:
        return _short_clip(n_total, num_frames, stride)
    start = int(torch.randint(0, n_total - span, (1,), generator=generator))
    return [start + i * stride for i in range(num_frames)]


def all_strided_indices(n_total: int, stride: int = 1) -> list[int]:
    """Every ``stride``-th frame from the start: the whole video at the target rate, no fixed frame count."""
    _check(n_total, 1, stride)
    return list(range(0, n_total, stride))


def shard(items: Sequence[_T], rank: int, world_size: int, *, pad: bool = True) -> list[_T]:
    """The items of data-parallel ``rank``: ``items[rank::world_size]``.

    With ``pad=True`` every rank gets the same count (the list is padded by wrapping around, like
    ``DistributedSampler``), so ranks stay in lock-step; ``pad=False`` drops nothing and adds nothing.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    items = list(items)
    if pad and items:
        per_rank = -(-len(items) // world_size)
        total = per_rank * world_size
        items = (items * (-(-total // len(items))))[:total]
    return items[rank::world_size]


def _check(n_total: int, num_frames: int, stride: int) -> None:
    if n_total < 1:
        raise InputError(f"a video needs at least one frame, got n_total={n_total}")
    if num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {num_frames}")
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
