"""The PyAV backend: the default CPU decoder and the index authority.

PyAV reads the container's packet index (exact frame count, presentation timestamps, keyframes), seeks frame-accurately
by timestamp and reports the display rotation; where a file's timestamps do not give display order it indexes the file
by decoding it once (see :class:`PyAVSource`). Why it is the CPU default, and measurements: ``docs/video-io.md``.
"""

from __future__ import annotations

import bisect
from collections.abc import Generator, Iterator
from fractions import Fraction

import numpy as np
import torch

from coldstream.errors import InputError

from .containers import missing_bytes, no_decoder, open_failure
from .errors import CorruptVideoError, NoVideoFramesError, require_backend
from .source import FrameSource, VideoInfo, stack_frames, warn_once


def _codec_name(stream) -> str:
    # PyAV gives a stream no codec context when FFmpeg has no decoder for its codec.
    return stream.codec_context.name if stream.codec_context is not None else "unknown codec"


def rotate_display(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, a multiple of 90) to uint8 ``[H, W, 3]``."""
    # FFmpeg's display rotation is counter-clockwise, as np.rot90 with positive k (checked against OpenCV's autorotate).
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


class PyAVSource(FrameSource):
    """CPU decoding with PyAV: exact display-order indices, seeks to keyframes by container timestamp.

    Frame ``i`` is the ``i``-th picture FFmpeg's decoder outputs when the stream is decoded from its start (what
    OpenCV's sequential reader and every player show). Two ways to index that without decoding everything each time:

    * ``index="packets"``: demux only; the packets' presentation timestamps in sorted order. Exact when the container
      stores real presentation timestamps (MP4/MOV with composition offsets, MKV, WebM, AVI without B-frames).
    * ``index="decode"``: one decoding pass at open time (no RGB conversion) records the decoder's output order.
      Needed when the container's timestamps do not describe display order: B-frames muxed without composition
      offsets (pts == dts), AVI with (packed) B-frames whose timestamps FFmpeg can only guess, packets without
      timestamps or with duplicated ones, a decoder that drops a packet.
    * ``index="auto"`` (default): ``packets``, switching to ``decode`` (logged once per file) when the packets show one
      of those problems or when the first decoded frames disagree with the packet index.

    Decoded frames are identified by the timestamp the decoder passes through (unique per packet) and, where that is
    missing or repeated, by counting on from the last identified frame; a seek that overshoots retries from an
    earlier keyframe, down to the start of the file, so a wrong seek can cost time but never a wrong frame.

    ``threads``: decoder threads (0 = FFmpeg's choice). ``frame_threads``: frame threading as well as slice threading
    (off by default: slower for small streams on few cores, see ``docs/video-io.md``; may pay off for one large stream
    on many cores).
    """

    backend_name = "pyav"
    VERIFY_FRAMES = 4  # frames (plus the reorder depth) decoded at open to check a B-frame stream's packet index

    def __init__(self, path, *, threads: int = 0, frame_threads: bool = False, index: str = "auto", **kwargs):
        super().__init__(path, **kwargs)
        if index not in ("auto", "packets", "decode"):
            raise InputError(f"index must be 'auto', 'packets' or 'decode', got {index!r}")
        self._av = require_backend("pyav", "the PyAV CPU backend")
        from av.video.reformatter import VideoReformatter

        # One reformatter per source keeps FFmpeg's swscale context between frames: several times faster YUV -> RGB
        # than frame.to_ndarray(format="rgb24"), which builds a new context per frame (bit-identical output).
        self._reformatter = VideoReformatter()
        self._threads = threads
        self._frame_threads = frame_threads
        self._container = None
        self._first_frame = None
        self._open()
        self._scan_packets()
        why = self._packet_index_problem() if index == "auto" else None
        if index == "decode" or why:
            self._index_by_decoding(why)
        else:
            self._index_by_packets()
            if index == "auto":
                why = self._verify_first_frames()
                if why:
                    self._index_by_decoding(why)
        self._probe_first_frame()

    # ---- opening and indexing -----------------------------------------------------------------------------------
    def _open(self):
        av = self._av
        try:
            self._container = av.open(self.path, mode="r", metadata_errors="ignore")
        except av.error.FFmpegError as e:
            raise open_failure(self.path, str(e)) from e
        streams = self._container.streams
        if not streams.video:
            kinds = ", ".join(f"{s.type} ({_codec_name(s)})" for s in streams) or "none"
            self.close()
            raise NoVideoFramesError(self.path, f"no video stream (streams found: {kinds})")
        self._stream = streams.video[0]
        if self._stream.codec_context is None:
            self.close()
            raise no_decoder(self.path)
        self._stream.thread_type = "AUTO" if self._frame_threads else "SLICE"
        self._stream.thread_count = self._threads
        self._has_audio = bool(streams.audio)
        self._codec = self._stream.codec_context.name

    def _scan_packets(self):
        """Demux (no decoding) the video stream: each packet's pts, dts and keyframe flag, in decode order."""
        av = self._av
        self._packets: list[tuple[int | None, int | None, bool]] = []
        self._discarded = 0
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                if packet.is_discard:
                    # Before an edit list's start: decoded as a reference but never shown (the decoder drops it).
                    self._discarded += 1
                    continue
                self._packets.append((packet.pts, packet.dts, bool(packet.is_keyframe)))
        except av.error.FFmpegError as e:
            raise CorruptVideoError(self.path, f"cannot read the video packets ({e})") from e
        if not self._packets:
            raise NoVideoFramesError(self.path, f"the {self._codec} video stream holds zero frames")
        self._time_base = self._stream.time_base or Fraction(1, 1)
        known = [t for t in (p[1] if p[1] is not None else p[0] for p in self._packets) if t is not None]
        self._start_ts = min(known) if known else 0  # seeking here restarts decoding from the first packet
        self._check_file_size()  # before any decoding: a cut-off file is not worth indexing

    def _check_file_size(self):
        """Raise when the file is shorter than its own headers say and frames the header counts are missing."""
        declared, present = self._stream.frames or 0, len(self._packets) + self._discarded
        if declared <= present:
            return
        missing = missing_bytes(self.path)
        if missing:
            raise CorruptVideoError(
                self.path, f"truncated: {missing}; {present} of {declared} declared video frames are present"
            )

    def _packet_index_problem(self) -> str | None:
        """Why the packets' timestamps cannot give display order, or None when they can."""
        pts = [p[0] for p in self._packets]
        if any(t is None for t in pts):
            return f"{sum(t is None for t in pts)} of {len(pts)} video packets have no presentation timestamp"
        if len(set(pts)) != len(pts):
            return f"{len(pts) - len(set(pts))} video packets repeat another packet's presentation timestamp"
        reorders = bool(getattr(self._stream.codec_context, "has_b_frames", False))
        if reorders and len(pts) > 1 and all(p[0] == p[1] for p in self._packets):
            return "the stream has B-frames but its packets carry decode timestamps only (pts == dts)"
        if not reorders and any(b[0] <= a[0] for a, b in zip(self._packets, self._packets[1:], strict=False)):
            return "the stream has no B-frames but its packets' presentation timestamps go backwards"
        if reorders and self._container.format.name == "avi":
            return "AVI stores no presentation timestamps and this stream has B-frames (FFmpeg guesses their order)"
        return None

    def _index_by_packets(self):
        self._index_mode = "packets"
        pts = sorted(p[0] for p in self._packets)
        keys = {p[0] for p in self._packets if p[2]}
        self._set_index(pts, pts, [i for i, t in enumerate(pts) if t in keys], timestamps_known=True)
        self._check_declared_length(len(pts))

    def _index_by_decoding(self, why: str | None):
        """One decoding pass from the start: the decoder's output order is display order."""
        av = self._av
        keys, keyframes = [], []
        self._first_frame = None  # a frame 0 found by the packet index is not necessarily the decoder's first
        self._seek(0)
        try:
            for frame in self._container.decode(self._stream):
                if frame.key_frame:
                    keyframes.append(len(keys))
                keys.append(frame.pts)
        except av.error.FFmpegError as e:
            raise CorruptVideoError(self.path, f"corrupt data: cannot decode frame {len(keys)} ({e})") from e
        if not keys:
            raise CorruptVideoError(self.path, f"corrupt data: no {self._codec} frame could be decoded")
        n, npk = len(keys), len(self._packets)
        self._index_mode = "decode"
        if why is not None:
            warn_once(
                self.path, "decode", f"{self.path}: {why}; frames indexed by decoding the stream once ({n} frames)"
            )
        if n < npk:
            warn_once(
                self.path,
                "dropped",
                f"{self.path}: {npk} video packets decode to {n} pictures (the decoder drops "
                f"{npk - n}, as every FFmpeg-based player does); indexing the {n} pictures",
            )
        known = [k for k in keys if k is not None]
        dts = [p[1] for p in self._packets]
        if self._container.format.name == "avi" and n == npk and None not in dts:
            # AVI timestamps are frame slots: a packet's dts is its slot, its pts only FFmpeg's guess.
            ticks, timestamps_known = sorted(dts), True
        elif len(known) == n:
            # Display times: the decoder's timestamps may be decode times (pts == dts muxing) or FFmpeg's guesses;
            # sorted, they are the presentation grid (FFmpeg's own guess for streams without composition offsets).
            ticks, timestamps_known = sorted(known), True
        else:
            ticks, timestamps_known = list(range(n)), False
        self._set_index(keys, ticks, keyframes, timestamps_known=timestamps_known)
        if timestamps_known:
            self._check_declared_length(npk)  # the packets are all there: a decoder that drops some is logged above
        else:
            rate = self._nominal_rate()
            self._time_base = 1 / rate if rate else Fraction(1, 1)
            self._finish_timing()

    def _set_index(self, keys: list, ticks: list, keyframes: list[int], *, timestamps_known: bool):
        """``keys``: what the decoder reports as each display-order frame's pts; ``ticks``: display times."""
        self._keys = list(keys)
        counts: dict = {}
        for k in self._keys:
            counts[k] = counts.get(k, 0) + 1
        self._key_to_index = {k: i for i, k in enumerate(self._keys) if k is not None and counts[k] == 1}
        self._pts = list(ticks)
        self._timestamps_known = timestamps_known
        # Seek points: keyframes whose decoded frame can be recognised (frame 0 = the start of the file).
        self._key_indices = sorted({0} | {i for i in keyframes if self._keys[i] in self._key_to_index})
        # Seek by the keyframe's pts: FFmpeg's MP4 index is shifted by the edit list, so seeking by dts lands a whole
        # GOP early; a seek that lands late is caught (the frame comes out past its index) and retried earlier.
        self._seek_ts = {i: self._keys[i] for i in self._key_indices}
        self._seek_ts[0] = self._start_ts
        self._finish_timing()

    def _nominal_rate(self) -> Fraction | None:
        return next((Fraction(r) for r in (self._stream.average_rate, self._stream.guessed_rate) if r and r > 0), None)

    def _finish_timing(self):
        n = len(self._pts)
        tb = self._time_base
        span = (self._pts[-1] - self._pts[0]) * tb
        # The container's nominal rate when the timestamps agree with it (millisecond time bases make 30 fps measure
        # as 29.99, and round(fps / target) must not flip on that); otherwise the measured average.
        nominal = self._nominal_rate()
        measured = Fraction(n - 1) / span if n >= 2 and span > 0 else None
        if measured is None or (nominal is not None and abs(nominal - measured) <= Fraction(1, 100) * measured):
            self._fps = nominal if nominal is not None else Fraction(0)
        else:
            self._fps = measured
        deltas = np.diff(np.asarray(self._pts, dtype=np.float64)) * float(tb)
        # Jitter of one time-base tick (timestamps rounded to the time base) is not a variable frame rate.
        self._vfr = bool(deltas.size and deltas.max() - deltas.min() > max(1e-3, 2 * float(tb)) + 1e-9)
        self._frame_dur = float(np.median(deltas)) if deltas.size else (1 / float(self._fps) if self._fps else 0.0)
        self._duration = float(span) + self._frame_dur

    def _check_declared_length(self, present: int):
        """A truncated file (data really missing) raises; a header that merely over-counts frames is logged.

        ``present``: the frames (packets) the container really holds. AVI headers count empty "drop frame" chunks
        (variable frame rate) and some writers fill them in before capture ends, and FFmpeg takes an AVI's duration
        from that header: so an AVI is truncated only when the file is shorter than its RIFF header says. MP4/MOV
        durations come from the sample table, so timestamps that stop short of them mean missing data.
        """
        n = len(self._pts)
        tb = self._time_base
        end = self._duration + float(self._pts[0] * tb)
        declared = self._stream.frames or 0
        is_avi = self._container.format.name == "avi"
        if declared > present + self._discarded:
            self._check_file_size()
            stream_s = float(self._stream.duration * tb) if self._stream.duration else 0.0
            if not is_avi and stream_s and stream_s - end > max(2 * self._frame_dur, 0.1 * stream_s):
                raise CorruptVideoError(
                    self.path,
                    f"truncated: the container declares {declared} video frames ({stream_s:.3f} s) but only {n} "
                    f"are present, ending after {end:.3f} s",
                )
            warn_once(
                self.path,
                "declared",
                f"{self.path}: the container declares {declared} video frames but holds {n} pictures and no data is "
                f"missing (dropped-frame slots or a header written before capture ended); indexing the {n}",
            )
        if not is_avi and len(self._container.streams) == 1 and self._container.duration:
            declared_s = self._container.duration / 1_000_000
            # Containers differ on whether that duration counts from 0 (Matroska) or from the first timestamp (MP4):
            # the data is short only when it ends early either way.
            short = max(2 * self._frame_dur, 0.1 * declared_s)
            if declared_s - self._duration > short and declared_s - end > short:
                raise CorruptVideoError(
                    self.path,
                    f"truncated: the container declares {declared_s:.3f} s of video but the data ends after "
                    f"{self._duration:.3f} s ({n} frames)",
                )

    def _verify_first_frames(self) -> str | None:
        """Decode the first frames and check the packet index names them in the decoder's output order."""
        cc = self._stream.codec_context
        if not cc.has_b_frames:
            return None  # output order is decode order: _packet_index_problem has checked the pts against it
        m = min(len(self._pts), self.VERIFY_FRAMES + max(0, int(getattr(cc, "reorder_depth", 0) or 0)))
        got = []
        for idx, frame in self._decoded_frames(0):
            if idx == 0:
                self._first_frame = frame
            got.append(idx)
            if len(got) == m:
                break
        if got == list(range(m)):
            return None
        return (
            f"the decoder outputs frames in another order than the container's timestamps (frames {got} where the "
            f"packet index expects {list(range(m))})"
        )

    def _probe_first_frame(self):
        """Decode frame 0: proves the stream decodes and gives size, pixel format and rotation."""
        first, self._first_frame = self._first_frame, None
        if first is None:
            for idx, frame in self._decoded_frames(0):
                if idx == 0:
                    first = frame
                break
        if first is None:
            raise CorruptVideoError(self.path, f"corrupt data: no {self._codec} frame could be decoded")
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
    def index_mode(self) -> str:
        """``"packets"`` (demuxed timestamps) or ``"decode"`` (indexed by a decoding pass); see the class doc."""
        return self._index_mode

    @property
    def timestamps_known(self) -> bool:
        """Whether :meth:`timestamp` comes from the container (False: ``index / fps``)."""
        return self._timestamps_known

    @property
    def fps_exact(self) -> Fraction:
        """The average frame rate as an exact fraction (so ``round(fps / target)`` has no float error)."""
        return self._fps

    @property
    def keyframe_indices(self) -> list[int]:
        """Display-order indices of the seek points (keyframes)."""
        return list(self._key_indices)

    def timestamp(self, index: int) -> float:
        """Presentation time of frame ``index`` in seconds from the first frame's (as OpenCV counts: MPEG-TS clocks
        and Matroska/MP4 files cut from longer recordings start above 0)."""
        return float((self._pts[index] - self._pts[0]) * self._time_base)

    # ---- decoding -------------------------------------------------------------------------------------------------
    def _seek_point(self, index: int, before: int | None = None) -> int:
        """The last seek point at or before ``index`` (and strictly before ``before`` when given)."""
        limit = index if before is None else min(index, before - 1)
        return self._key_indices[bisect.bisect_right(self._key_indices, max(limit, 0)) - 1]

    def _seek(self, point: int) -> int:
        """Position the demuxer at seek point ``point`` (a display index); returns the point actually used.

        A failed seek falls back to the start of the file, and if even that cannot be sought to (raw elementary
        streams), the file is reopened.
        """
        av = self._av
        if point != 0:
            try:
                self._container.seek(self._seek_ts[point], backward=True, any_frame=False, stream=self._stream)
                return point
            except av.error.FFmpegError:
                pass
        try:
            self._container.seek(self._start_ts, backward=True, any_frame=False, stream=self._stream)
        except av.error.FFmpegError:
            self.close()
            self._open()
        return 0

    def _decoded_frames(self, start: int, seek_point: int | None = None) -> Iterator[tuple[int, object]]:
        """``(index, av.VideoFrame)`` from the seek point at or before ``start`` on (indices may start < start).

        Frames are identified by their decoder timestamp where it is unique, else by counting on from the last
        identified frame; frames before the first identified one (after a seek) are skipped.
        """
        av = self._av
        key = self._seek(self._seek_point(start) if seek_point is None else seek_point)
        last = -1 if key == 0 else None
        try:
            for frame in self._container.decode(self._stream):
                idx = self._key_to_index.get(frame.pts) if frame.pts is not None else None
                if idx is None:
                    if last is None:
                        continue  # not recognisable until a frame with a known timestamp comes
                    idx = last + 1
                last = idx
                if idx >= len(self._pts):
                    return
                yield idx, frame
        except av.error.FFmpegError as e:
            # Nothing identified yet after a seek: the keyframe sought to is the frame that failed.
            failed = key if last is None else last + 1
            raise CorruptVideoError(self.path, f"corrupt data: cannot decode frame {failed} ({e})") from e

    def _to_rgb(self, frame) -> torch.Tensor:
        rgb = self._reformatter.reformat(frame, format="rgb24").to_ndarray()
        return torch.from_numpy(rotate_display(rgb, self._rotation))

    def _missing(self, index: int) -> CorruptVideoError:
        hint = " (try index='decode')" if self._index_mode == "packets" else ""
        return CorruptVideoError(
            self.path,
            f"frame {index} is in the {self._index_mode} index but the decoder produced no picture for it, even "
            f"decoding from the start of the file{hint}",
        )

    def _decode(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        out: dict[int, torch.Tensor] = {}
        pending = list(indices)  # sorted, unique
        seek_point = None  # None: the natural seek point of pending[0]; else a retry from an earlier one
        while pending:
            target = pending[0]
            sp = self._seek_point(target) if seek_point is None else seek_point
            progressed, ended = False, True
            for idx, frame in self._decoded_frames(target, sp):
                if idx < pending[0]:
                    continue
                if idx > pending[0]:  # the seek landed past the frame, or the decoder skipped it
                    ended = False
                    break
                out[idx] = self._to_rgb(frame)
                pending.pop(0)
                progressed = True
                # Seek instead of decoding on when a keyframe lies between here and the next wanted frame.
                if not pending or self._seek_point(pending[0]) > idx + 1:
                    ended = False
                    break
            if not pending:
                break
            if progressed:
                seek_point = None
            elif sp > 0:
                seek_point = self._seek_point(target, before=sp)  # retry from an earlier keyframe
            elif ended:
                raise CorruptVideoError(
                    self.path, f"frames {pending[:5]} could not be decoded (the stream ends early: truncated?)"
                )
            else:
                raise self._missing(target)
        return stack_frames([out[i] for i in indices]), [self.timestamp(i) for i in indices]

    def _decode_sequential(self, start: int, step: int = 1) -> Iterator[tuple[int, float, torch.Tensor]]:
        if start >= len(self._pts):
            return
        sp = self._seek_point(start)
        while sp > 0:
            if (yield from self._decode_sequential_from(start, step, sp)):
                return
            # The seek did not reach `start` cleanly: retry from the keyframe before (as _decode does).
            sp = self._seek_point(start, before=sp)
        yield from self._decode_sequential_from_zero(start, step)

    def _decode_sequential_from(
        self, start: int, step: int, sp: int
    ) -> Generator[tuple[int, float, torch.Tensor], None, bool]:
        """Frames from ``start`` on, decoded from seek point ``sp``; returns False, having yielded nothing, when the
        seek landed past ``start`` (frames after it came first, or none at all: MPEG-TS seeks can land a keyframe
        late, which from inside the last keyframe interval is past the end)."""
        expected = start
        for idx, frame in self._decoded_frames(start, sp):
            if idx < start:
                continue
            if idx != expected:
                if expected == start:
                    return False
                raise (
                    self._missing(expected)
                    if idx > expected
                    else CorruptVideoError(
                        self.path, f"the decoder output frame {idx} again after frame {expected - 1}"
                    )
                )
            expected += 1
            if (idx - start) % step == 0:
                yield idx, self.timestamp(idx), self._to_rgb(frame)
        if expected == start:
            return False
        if expected < len(self._pts):
            raise CorruptVideoError(
                self.path, f"the stream ends after frame {expected - 1} but the index has {len(self._pts)} frames"
            )
        return True

    def _decode_sequential_from_zero(self, start: int, step: int) -> Iterator[tuple[int, float, torch.Tensor]]:
        expected = 0
        for idx, frame in self._decoded_frames(start, 0):
            if idx != expected:
                raise self._missing(expected)
            expected += 1
            if idx >= start and (idx - start) % step == 0:
                yield idx, self.timestamp(idx), self._to_rgb(frame)
        if expected < len(self._pts):
            raise CorruptVideoError(
                self.path, f"the stream ends after frame {expected - 1} but the index has {len(self._pts)} frames"
            )

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
