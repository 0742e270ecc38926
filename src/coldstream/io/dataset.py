"""Dataset passes over many videos: clips per SPEC §2.3, bad files skipped, logged and counted."""

from __future__ import annotations

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


class ClipDataset(torch.utils.data.IterableDataset):
    """Clips from many files for one data-parallel rank; bad files are skipped, logged and counted in ``report``.

    Yields ``(path, Frames)`` with ``Frames.data`` as configured by ``open_kwargs`` (uint8 ``[T, H, W, 3]`` or float
    ``[T, 3, S, S]``). Files are sharded ``files[rank::world_size]`` (after a seeded shuffle per ``epoch`` when
    ``shuffle``); ``random_offset`` draws each clip's start uniformly (training), else clips are centred (evaluation).
    In a multi-worker ``DataLoader`` each worker takes its own slice of the rank's files.
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
            self.report.seen += 1
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
                self.report.add(e)
                log.warning("skipping %s: %s (%d skipped so far)", e.path, e.problem, self.report.skipped)
                continue
            yield path, clip


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
