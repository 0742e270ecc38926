"""Live and unbounded sources (URLs, capture devices, pipes, readable file objects), read once front to back."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch

from .containers import no_decoder, open_failure
from .errors import CorruptVideoError, FrameIndexError, NoVideoFramesError, require_backend
from .pyav import rotate_display
from .source import StreamSource, VideoInfo


class LiveSource(StreamSource):
    """A live or unbounded source read once, front to back, with PyAV: a URL (``rtsp://``, ``http://``), a capture
    device, a pipe or any readable file object, or a file too long to index.

    A ``StreamSource``: it streams and nothing else (no seeking, no frame count: ``info.num_frames`` is 0). Index ``i``
    is the ``i``-th decoded frame; its timestamp is the frame's presentation time from the first frame's. Memory is
    bounded by ``chunk_size`` frames. A stream goes forward only: a later ``stream(start=k)`` goes on from frame ``k``
    when ``k`` has not been read yet; asking for a frame already passed raises ``FrameIndexError``.

    Args:
        source: anything ``av.open`` accepts.
        format: the container format when it cannot be probed (e.g. ``"matroska"`` for a pipe, ``"v4l2"``).
        options: FFmpeg demuxer/protocol options, e.g. ``{"rtsp_transport": "tcp"}``.
        Other arguments as ``StreamSource``.
    """

    backend_name = "pyav-live"

    def __init__(self, source, *, format: str | None = None, options: dict[str, str] | None = None, **kwargs):
        super().__init__(source, **kwargs)
        av = self._av = require_backend("pyav", "live sources (open_stream)")
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()
        self._container = None
        self._next = 0
        self._t0: float | None = None
        try:
            self._container = av.open(source, mode="r", format=format, options=options or {}, metadata_errors="ignore")
        except av.error.FFmpegError as e:
            if isinstance(source, str | os.PathLike) and os.path.isfile(source):
                raise open_failure(self.path, str(e)) from e
            raise CorruptVideoError(self.path, f"cannot open the live source: {e}") from e
        if not self._container.streams.video:
            self.close()
            raise NoVideoFramesError(self.path, "no video stream in the live source")
        self._stream = self._container.streams.video[0]
        if self._stream.codec_context is None:
            self.close()
            raise no_decoder(self.path)
        self._stream.thread_type = "SLICE"
        rate = self._stream.average_rate or self._stream.guessed_rate
        ctx = self._stream.codec_context
        self._frames = self._container.decode(self._stream)
        self._info = VideoInfo(
            path=self.path,
            backend=self.backend_name,
            codec=ctx.name,
            num_frames=0,
            fps=float(rate) if rate else 0.0,
            width=ctx.width,
            height=ctx.height,
            has_audio=bool(self._container.streams.audio),
        )

    @property
    def info(self) -> VideoInfo:
        return self._info

    def _decode_sequential(self, start: int, step: int = 1) -> Iterator[tuple[int, float, torch.Tensor]]:
        if start < self._next:
            raise FrameIndexError(self.path, f"a live source cannot go back to frame {start} (next is {self._next})")
        av = self._av
        try:
            for frame in self._frames:
                i = self._next
                self._next += 1
                t = float(frame.time) if frame.time is not None else (i / self._info.fps if self._info.fps else 0.0)
                if self._t0 is None:
                    self._t0 = t  # timestamps count from the first frame's, as on the file backends
                if i < start or (i - start) % step:
                    continue
                rgb = self._reformatter.reformat(frame, format="rgb24").to_ndarray()
                rotation = int(getattr(frame, "rotation", 0) or 0) % 360
                yield i, t - self._t0, torch.from_numpy(rotate_display(rgb, rotation))
        except av.error.FFmpegError as e:
            raise CorruptVideoError(self.path, f"live decoding failed after frame {self._next - 1} ({e})") from e

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
