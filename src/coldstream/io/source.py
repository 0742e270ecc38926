"""The source contracts: one video (or live stream) in, frames out on a requested device, each with its index and
timestamp.

* ``StreamSource``: frames in presentation order, chunk by chunk (:meth:`StreamSource.stream`); what every source,
  live ones included, can do. A backend provides ``info`` and ``_decode_sequential(start, step)``: frames
  ``start, start + step, ...`` to the end, one at a time (bounded memory; skipped frames are decoded but never
  converted to RGB).
* ``FrameSource``: a video file, which adds random access (:meth:`FrameSource.get_frames`, :meth:`FrameSource.clip`).
  A backend also provides ``_decode(indices)``: the frames at sorted, unique display-order indices.

Everything else (index validation, repeated indices, clip sampling, chunked streaming, moving to the device,
preprocessing) lives here once, so backends cannot disagree on which frame is which.

Frame index ``i`` is the ``i``-th frame in presentation (display) order; its timestamp is its presentation time in
seconds from the first frame's, read from the container (exact for variable-frame-rate files). ``docs/video-io.md``
describes the contract for users.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Self

import numpy as np
import torch

from coldstream.errors import BackendError, InputError

from .errors import FrameIndexError, VideoNotFoundError
from .sampling import NUM_FRAMES, all_strided_indices, centered_clip_indices, clip_stride, random_clip_indices

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

log = logging.getLogger("coldstream.io")

Output = Literal["uint8", "float"]


@dataclass(frozen=True)
class VideoInfo:
    """What a backend knows about one video before decoding it."""

    path: str  # the file as given
    backend: str  # "pyav", "opencv", "dali-cpu", "dali-gpu", "pyav-live"
    codec: str  # FFmpeg codec name: "h264", "hevc", "vp9", "vp8", "mjpeg", "av1", ...
    num_frames: int  # frames in display order (exact for pyav; container estimate for opencv without pyav)
    fps: float  # average frame rate (frames per second of presentation time); 0.0 when unknown
    width: int  # of the decoded frame after rotation
    height: int  # of the decoded frame after rotation
    rotation: int = 0  # display rotation applied to the stored pixels, degrees counter-clockwise
    duration: float = 0.0  # seconds from the first frame's timestamp to the end of the last frame
    variable_frame_rate: bool = False  # frame durations differ by more than 1 ms
    has_audio: bool = False  # the container also holds audio (ignored by decoding)


@dataclass
class Frames:
    """Decoded frames with their identity.

    ``data``: uint8 ``[T, H, W, 3]`` RGB, or preprocessed float32 ``[T, 3, S, S]``, on the requested device.
    ``indices``: int64 ``[T]`` display-order frame indices (CPU). ``timestamps``: float64 ``[T]`` seconds (CPU).
    """

    data: torch.Tensor
    indices: torch.Tensor
    timestamps: torch.Tensor
    info: VideoInfo | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.indices.numel())


def stack_frames(frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[H, W, 3]`` frames -> ``[T, H, W, 3]``. CPU frames are stacked by NumPy: ``torch.stack`` wakes torch's
    intra-op thread pool, whose spinning threads slow decoding down on a loaded machine (``docs/video-io.md``)."""
    if frames and frames[0].device.type == "cpu":
        return torch.from_numpy(np.stack([f.numpy() for f in frames]))
    return torch.stack(list(frames))


_warned: set[tuple[str, str]] = set()


def warn_once(path: str, kind: str, message: str) -> None:
    """Log a per-file observation once per process (datasets reopen the same files every epoch)."""
    if (path, kind) not in _warned:
        _warned.add((path, kind))
        log.warning(message)


