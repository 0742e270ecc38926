"""The OpenCV backend: CPU decoding for machines without PyAV (OpenCV bundles its own FFmpeg).

It reads sequentially and never seeks, so its frame indices are exact; its frame count is the container's figure until
the stream ends (or ``exact_count=True``). OpenCV does not say why it cannot open a file: the container's headers do
(``coldstream.io.containers``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .containers import declared_video_codecs, missing_bytes, no_decoder, open_failure
from .errors import CorruptVideoError, NoVideoFramesError, VideoError, require_backend
from .source import FrameSource, VideoInfo, stack_frames, warn_once


def _opencv_open_failure(path: str) -> VideoError:
    """Why OpenCV could not open a file, as far as the container's own headers tell (OpenCV does not say)."""
    codecs = declared_video_codecs(path) if missing_bytes(path) is None else None
    if codecs == []:
        return NoVideoFramesError(path, "no video track (the container declares audio or other tracks only)")
    if codecs:
        return no_decoder(path, "OpenCV's FFmpeg")
    return open_failure(path, "OpenCV could not open it (broken container, or no decodable video stream)")


class OpenCVSource(FrameSource):
    """CPU decoding with OpenCV's FFmpeg reader, for machines without PyAV.

    Reads sequentially and never seeks, so indices are exact (frame ``i`` is the ``i``-th picture the decoder
    outputs, as on the PyAV backend). The frame count is the container's figure (an estimate from duration x fps for
    WebM/MKV; AVI headers also count empty drop-frame slots, MP4 counts frames an edit list hides) and is corrected
    if decoding ends early; ``exact_count=True`` counts the pictures at open instead (one decoding pass, no RGB
    conversion), so that clips are centred as on the PyAV backend. Rotation metadata is applied by OpenCV itself
    (``info.rotation`` says by how much, as on PyAV).
    """

    backend_name = "opencv"

    def __init__(self, path, *, exact_count: bool = False, **kwargs):
        super().__init__(path, **kwargs)
        self._cv2 = cv2 = require_backend("opencv", "the OpenCV CPU backend")
        self._cap = None
        self._cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            raise _opencv_open_failure(self.path)
        missing = missing_bytes(self.path)
        if missing:  # OpenCV would decode what is there and stop early as if that were the whole video
            self.close()
            raise CorruptVideoError(self.path, f"truncated: {missing}")
        fourcc = int(self._cap.get(cv2.CAP_PROP_FOURCC))
        codec = fourcc.to_bytes(4, "little").decode("ascii", "replace").strip("\x00").lower() if fourcc else "unknown"
        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self._pos = 0  # index of the next frame grab() returns
        ok, first = self._read_next()
        if not ok:
            self.close()
            if n > 0:
                raise CorruptVideoError(self.path, f"corrupt data: the container declares {n} frames but none decodes")
            raise NoVideoFramesError(self.path, "no video frame could be decoded (no video stream, or zero frames)")
        self._first = first
        if exact_count:
            while self._cap.grab():
                self._pos += 1
            if self._pos != n:
                warn_once(self.path, "cv-count", f"{self.path}: the container declares {n} frames, {self._pos} decode")
            n = self._pos
            self._rewind()
        h, w = first[1].shape[:2]
        # OpenCV applies the display rotation itself and reports it clockwise (270 for PyAV's 90 counter-clockwise).
        rotation = -int(self._cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 360
        self._info = VideoInfo(
            path=self.path,
            backend=self.backend_name,
            codec=codec,
            num_frames=max(n, 1),
            fps=fps,
            width=w,
            height=h,
            rotation=rotation,
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
                    n = self._info.num_frames
                    warn_once(self.path, "cv-count", f"{self.path}: the container declares {n} frames, {i} decode")
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
