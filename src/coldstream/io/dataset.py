"""Dataset passes over many videos: one clip per file (``FrameSource.clip``), bad files skipped, logged and counted."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .errors import VideoError
from .sampling import NUM_FRAMES, shard
from .source import Frames

log = logging.getLogger("coldstream.io")


@dataclass
class SkipReport:
    """Files a pass could not read: ``skipped`` count and ``(path, problem)`` for each."""

    seen: int = 0
    skipped: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)

    def add(self, err: VideoError) -> None:
        self.skipped += 1
        self.problems.append((err.path, err.problem))


@dataclass(frozen=True)
class _Skipped:
    """A file a ``ClipDataset`` skipped, passed down the data path to the process that counts it."""

    path: str
    problem: str


@dataclass(frozen=True)
class _Batch:
    """A collated batch, the clips' count, and the files skipped while it was filled."""

    data: object
    clips: int
    skipped: list[_Skipped]


class _SeparateSkips:
    """Wraps a ``collate_fn`` so that skip markers bypass it (runs in the workers; picklable)."""

    def __init__(self, collate_fn: Callable, batched: bool):
        self.collate_fn, self.batched = collate_fn, batched

    def __call__(self, items):
        if not self.batched:
            return items if isinstance(items, _Skipped) else self.collate_fn(items)
        clips = [x for x in items if not isinstance(x, _Skipped)]
        skipped = [x for x in items if isinstance(x, _Skipped)]
        return _Batch(self.collate_fn(clips) if clips else None, len(clips), skipped)


class ClipDataset(torch.utils.data.IterableDataset):
    """Clips from many files for one data-parallel rank; bad files are skipped, logged and counted in ``report``.

    Yields ``(path, Frames)`` with ``Frames.data`` as configured by ``open_kwargs`` (uint8 ``[T, H, W, 3]`` or float
    ``[T, 3, S, S]``). Files are sharded ``files[rank::world_size]`` (after a seeded shuffle per ``epoch`` when
    ``shuffle``); ``random_offset`` draws each clip's start uniformly (training), else clips are centred (evaluation).

    With DataLoader workers, iterate :meth:`loader` (a ``DataLoader`` whose skipped files reach this ``report``): each
    worker takes its own slice of the rank's files, and a plain ``DataLoader`` would count its skips in the workers'
    copies of the dataset, which the main process never sees.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        *,
        num_frames: int = NUM_FRAMES,
        target_fps: float | None = None,
        stride: int | None = None,
        backend: str = "auto",
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = False,
        random_offset: bool = False,
        seed: int = 0,
        epoch: int = 0,
        opener: Callable | None = None,
        **open_kwargs,
    ):
        self.files = [os.fspath(f) for f in files]
        self.num_frames, self.target_fps, self.stride = num_frames, target_fps, stride
        self.backend = backend
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.random_offset = shuffle, random_offset
        self.seed, self.epoch = seed, epoch
        self.open_kwargs = open_kwargs
        self._opener = opener
        self.report = SkipReport()
        self._send_skips = False  # set on loader()'s copy: skips go down the data path to the main process

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for a new epoch (same order on every rank for the same epoch)."""
        self.epoch = epoch

    def rank_files(self) -> list[str]:
        """The files this rank reads this epoch (padded so every rank gets the same count)."""
        files = list(self.files)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            files = [files[i] for i in torch.randperm(len(files), generator=g).tolist()]
        return shard(files, self.rank, self.world_size)

    def __iter__(self) -> Iterator[tuple[str, Frames]]:
        from . import open_video

        files = self.rank_files()
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            files = files[worker.id :: worker.num_workers]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7919 + self.rank)
        opener = self._opener or open_video
        for path in files:
            try:
                with opener(path, backend=self.backend, **self.open_kwargs) as src:
                    clip = src.clip(
                        self.num_frames,
                        self.target_fps,
                        stride=self.stride,
                        random_offset=self.random_offset,
                        generator=g,
                    )
            except VideoError as e:
                if self._send_skips:
                    yield _Skipped(e.path, e.problem)
                    continue
                _skip(self.report, e.path, e.problem)
                if worker is not None:
                    _warn_worker_count_once()
                continue
            if not self._send_skips:
                self.report.seen += 1
            yield path, clip

    def loader(self, **dataloader_kwargs) -> SkipCountingLoader:
        """A ``torch.utils.data.DataLoader`` over this dataset that counts skipped files in this ``report``, also when
        ``num_workers > 0``. ``dataloader_kwargs`` go to the ``DataLoader``; ``batch_size`` defaults to None (one
        ``(path, Frames)`` at a time). With a ``batch_size`` and ``collate_fn``, a batch holds fewer clips when files in
        it were skipped."""
        return SkipCountingLoader(self, **dataloader_kwargs)


def _skip(report: SkipReport, path: str, problem: str) -> None:
    report.seen += 1
    report.add(VideoError(path, problem))
    log.warning("skipping %s: %s (%d skipped so far)", path, problem, report.skipped)


_warned_worker = False


def _warn_worker_count_once() -> None:
    global _warned_worker
    if not _warned_worker:
        _warned_worker = True
        log.warning(
            "ClipDataset in a DataLoader worker counts skipped files in the worker's copy of its report, not the main "
            "process's: iterate ClipDataset.loader(num_workers=...) to count them there"
        )


class SkipCountingLoader:
    """``ClipDataset.loader()``: iterates a fresh ``DataLoader`` over the dataset as it is now (epoch included) and
    counts what the workers skipped in the dataset's ``report``. ``dataloader`` is the last one iterated."""

    def __init__(self, dataset: ClipDataset, **dataloader_kwargs):
        self.dataset = dataset
        self.dataloader_kwargs = {"batch_size": None, **dataloader_kwargs}
        self.dataloader: torch.utils.data.DataLoader | None = None

    def __iter__(self) -> Iterator:
        from torch.utils.data import default_collate, default_convert

        sender = copy.copy(self.dataset)
        sender._send_skips, sender.report = True, SkipReport()
        kwargs = dict(self.dataloader_kwargs)
        batched = kwargs["batch_size"] is not None
        collate = kwargs.pop("collate_fn", None) or (default_collate if batched else default_convert)
        self.dataloader = torch.utils.data.DataLoader(sender, collate_fn=_SeparateSkips(collate, batched), **kwargs)
        report = self.dataset.report
        for item in self.dataloader:
            if isinstance(item, _Skipped):
                _skip(report, item.path, item.problem)
            elif isinstance(item, _Batch):
                for s in item.skipped:
                    _skip(report, s.path, s.problem)
                report.seen += item.clips
                if item.clips:
                    yield item.data
            else:
                report.seen += 1
                yield item


def scan_videos(files: Sequence[str | os.PathLike], backend: str = "auto") -> tuple[list[str], SkipReport]:
    """Open every file once: the readable ones, and a report of the rest (for cleaning a dataset list up front)."""
    from . import open_video

    good, report = [], SkipReport()
    for f in files:
        report.seen += 1
        try:
            with open_video(f, backend=backend):
                good.append(os.fspath(f))
        except VideoError as e:
            report.add(e)
            log.warning("skipping %s: %s", e.path, e.problem)
    return good, report
