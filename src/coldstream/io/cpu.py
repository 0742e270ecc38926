"""CPU backends: PyAV (default: exact indices, frame-accurate seeking, metadata) and OpenCV (fallback, sequential).

Chosen by measurement on the 2-core development machine (``bench/test_io.py``; numbers in the issue notes, taken
under load from other jobs, so ratios are rough): OpenCV's reader and PyAV with a reused swscale context both reach
several thousand frames/s to RGB at 224² H.264 and give bit-identical RGB (both are FFmpeg + swscale). OpenCV
estimates frame counts from the container, seeks by ``frame / fps`` (wrong for variable frame rate) and hides the
stream; PyAV gives the packet index (exact count, presentation timestamps, keyframes), frame-accurate seeking by
timestamp and the rotation matrix. So ``PyAVSource`` is the CPU backend and the index authority; ``OpenCVSource``
exists for machines without PyAV (the GPU machines) and reads sequentially (``grab`` up to each wanted frame, never
seeking), which keeps its indices exact at the cost of decoding from the start. torchcodec was not adopted: its CPU
builds (0.11-0.13) need FFmpeg from apt and newer wheels are CUDA-only (PLATFORM.md), for no exactness gain.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import torch

from .errors import (
    OPENCV_INSTALL,
    PYAV_INSTALL,
    BackendUnavailableError,
    CorruptVideoError,
    FrameIndexError,
    NotAVideoError,
    NoVideoFramesError,
    UnsupportedCodecError,
    VideoError,
)
from .source import FrameSource, VideoInfo, stack_frames

# Leading bytes of the containers we know; a file that fails to open and starts with one of these is a broken video,
# anything else is not a video at all.
_CONTAINER_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # MP4 / MOV / 3GP
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (0, b"RIFF"),  # AVI
    (0, b"OggS"),
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"\x47"),  # MPEG-TS (weak, checked last)
)


def looks_like_video_container(path: str) -> bool:
    """Whether the file starts like a known video container (used to tell "corrupt video" from "not a video")."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return any(head[off : off + len(magic)] == magic for off, magic in _CONTAINER_MAGIC)


def _open_failure(path: str, detail: str) -> VideoError:
    if os.path.getsize(path) == 0:
        return NotAVideoError(path, "empty file (0 bytes)")
    if looks_like_video_container(path):
        return CorruptVideoError(path, f"truncated or corrupt video container: {detail}")
    return NotAVideoError(path, f"not a video file (no decoder recognises its format): {detail}")


def _rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    # FFmpeg's display rotation is counter-clockwise, as np.rot90 with positive k (checked against OpenCV's autorotate).
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _import_av():
    try:
        import av
    except ImportError as e:
        raise BackendUnavailableError(f"the PyAV CPU backend needs PyAV: {PYAV_INSTALL}  ({e})") from e
    return av


