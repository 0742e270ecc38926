"""coldstream.io: video files and live streams to frames on the right device, with each frame's index and timestamp.

    from coldstream.io import open_video
    with open_video("clip.mp4", device="cuda", output="float", size=224) as src:
        clip = src.clip(16, target_fps=6)        # Frames(data [16, 3, 224, 224], indices, timestamps)
        for chunk in src.stream(chunk_size=8):   # bounded memory, frame by frame
            ...

Backends: ``"pyav"`` (CPU, default), ``"opencv"`` (CPU without PyAV), ``"dali"`` (NVDEC on ``cuda`` devices, DALI's
CPU decoder for VP9/VP8/MJPEG on ``cpu``). Optional dependencies are imported only when used. The contract, the
sampling and preprocessing rules, the errors and measurements: ``docs/video-io.md``.
"""

from __future__ import annotations

import logging
import os

import torch

from coldstream import optional
from coldstream.errors import InputError

from .errors import (
    BackendUnavailableError,
    CorruptVideoError,
    FrameIndexError,
    NotAVideoError,
    NoVideoFramesError,
    UnsupportedCodecError,
    VideoError,
    VideoNotFoundError,
)
from .sampling import centered_clip_indices, clip_stride, random_clip_indices, shard
from .source import Frames, FrameSource, StreamSource, VideoInfo

__all__ = [
    "BackendUnavailableError",
    "CorruptVideoError",
    "FrameIndexError",
    "FrameSource",
    "Frames",
    "NoVideoFramesError",
    "NotAVideoError",
    "StreamSource",
    "UnsupportedCodecError",
    "VideoError",
    "VideoInfo",
    "VideoNotFoundError",
    "available_backends",
    "centered_clip_indices",
    "clip_stride",
    "open_stream",
    "open_video",
    "random_clip_indices",
    "shard",
]

BACKENDS = ("auto", "cpu", "pyav", "opencv", "dali")
log = logging.getLogger("coldstream.io")
_said_auto: set[str] = set()


def available_backends() -> dict[str, tuple[bool, str]]:
    """Each backend -> ``(usable, version or the reason it is not)``; for ``coldstream info``."""
    rows = {}
    for name, label in (("pyav", "PyAV"), ("opencv", "OpenCV")):
        why = optional.unavailable(name)
        rows[name] = (why is None, f"{label} {optional.version(name)}" if why is None else why)
    why_dali = optional.unavailable("dali")
    dali = f"nvidia-dali {optional.version('dali')}" if why_dali is None else why_dali
    gpu = torch.cuda.is_available()
    rows["dali-cpu"] = (why_dali is None, f"{dali} (VP9, VP8, MJPEG only)" if why_dali is None else dali)
    rows["dali-gpu"] = (why_dali is None and gpu, "no CUDA GPU" if why_dali is None and not gpu else dali)
    return rows


def open_video(
    path: str | os.PathLike,
    *,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    **kwargs,
) -> FrameSource:
    """Open one video as a ``FrameSource``.

    Args:
        backend: ``"auto"`` (DALI for CUDA devices when installed and the codec is supported, else the CPU backend),
            ``"cpu"`` (PyAV, or OpenCV without PyAV), ``"pyav"``, ``"opencv"``, ``"dali"``. An explicit backend never
            falls back: it raises ``BackendUnavailableError`` (with the install command) or ``UnsupportedCodecError``.
        device: where frames are returned.
        kwargs: ``output`` ("uint8" | "float"), ``size``, ``mean``, ``std`` and backend options.

    Raises:
        VideoError subclasses naming the file and the problem.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    device = torch.device(device)
    if backend == "dali":
        from .dali import DALISource

        return DALISource(path, device=device, **kwargs)
    if backend == "pyav":
        from .pyav import PyAVSource

        return PyAVSource(path, device=device, **kwargs)
    if backend == "opencv":
        from .opencv import OpenCVSource

        return OpenCVSource(path, device=device, **kwargs)
    if backend == "auto" and device.type == "cuda":
        from .dali import DALISource

        why = optional.unavailable("dali")
        if why is None:
            try:
                return DALISource(path, device=device, **kwargs)
            except UnsupportedCodecError as e:
                _say_once("codec", f"auto backend: {e.problem}; decoding on the CPU instead")
        else:
            _say_once("nodali", f"auto backend: DALI unavailable ({why}); decoding on the CPU and copying to {device}")
    return _open_cpu(path, device, **kwargs)


def _open_cpu(path, device, **kwargs) -> FrameSource:
    from .opencv import OpenCVSource
    from .pyav import PyAVSource

    if optional.unavailable("pyav") is None:
        return PyAVSource(path, device=device, **kwargs)
    if optional.unavailable("opencv") is None:
        _say_once("nopyav", "CPU backend: PyAV missing, using OpenCV (sequential reads, container frame counts)")
        return OpenCVSource(path, device=device, **kwargs)
    raise BackendUnavailableError(
        f"no CPU video decoder installed: {optional.install_command('pyav')}  "
        f"(or: {optional.install_command('opencv')})"
    )


def _say_once(key: str, message: str) -> None:
    if key not in _said_auto:
        _said_auto.add(key)
        log.warning(message)


def open_stream(source, *, device: str | torch.device = "cpu", **kwargs) -> StreamSource:
    """Open a live or unbounded source (URL, capture device, pipe, readable file object) as a ``StreamSource``:
    ``stream()`` only, no random access.

    Frames are indexed in arrival order and never held beyond one chunk. See ``coldstream.io.live.LiveSource``.
    """
    from .live import LiveSource

    return LiveSource(source, device=device, **kwargs)
