"""Arrow of time: a window of real video played forward (label 1) or reversed (label 0).

Every frame of each source video (up to ``max_frames``) is encoded once; windows of T frames at temporal strides
1 and 2, started every ``step`` frames, give the clips, and each window is used both ways, so a forward clip and
its reverse share their cached features. Splits are by source video (never a window of a test video in training).
"""

from __future__ import annotations

import torch

from coldstream.train.cache import file_content_hash, video_key
from coldstream.train.clips import ClipItem
from coldstream.train.packaged import Source

CLASS_NAMES = ["reversed", "forward"]


def source_key(src: Source) -> str:
    """Cache key of a video's native frames (any window/stride reads the same rows)."""
    return video_key(file_content_hash(src.path), {"task": "frames", "stride": 1})


def windows(num_frames: int, frames: int, strides=(1, 2), step: int = 4) -> list[tuple[int, ...]]:
    """Frame-index windows of ``frames`` frames at each stride, started every ``step`` frames."""
    out = []
    for s in strides:
        span = (frames - 1) * s + 1
        out += [tuple(range(a, a + span, s)) for a in range(0, num_frames - span + 1, step)]
    return out


def clip_items(src: Source, vkey: str, num_frames: int, frames: int, max_windows: int, seed: int = 0, **kw):
    """Up to ``max_windows`` windows (evenly thinned) of one video, each forward and reversed."""
    ws = windows(num_frames, frames, **kw)
    if len(ws) > max_windows:
        keep = torch.linspace(0, len(ws) - 1, max_windows).round().long().tolist()
        ws = [ws[i] for i in keep]
    items = []
    for w in ws:
        items.append(ClipItem(vkey, w, 1, src.name))
        items.append(ClipItem(vkey, w[::-1], 0, src.name))
    return items


def frame_loader(path: str, size: int, mean, std):
    """Loader for :class:`~coldstream.train.extract.FrameJob`: decoded + SPEC §2.3 preprocessed ``[T, 3, S, S]``."""
    from coldstream.io import open_video

    def load(idx: list[int]) -> torch.Tensor:
        with open_video(path, output="float", size=size, mean=mean, std=std) as src:
            return src.get_frames(idx).data

    return load


def num_frames(path: str, cap: int = 1 << 30) -> int:
    """Frames in the video per ``coldstream.io`` (which raises on a file it cannot read: the caller skips and counts
    it); the first and the last frame used (up to ``cap``) are decoded to check they are readable."""
    from coldstream.io import open_video

    with open_video(path) as src:
        n = src.info.num_frames
        src.get_frames([0, min(n, cap) - 1])
        return n
