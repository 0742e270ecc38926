"""The ``FrameSource`` contract: one video in, frames out on a requested device, each with its index and timestamp.

A backend implements two primitives on host or device uint8 frames:

* ``_decode(indices)``: the frames at sorted, unique display-order indices;
* ``_decode_sequential(start, step)``: frames ``start, start + step, ...`` to the end, one at a time (bounded memory;
  skipped frames are decoded but never converted to RGB).

Everything else (index validation, repeated indices, clip sampling, chunked streaming, moving to the device,
SPEC §2.3 preprocessing) lives here once, so backends cannot disagree on which frame is which.

Frame index ``i`` is the ``i``-th frame in presentation (display) order; its timestamp is its presentation time in
seconds from the stream's start, read from the container (exact for variable-frame-rate files).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from .errors import FrameIndexError, VideoNotFoundError
from .sampling import NUM_FRAMES, all_strided_indices, centered_clip_indices, clip_stride, random_clip_indices

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Output = Literal["uint8", "float"]


@dataclass(frozen=True)
class VideoInfo:
    """What a backend knows about one video before decoding it."""

    path: str  # the file as given
    backend: str  # "pyav", "opencv", "dali-cpu", "dali-gpu"
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
    intra-op thread pool, whose spinning threads measured 2-5x slower decoding on the loaded 2-core machine."""
    if frames and frames[0].device.type == "cpu":
        return torch.from_numpy(np.stack([f.numpy() for f in frames]))
    return torch.stack(list(frames))


class FrameSource(ABC):
    """One video, decoded on demand. Use as a context manager, or call :meth:`close`.

    Args:
        path: the video file.
        device: where returned frames live (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``).
        output: ``"uint8"`` for RGB ``[T, H, W, 3]`` frames; ``"float"`` for SPEC §2.3 preprocessed ``[T, 3, S, S]``.
        size: S of the float output (short-side bilinear resize to S, centre crop S x S).
        mean, std: normalisation of the float output; ``None`` keeps pixels in [0, 1] (the RVM baseline).
    """

    backend_name: str = "abstract"
    requires_file: bool = True  # False for live sources (URLs, devices, pipes)

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        output: Output = "uint8",
        size: int = 224,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
    ):
        if output not in ("uint8", "float"):
            raise ValueError(f"output must be 'uint8' or 'float', got {output!r}")
        if (mean is None) != (std is None):
            raise ValueError("mean and std must both be given or both be None")
        self.path = os.fspath(path) if isinstance(path, str | os.PathLike) else repr(path)
        if self.requires_file and not os.path.isfile(self.path):
            raise VideoNotFoundError(
                self.path, "no such file" if not os.path.exists(self.path) else "not a regular file"
            )
        self.device = torch.device(device)
        self.output = output
        self.size = size
        self.mean = None if mean is None else tuple(mean)
        self.std = None if std is None else tuple(std)

    # ---- what a backend provides -------------------------------------------------------------------------------
    @property
    @abstractmethod
    def info(self) -> VideoInfo:
        """Metadata of the video (opening the file has already validated it)."""

    @abstractmethod
    def _decode(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        """uint8 ``[len(indices), H, W, 3]`` (any device) and timestamps for sorted unique valid indices."""

    @abstractmethod
    def _decode_sequential(self, start: int, step: int = 1) -> Iterator[tuple[int, float, torch.Tensor]]:
        """``(index, timestamp, uint8 [H, W, 3])`` for frames ``start, start + step, ...`` to the end, in order."""

    def close(self) -> None:  # noqa: B027 - backends without resources need not override
        """Release decoder resources."""

    # ---- the contract ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.info.num_frames

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get_frames(self, indices: Sequence[int]) -> Frames:
        """Frames at ``indices`` (any order, repeats allowed), returned in the order asked.

        Returns ``Frames`` with ``data`` uint8 ``[T, H, W, 3]`` or float ``[T, 3, S, S]``, ``T = len(indices)``.
        """
        idx = [int(i) for i in indices]
        if not idx:
            raise ValueError(f"{self.path}: no frame indices requested")
        n = self.info.num_frames
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise FrameIndexError(self.path, f"frame index {bad[0]} out of range: the video has {n} frames")
        unique = sorted(set(idx))
        data, stamps = self._decode(unique)
        if len(stamps) != len(unique) or data.shape[0] != len(unique):
            raise RuntimeError(f"{self.path}: {self.backend_name} returned {data.shape[0]} frames for {len(unique)}")
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
        """SPEC §2.3 clip: stride ``max(1, round(fps / target_fps))``, ``num_frames`` frames centred in the video.

        ``random_offset=True`` (training) draws the start uniformly instead of centring it. Short videos give the
        frames ``0, stride, ...`` that exist with the last one repeated. ``stride`` overrides ``target_fps``.
        """
        n = self.info.num_frames
        s = stride if stride is not None else clip_stride(self.info.fps, target_fps)
        if random_offset:
            idx = random_clip_indices(n, num_frames, s, generator=generator)
        else:
            idx = centered_clip_indices(n, num_frames, s)
        return self.get_frames(idx)

    def strided_indices(self, target_fps: float | None = None) -> list[int]:
        """Every frame at ``target_fps`` from the start (the reference's ``num_frames=None`` mode)."""
        return all_strided_indices(self.info.num_frames, clip_stride(self.info.fps, target_fps))

    def stream(self, start: int = 0, chunk_size: int = 1, target_fps: float | None = None) -> Iterator[Frames]:
        """Frames from ``start`` to the end in chunks of ``chunk_size``, decoded sequentially (bounded memory).

        With ``target_fps`` only every ``round(fps / target_fps)``-th frame (counting from ``start``) is yielded.
        Works for live sources too: nothing here needs the frame count.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
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