class PyAVSource(FrameSource):
    """CPU decoding with PyAV: exact display-order indices from the packet index, seeks by presentation timestamp.

    ``threads``: decoder threads (0 = FFmpeg's choice). ``frame_threads``: frame threading as well as slice threading
    (measured slower on the 2-core machine for 224² streams; may pay off for one large stream on many cores).
    """

    backend_name = "pyav"

    def __init__(self, path, *, threads: int = 0, frame_threads: bool = False, **kwargs):
        super().__init__(path, **kwargs)
        self._av = _import_av()
        from av.video.reformatter import VideoReformatter

        # One reformatter per source keeps FFmpeg's swscale context between frames: 4-6x faster YUV -> RGB than
        # frame.to_ndarray(format="rgb24"), which builds a new context per frame (bit-identical output).
        self._reformatter = VideoReformatter()
        self._threads = threads
        self._frame_threads = frame_threads
        self._container = None
        self._open()
        self._build_index()
        self._probe_first_frame()

    # ---- opening and indexing -----------------------------------------------------------------------------------
    def _open(self):
        av = self._av
        try:
            self._container = av.open(self.path, mode="r", metadata_errors="ignore")
        except av.error.FFmpegError as e:
            raise _open_failure(self.path, str(e)) from e
        streams = self._container.streams
        if not streams.video:
            kinds = ", ".join(f"{s.type} ({s.codec_context.name})" for s in streams) or "none"
            self.close()
            raise NoVideoFramesError(self.path, f"no video stream (streams found: {kinds})")
        self._stream = streams.video[0]
        self._stream.thread_type = "AUTO" if self._frame_threads else "SLICE"
        self._stream.thread_count = self._threads
        self._has_audio = bool(streams.audio)
        self._codec = self._stream.codec_context.name

    def _build_index(self):
        """Demux (no decoding) the video stream: presentation timestamps in display order and keyframes."""
        av = self._av
        pts, keys = [], []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                pts.append(t)
                keys.append(bool(packet.is_keyframe))
        except av.error.FFmpegError as e:
            raise CorruptVideoError(self.path, f"cannot read the video packets ({e})") from e
        if not pts:
            raise NoVideoFramesError(self.path, f"the {self._codec} video stream holds zero frames")
        if any(t is None for t in pts):
            # Containers without timestamps: frames are in stream order.
            pts = list(range(len(pts)))
            self._time_base = Fraction(1, 1)
            self._timestamps_known = False
        else:
            self._time_base = self._stream.time_base or Fraction(1, 1)
            self._timestamps_known = True
        order = sorted(range(len(pts)), key=lambda i: pts[i])
        self._pts = [pts[i] for i in order]
        if len(set(self._pts)) != len(self._pts):
            raise CorruptVideoError(self.path, "several video frames share one presentation timestamp")
        self._pts_to_index = {t: i for i, t in enumerate(self._pts)}
        self._key_indices = sorted(self._pts_to_index[pts[i]] for i in range(len(pts)) if keys[i]) or [0]
        n = len(self._pts)
        declared = self._stream.frames or 0
        if declared > n:
            raise CorruptVideoError(
                self.path, f"truncated: the container declares {declared} video frames but only {n} are present"
            )
        tb = self._time_base
        span = (self._pts[-1] - self._pts[0]) * tb
        # The container's nominal rate when the timestamps agree with it (millisecond time bases make 30 fps measure
        # as 29.99, and round(fps / target) must not flip on that); otherwise the measured average.
        nominal = next(
            (Fraction(r) for r in (self._stream.average_rate, self._stream.guessed_rate) if r and r > 0), None
        )
        measured = Fraction(n - 1) / span if n >= 2 and span > 0 else None
        if measured is None or (nominal is not None and abs(nominal - measured) <= Fraction(1, 100) * measured):
            self._fps = nominal if nominal is not None else Fraction(0)
        else:
            self._fps = measured
        deltas = np.diff(np.asarray(self._pts, dtype=np.float64)) * float(tb)
        # Jitter of one time-base tick (timestamps rounded to the time base) is not a variable frame rate.
        self._vfr = bool(deltas.size and deltas.max() - deltas.min() > max(1e-3, 2 * float(tb)) + 1e-9)
        frame_dur = float(np.median(deltas)) if deltas.size else (1 / float(self._fps) if self._fps else 0.0)
        self._duration = float(span) + frame_dur
        if self._timestamps_known and len(self._container.streams) == 1 and self._container.duration:
            declared_s = self._container.duration / 1_000_000
            if declared_s - self._duration > max(2 * frame_dur, 0.1 * declared_s):
                raise CorruptVideoError(
                    self.path,
                    f"truncated: the container declares {declared_s:.3f} s of video but the data ends after "
                    f"{self._duration:.3f} s ({n} frames)",
                )

    def _probe_first_frame(self):
        """Decode frame 0: proves the stream decodes and gives size, pixel format and rotation."""
        first = None
        for _, frame in self._decoded_frames(0):
            first = frame
            break
        if first is None:
            raise CorruptVideoError(self.path, f"no {self._codec} frame could be decoded")
        self._rotation = int(getattr(first, "rotation", 0) or 0) % 360
        w, h = first.width, first.height
        if self._rotation in (90, 270):
            w, h = h, w
        self._info = VideoInfo(
            path=self.path,
            backend=self.backend_name,
            codec=self._codec,
            num_frames=len(self._pts),
            fps=float(self._fps),
            width=w,
            height=h,
            rotation=self._rotation,
            duration=self._duration,
            variable_frame_rate=self._vfr,
            has_audio=self._has_audio,
        )

    @property
    def info(self) -> VideoInfo:
        return self._info

    @property
    def fps_exact(self) -> Fraction:
        """The average frame rate as an exact fraction (so ``round(fps / target)`` has no float error)."""
        return self._fps

    @property
    def keyframe_indices(self) -> list[int]:
        """Display-order indices of keyframes (seek points)."""
        return list(self._key_indices)

    def timestamp(self, index: int) -> float:
        """Presentation time of frame ``index`` in seconds."""
        return float(self._pts[index] * self._time_base)

    # ---- decoding -------------------------------------------------------------------------------------------------
    def _decoded_frames(self, start: int) -> Iterator[tuple[int, object]]:
        """``(index, av.VideoFrame)`` from the keyframe at or before ``start`` onward (indices may start < start)."""
        av = self._av
        key = self._key_indices[bisect.bisect_right(self._key_indices, start) - 1]
        try:
            self._container.seek(self._pts[key], backward=True, any_frame=False, stream=self._stream)
        except av.error.FFmpegError as e:
            raise CorruptVideoError(self.path, f"cannot seek to frame {start} ({e})") from e
        count = key - 1
        try:
            for frame in self._container.decode(self._stream):
                if self._timestamps_known and frame.pts is not None:
                    idx = self._pts_to_index.get(frame.pts)
                    if idx is None:
                        continue  # a frame the index does not know (e.g. before an edit list's start)
                else:
                    idx = count + 1
                count = idx
                yield idx, frame
        except av.error.FFmpegError as e:
            raise CorruptVideoError(self.path, f"corrupt data: cannot decode frame {count + 1} ({e})") from e

    def _to_rgb(self, frame) -> torch.Tensor:
        rgb = self._reformatter.reformat(frame, format="rgb24").to_ndarray()
        return torch.from_numpy(_rotate(rgb, self._rotation))

    def _decode(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        out: dict[int, torch.Tensor] = {}
        pending = list(indices)  # sorted, unique
        while pending:
            target = pending[0]
            for idx, frame in self._decoded_frames(target):
                if idx < pending[0]:
                    continue
                if idx == pending[0]:
                    out[idx] = self._to_rgb(frame)
                    pending.pop(0)
                    if not pending:
                        break
                    # Seek instead of decoding on when a keyframe lies between here and the next wanted frame.
                    if self._key_indices[bisect.bisect_right(self._key_indices, pending[0]) - 1] > idx + 1:
                        break
                elif idx > pending[0]:
                    raise CorruptVideoError(self.path, f"frame {pending[0]} is missing from the decoded stream")
            else:
                raise CorruptVideoError(
                    self.path, f"frames {pending[:5]} could not be decoded (the stream ends early: truncated?)"
                )
        return stack_frames([out[i] for i in indices]), [self.timestamp(i) for i in indices]

    def _decode_sequential(self, start: int, step: int = 1) -> Iterator[tuple[int, float, torch.Tensor]]:
        if start >= len(self._pts):
            return
        expected = start
        for idx, frame in self._decoded_frames(start):
            if idx < start:
                continue
            if idx != expected:
                raise CorruptVideoError(self.path, f"frame {expected} is missing from the decoded stream")
            expected += 1
            if (idx - start) % step == 0:
                yield idx, self.timestamp(idx), self._to_rgb(frame)
        if expected < len(self._pts):
            raise CorruptVideoError(
                self.path, f"the stream ends after frame {expected - 1} but the index has {len(self._pts)} frames"
            )

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _import_cv2():
    try:
        import cv2
    except ImportError as e:
        raise BackendUnavailableError(f"the OpenCV CPU backend needs OpenCV: {OPENCV_INSTALL}  ({e})") from e
    return cv2


class OpenCVSource(FrameSource):
    """CPU decoding with OpenCV's FFmpeg reader, for machines without PyAV.

    Reads sequentially and never seeks, so indices are exact; the frame count is the container's figure (exact for
    MP4/MOV/AVI with an index, an estimate from duration x fps for WebM/MKV) and is corrected if decoding ends
    early. Rotation metadata is applied by OpenCV itself.
    """

    backend_name = "opencv"

    def __init__(self, path, **kwargs):
        super().__init__(path, **kwargs)
        self._cv2 = cv2 = _import_cv2()
        self._cap = None
        self._cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            raise _open_failure(self.path, "OpenCV could not open it (broken container, or no decodable video stream)")
        fourcc = int(self._cap.get(cv2.CAP_PROP_FOURCC))
        codec = fourcc.to_bytes(4, "little").decode("ascii", "replace").strip("\x00").lower() if fourcc else "unknown"
        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self._pos = 0  # index of the next frame grab() returns
        ok, first = self._read_next()
        if not ok:
            raise NoVideoFramesError(self.path, "no video frame could be decoded (no video stream, or zero frames)")
        self._first = first
        h, w = first[1].shape[:2]
        self._info = VideoInfo(
            path=self.path,
            backend=self.backend_name,
            codec=codec,
            num_frames=max(n, 1),
            fps=fps,
            width=w,
            height=h,
            duration=n / fps if fps > 0 else 0.0,
        )

    @property
    def info(self) -> VideoInfo:
        return self._info

    def _read_next(self) -> tuple[bool, tuple[float, np.ndarray] | None]:
        cv2 = self._cv2
        if not self._cap.grab():
            return False, None
        t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        ok, bgr = self._cap.retrieve()
        if not ok:
            raise CorruptVideoError(self.path, f"frame {self._pos} could not be decoded")
        self._pos += 1
        return True, (t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def _rewind(self):
        self._cap.release()
        self._cap = self._cv2.VideoCapture(self.path, self._cv2.CAP_FFMPEG)
        self._pos = 0

    def _frames_from(self, start: int, step: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
        if start < self._pos:
            self._rewind()
        while self._pos < start:  # grab() skips the RGB conversion
            if not self._cap.grab():
                return
            self._pos += 1
        while True:
            i = self._pos
            if (i - start) % step:
                if not self._cap.grab():  # decode without the RGB conversion
                    ok = False
                else:
                    self._pos += 1
                    continue
            else:
                ok, item = self._read_next()
            if not ok:
                if i < self._info.num_frames:
                    # The container over-counted: keep what decodes (OpenCV's count is an estimate for some formats).
                    self._info = VideoInfo(**{**self._info.__dict__, "num_frames": i})
                return
            yield i, item[0], item[1]

    def _decode(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        frames, stamps = [], []
        it = self._frames_from(indices[0])
        want = iter(indices)
        target = next(want)
        for i, t, rgb in it:
            if i == target:
                frames.append(torch.from_numpy(rgb))
                stamps.append(t)
                target = next(want, None)
                if target is None:
                    break
                while self._pos < target:
                    if not self._cap.grab():
                        break
                    self._pos += 1
        if len(frames) != len(indices):
            raise CorruptVideoError(self.path, f"the stream ended before frame {target} (decoded {self._pos} frames)")
        return stack_frames(frames), stamps

    def _decode_sequential(self, start: int, step: int = 1) -> Iterator[tuple[int, float, torch.Tensor]]:
        for i, t, rgb in self._frames_from(start, step):
            yield i, t, torch.from_numpy(rgb)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def unsupported(path: str, backend: str, codec: str, supported: tuple[str, ...]) -> UnsupportedCodecError:
    """The error a backend raises for a codec it cannot decode."""
    return UnsupportedCodecError(
        path, f"the {backend} backend cannot decode {codec} video (it decodes: {', '.join(supported)})"
    )


class LiveSource(FrameSource):
    """A live or unbounded source read once, front to back, with PyAV: a URL (``rtsp://``, ``http://``), a capture
    device, a pipe or any readable file object, or a file too long to index.

    Only :meth:`stream` works (no seeking, no frame count: ``info.num_frames`` is 0). Index ``i`` is the ``i``-th
    decoded frame; its timestamp is the frame's presentation time. Memory is bounded by ``chunk_size`` frames.

    Args:
        source: anything ``av.open`` accepts.
        format: the container format when it cannot be probed (e.g. ``"matroska"`` for a pipe, ``"v4l2"``).
        options: FFmpeg demuxer/protocol options, e.g. ``{"rtsp_transport": "tcp"}``.
    """

    backend_name = "pyav-live"
    requires_file = False

    def __init__(self, source, *, format: str | None = None, options: dict[str, str] | None = None, **kwargs):
        super().__init__(source, **kwargs)
        av = self._av = _import_av()
        self._reformatter = __import__("av.video.reformatter", fromlist=["VideoReformatter"]).VideoReformatter()
        self._next = 0
        try:
            self._container = av.open(source, mode="r", format=format, options=options or {}, metadata_errors="ignore")
        except av.error.FFmpegError as e:
            if isinstance(source, str | os.PathLike) and os.path.isfile(source):
                raise _open_failure(self.path, str(e)) from e
            raise CorruptVideoError(self.path, f"cannot open the live source: {e}") from e
        if not self._container.streams.video:
            raise NoVideoFramesError(self.path, "no video stream in the live source")
        self._stream = self._container.streams.video[0]
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

    def get_frames(self, indices):
        raise NotImplementedError(f"{self.path}: a live source cannot seek; read it with stream()")

    def clip(self, *args, **kwargs):
        raise NotImplementedError(f"{self.path}: a live source has no frame count to centre a clip in; use stream()")

    def _decode(self, indices):  # pragma: no cover - get_frames is overridden
        raise NotImplementedError

    def _decode_sequential(self, start: int, step: int = 1) -> Iterator[tuple[int, float, torch.Tensor]]:
        if start < self._next:
            raise FrameIndexError(self.path, f"a live source cannot go back to frame {start} (next is {self._next})")
        av = self._av
        try:
            for frame in self._frames:
                i = self._next
                self._next += 1
                if i < start or (i - start) % step:
                    continue
                t = float(frame.time) if frame.time is not None else (i / self._info.fps if self._info.fps else 0.0)
                rgb = self._reformatter.reformat(frame, format="rgb24").to_ndarray()
                yield i, t, torch.from_numpy(_rotate(rgb, int(getattr(frame, "rotation", 0) or 0) % 360))
        except av.error.FFmpegError as e:
            raise CorruptVideoError(self.path, f"live decoding failed after frame {self._next - 1} ({e})") from e

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            self._container.close()
            self._container = None