class StreamSource(ABC):
    """Frames of one source in presentation order, read front to back in chunks: a video file or a live source
    (URL, capture device, pipe). Use as a context manager, or call :meth:`close`.

    Args:
        source: the video (a path, or for live sources anything their backend opens).
        device: where returned frames live (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``).
        output: ``"uint8"`` for RGB ``[T, H, W, 3]`` frames; ``"float"`` for preprocessed float32 ``[T, 3, S, S]``
            (scaled to [0, 1], short side resized to S bilinearly, centre crop S x S, normalised: see
            ``coldstream.io.preprocess``).
        size: S of the float output.
        mean, std: normalisation of the float output; ``None`` keeps pixels in [0, 1].
    """

    backend_name: str = "abstract"

    def __init__(
        self,
        source,
        *,
        device: str | torch.device = "cpu",
        output: Output = "uint8",
        size: int = 224,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
    ):
        if output not in ("uint8", "float"):
            raise InputError(f"output must be 'uint8' or 'float', got {output!r}")
        if (mean is None) != (std is None):
            raise InputError(f"mean and std must both be given or both be None, got mean={mean!r}, std={std!r}")
        self.path = os.fspath(source) if isinstance(source, str | os.PathLike) else repr(source)
        self.device = torch.device(device)
        self.output = output
        self.size = size
        self.mean = None if mean is None else tuple(mean)
        self.std = None if std is None else tuple(std)

    # ---- what a backend provides -------------------------------------------------------------------------------
    @property
    @abstractmethod
    def info(self) -> VideoInfo:
        """Metadata of the source (opening it has already validated it)."""

    @abstractmethod
    def _decode_sequential(self, start: int, step: int = 1) -> Iterator[tuple[int, float, torch.Tensor]]:
        """``(index, timestamp, uint8 [H, W, 3])`` for frames ``start, start + step, ...`` to the end, in order."""

    def close(self) -> None:  # noqa: B027 - backends without resources need not override
        """Release decoder resources."""

    # ---- the contract ------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stream(self, start: int = 0, chunk_size: int = 1, target_fps: float | None = None) -> Iterator[Frames]:
        """Frames from ``start`` to the end in chunks of ``chunk_size``, decoded sequentially (bounded memory).

        With ``target_fps`` only every ``max(1, round(fps / target_fps))``-th frame (counting from ``start``) is
        yielded. Nothing here needs the frame count, so live sources stream the same way.
        """
        if chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
        if start < 0:
            raise FrameIndexError(self.path, f"stream start {start} is negative")
        step = clip_stride(self.info.fps, target_fps)
        buf: list[torch.Tensor] = []
        idx: list[int] = []
        ts: list[float] = []
        for i, t, frame in self._decode_sequential(start, step):
            buf.append(frame)
            idx.append(i)
            ts.append(t)
            if len(buf) == chunk_size:
                yield self._finish(stack_frames(buf), torch.tensor(idx), torch.tensor(ts, dtype=torch.float64))
                buf, idx, ts = [], [], []
        if buf:
            yield self._finish(stack_frames(buf), torch.tensor(idx), torch.tensor(ts, dtype=torch.float64))

    def __iter__(self) -> Iterator[Frames]:
        return self.stream()

    def _finish(self, data: torch.Tensor, indices: torch.Tensor, timestamps: torch.Tensor) -> Frames:
        """Move uint8 ``[T, H, W, 3]`` to the requested device and preprocess there if asked."""
        data = data.to(self.device, non_blocking=True)
        if self.output == "float":
            from .preprocess import preprocess_frames

            data = preprocess_frames(data, self.size, self.mean, self.std)
        return Frames(data, indices.to(torch.int64), timestamps, self.info)


class FrameSource(StreamSource):
    """One video file, decoded on demand: streaming (as every ``StreamSource``) plus random access by frame index
    (:meth:`get_frames`) and clip sampling (:meth:`clip`). ``len(source)`` is the frame count.

    Args:
        path: the video file (``VideoNotFoundError`` when it is missing or not a regular file).
        Other arguments as ``StreamSource``.
    """

    def __init__(self, path: str | os.PathLike, **kwargs):
        super().__init__(path, **kwargs)
        if not os.path.isfile(self.path):
            raise VideoNotFoundError(
                self.path, "no such file" if not os.path.exists(self.path) else "not a regular file"
            )

    @abstractmethod
    def _decode(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        """uint8 ``[len(indices), H, W, 3]`` (any device) and timestamps for sorted unique valid indices."""

    def __len__(self) -> int:
        return self.info.num_frames

    def get_frames(self, indices: Sequence[int]) -> Frames:
        """Frames at ``indices`` (any order, repeats allowed), returned in the order asked.

        Returns ``Frames`` with ``data`` uint8 ``[T, H, W, 3]`` or float ``[T, 3, S, S]``, ``T = len(indices)``.
        """
        idx = [int(i) for i in indices]
        if not idx:
            raise InputError(f"{self.path}: no frame indices requested (got an empty sequence)")
        n = self.info.num_frames
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise FrameIndexError(self.path, f"frame index {bad[0]} out of range: the video has {n} frames")
        unique = sorted(set(idx))
        data, stamps = self._decode(unique)
        if len(stamps) != len(unique) or data.shape[0] != len(unique):
            raise BackendError(
                f"{self.path}: {self.backend_name} returned {data.shape[0]} frames for the {len(unique)} requested"
            )
        pos = {i: k for k, i in enumerate(unique)}
        order = [pos[i] for i in idx]
        if order != list(range(len(unique))):
            data = data[torch.as_tensor(order, device=data.device)]
        ts = torch.tensor([stamps[k] for k in order], dtype=torch.float64)
        return self._finish(data, torch.tensor(idx, dtype=torch.int64), ts)

    def clip(
        self,
        num_frames: int = NUM_FRAMES,
        target_fps: float | None = None,
        *,
        stride: int | None = None,
        random_offset: bool = False,
        generator: torch.Generator | None = None,
    ) -> Frames:
        """``num_frames`` frames ``stride`` apart, centred in the video; ``stride = max(1, round(fps / target_fps))``.

        ``random_offset=True`` (training) draws the start uniformly instead of centring it. Short videos give the
        frames ``0, stride, ...`` that exist with the last one repeated. ``stride`` overrides ``target_fps``. The rule
        in full: :func:`coldstream.io.sampling.centered_clip_indices`.
        """
        n = self.info.num_frames
        s = stride if stride is not None else clip_stride(self.info.fps, target_fps)
        if random_offset:
            idx = random_clip_indices(n, num_frames, s, generator=generator)
        else:
            idx = centered_clip_indices(n, num_frames, s)
        return self.get_frames(idx)

    def strided_indices(self, target_fps: float | None = None) -> list[int]:
        """Every ``max(1, round(fps / target_fps))``-th frame from the start: the whole video at ``target_fps``."""
        return all_strided_indices(self.info.num_frames, clip_stride(self.info.fps, target_fps))
