"""Test videos for coldstream's tests and benchmarks. The library never uses this module at runtime (nothing under
``coldstream.io`` imports it); it is part of the package so that ``tests/`` and ``bench/`` share one set of writers.

* Videos whose pixels encode the frame index (torchcodec's technique): each frame is a ``GRID x GRID`` grid of
  black/white cells; cell ``k`` (row-major from the top-left) is white when bit ``k`` of the frame index is set. Cells
  survive lossy codecs and 4:2:0 chroma subsampling, so :func:`read_frame_index` recovers the index exactly from any
  decoder's RGB output, and a wrongly rotated or transposed frame reads as a wrong index (:func:`write_index_video`).
* Content that makes codecs and colour conversion work: a camera pan over a textured canvas
  (:func:`write_panned_video`), saturated moving colour gradients (:func:`write_colour_gradient_video`).
* Bad files every decoder must refuse clearly: audio only, a video stream without frames, a cut-off copy, a copy whose
  header declares a codec no decoder knows.

Writing needs PyAV (which bundles FFmpeg and its encoders); reading frame indices needs only NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np

from coldstream import optional
from coldstream.errors import InputError

GRID = 4  # 4 x 4 cells -> 16 bits -> indices up to 65,535
MAX_INDEX = 2 ** (GRID * GRID) - 1

# Silent audio per container suffix: (encoder, sample rate, samples per audio frame).
AUDIO: dict[str, tuple[str, int, int]] = {
    ".mp4": ("aac", 16000, 1024),
    ".webm": ("libopus", 48000, 960),
    ".avi": ("pcm_s16le", 16000, 1024),
}


def _av() -> ModuleType:
    return optional.require("pyav", "writing test videos (coldstream.testing)")


@dataclass(frozen=True)
class CodecRecipe:
    """How PyAV writes one codec: encoder name, container suffix, pixel format, encoder options."""

    encoder: str
    suffix: str
    pix_fmt: str
    options: dict[str, str]


# Short GOPs (keyframe every 10 frames) so that seeking is exercised; H.264 with B-frames so that decode order differs
# from display order.
CODECS: dict[str, CodecRecipe] = {
    "h264": CodecRecipe(
        "libx264",
        ".mp4",
        "yuv420p",
        {"preset": "ultrafast", "x264-params": "keyint=10:min-keyint=10:bframes=2:scenecut=0"},
    ),
    "hevc": CodecRecipe(
        "libx265", ".mp4", "yuv420p", {"preset": "ultrafast", "x265-params": "keyint=10:min-keyint=10:log-level=error"}
    ),
    "vp9": CodecRecipe(
        "libvpx-vp9", ".webm", "yuv420p", {"deadline": "realtime", "cpu-used": "8", "g": "10", "lag-in-frames": "0"}
    ),
    "vp8": CodecRecipe(
        "libvpx", ".webm", "yuv420p", {"deadline": "realtime", "cpu-used": "8", "g": "10", "lag-in-frames": "0"}
    ),
    "mjpeg": CodecRecipe("mjpeg", ".avi", "yuvj420p", {"q:v": "3"}),
}


def index_pattern(index: int, height: int, width: int, gray: bool = False) -> np.ndarray:
    """The frame that encodes ``index``: uint8 ``[H, W, 3]`` (or ``[H, W]`` when ``gray``)."""
    if not 0 <= index <= MAX_INDEX:
        raise InputError(f"frame index must be in [0, {MAX_INDEX}] to fit in {GRID * GRID} bits, got {index}")
    bits = (index >> np.arange(GRID * GRID)) & 1
    cells = (bits.reshape(GRID, GRID) * 255).astype(np.uint8)
    rows = np.minimum(np.arange(height) * GRID // height, GRID - 1)
    cols = np.minimum(np.arange(width) * GRID // width, GRID - 1)
    img = cells[rows][:, cols]
    return img if gray else np.repeat(img[:, :, None], 3, axis=2)


def read_frame_index(frame) -> int:
    """Recover the index from one decoded RGB frame: ``[H, W, 3]`` or ``[3, H, W]`` (uint8, numpy or torch)."""
    arr = np.asarray(frame.cpu() if hasattr(frame, "cpu") else frame)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[2] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3:
        arr = arr.astype(np.float32).mean(axis=2)
    h, w = arr.shape
    index = 0
    for k in range(GRID * GRID):
        r, c = divmod(k, GRID)
        # The centre half of each cell: away from the blurred edges between cells.
        y0, y1 = (4 * r + 1) * h // (4 * GRID), (4 * r + 3) * h // (4 * GRID)
        x0, x1 = (4 * c + 1) * w // (4 * GRID), (4 * c + 3) * w // (4 * GRID)
        if arr[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].mean() > 127.5:
            index |= 1 << k
    return index


def read_frame_indices(frames) -> list[int]:
    """:func:`read_frame_index` over ``[T, H, W, 3]`` or ``[T, 3, H, W]``."""
    return [read_frame_index(f) for f in frames]


def write_index_video(
    path: str | Path,
    num_frames: int,
    *,
    codec: str = "h264",
    height: int = 64,
    width: int = 64,
    fps: int = 30,
    pts_ms: Sequence[int] | None = None,
    rotation: int = 0,
    gray: bool = False,
    audio: bool = False,
    gop: int | None = None,
) -> Path:
    """Write a video whose frame ``i`` shows :func:`index_pattern` of ``i``; returns the path.

    Args:
        path: output file; its suffix picks the container (``CODECS[codec].suffix`` is the natural one).
        pts_ms: presentation times in milliseconds, one per frame, for a variable-frame-rate file (time base 1/1000).
        rotation: display-matrix rotation in degrees (metadata only; the stored pixels are not rotated).
        gray: store 8-bit grayscale (``gray`` pixel format; H.264 writes a 4:0:0 stream).
        audio: add a silent audio track (AAC in MP4, Opus in WebM, PCM in AVI) interleaved with the video.
        gop: keyframe interval (default 10: seeks are exercised even in short videos).
    """
    av = _av()
    recipe = CODECS[codec]
    path = Path(path)
    if pts_ms is not None and len(pts_ms) != num_frames:
        raise InputError(f"pts_ms must have one entry per frame ({num_frames}), got {len(pts_ms)}")
    with av.open(str(path), mode="w") as container:
        options = dict(recipe.options)
        if gop is not None:
            options = {
                k: v.replace("keyint=10:min-keyint=10", f"keyint={gop}:min-keyint={gop}") for k, v in options.items()
            }
            if "g" in options:
                options["g"] = str(gop)
        stream = container.add_stream(recipe.encoder, rate=fps, options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "gray" if gray else recipe.pix_fmt
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        astream = None
        if audio:
            acodec, rate, _ = AUDIO.get(path.suffix, AUDIO[".mp4"])
            astream = container.add_stream(acodec, rate=rate)
            astream.layout = "mono"
            samples_per_frame = astream.rate // fps
            audio_pts = 0
        for i in range(num_frames):
            img = index_pattern(i, height, width, gray=gray)
            frame = av.VideoFrame.from_ndarray(img, format="gray" if gray else "rgb24")
            if pts_ms is not None:
                frame.pts = int(pts_ms[i])
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
            if astream is not None:
                aformat = astream.codec_context.format.name
                silence = np.zeros((1, samples_per_frame), dtype=np.float32 if "flt" in aformat else np.int16)
                aframe = av.AudioFrame.from_ndarray(silence, format=aformat, layout="mono")
                aframe.sample_rate = astream.rate
                aframe.pts = audio_pts
                audio_pts += samples_per_frame
                for packet in astream.encode(aframe):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            for packet in astream.encode():
                container.mux(packet)
    return path


def textured_canvas(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photograph-like canvas without data files: smooth colour fields plus hard edges and fine grain, uint8
    ``[H, W, 3]``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for _ in range(6):
        fy, fx = rng.uniform(0.002, 0.03, 2)
        phase, amp = rng.uniform(0, 2 * np.pi, 3), rng.uniform(20, 50, 3)
        img += amp * np.sin(fy * yy[..., None] + fx * xx[..., None] + phase)
    img += np.where((np.floor(xx / 97) + np.floor(yy / 61)) % 2 == 0, 40.0, -40.0)[..., None]  # hard edges
    img += rng.normal(0, 6, (height, width, 3)).astype(np.float32)  # sensor grain
    return np.clip(img + 128, 0, 255).astype(np.uint8)


def write_panned_video(path: str | Path, codec: str, num_frames: int, height: int, width: int) -> Path:
    """A camera pan over :func:`textured_canvas` at 30 fps, so the codec does real work (throughput benchmarks);
    ``codec`` is a key of ``CODECS``, encoded at the encoder's default quality and GOP."""
    av = _av()
    recipe = CODECS[codec]
    big = textured_canvas(height + num_frames, int(width + num_frames * 1.5) + 1)
    options = {k: v for k, v in recipe.options.items() if k != "x264-params"}
    with av.open(str(path), "w") as c:
        s = c.add_stream(recipe.encoder, rate=30, options=options)
        s.width, s.height, s.pix_fmt = width, height, recipe.pix_fmt
        for i in range(num_frames):
            frame = np.ascontiguousarray(big[i : i + height, int(i * 1.5) : int(i * 1.5) + width])
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return Path(path)


def write_colour_gradient_video(
    path: str | Path, codec: str, num_frames: int = 12, height: int = 72, width: int = 96
) -> Path:
    """Saturated moving colour gradients at 30 fps, encoded with the encoder's defaults: the worst case for
    differences between decoders' YUV -> RGB conversions. ``codec`` is a key of ``CODECS``."""
    av = _av()
    recipe = CODECS[codec]
    with av.open(str(path), "w") as c:
        s = c.add_stream(recipe.encoder, rate=30)
        s.width, s.height, s.pix_fmt = width, height, recipe.pix_fmt
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(num_frames):
            img = np.stack([(xx * 2 + i * 5) % 256, (yy * 3 + i * 7) % 256, (xx + yy + i * 11) % 256], -1)
            for p in s.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return Path(path)


def write_audio_only(path: str | Path, num_frames: int = 5) -> Path:
    """A file with ``num_frames`` frames of silent mono audio and no video stream; the suffix picks the container and
    the audio codec (``AUDIO``)."""
    av = _av()
    path = Path(path)
    if path.suffix not in AUDIO:
        raise InputError(f"path must end in one of {sorted(AUDIO)}, got {path.name!r}")
    codec, rate, frame_size = AUDIO[path.suffix]
    with av.open(str(path), "w") as c:
        a = c.add_stream(codec, rate=rate)
        a.layout = "mono"
        fmt = a.codec_context.format.name
        dtype = np.float32 if "flt" in fmt else np.int16
        for i in range(num_frames):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, frame_size), dtype), format=fmt, layout="mono")
            fr.sample_rate, fr.pts = rate, i * frame_size
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def write_video_without_frames(path: str | Path, codec: str = "h264", height: int = 64, width: int = 64) -> Path:
    """A container with a video stream that never got a frame (a recording stopped before its first picture)."""
    av = _av()
    recipe = CODECS[codec]
    with av.open(str(path), "w") as c:
        s = c.add_stream(recipe.encoder, rate=30)
        s.width, s.height, s.pix_fmt = width, height, recipe.pix_fmt
        c.start_encoding()
    return Path(path)


def write_truncated_copy(source: str | Path, path: str | Path, keep: float = 0.5) -> Path:
    """The first ``keep`` fraction of ``source``'s bytes (an interrupted copy or download)."""
    if not 0.0 <= keep < 1.0:
        raise InputError(f"keep must be in [0, 1), got {keep}")
    data = Path(source).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def write_foreign_codec_copy(source: str | Path, path: str | Path, tag: str) -> Path:
    """A copy of ``source`` (MP4/MOV, AVI or Matroska/WebM with one video track) whose header declares its video codec
    as ``tag`` (as long as the codec tag it replaces: 4 characters for MP4 and AVI), a codec no decoder knows. The
    coded frames are untouched."""
    from coldstream.io.containers import declared_video_codecs

    data = Path(source).read_bytes()
    codecs = declared_video_codecs(str(source))
    if not codecs:
        raise InputError(f"source must be an MP4/MOV, AVI or Matroska/WebM file with a video track, got {source}")
    old, new = codecs[0].encode("latin-1"), tag.encode("latin-1")
    if len(new) != len(old):
        raise InputError(f"tag must have {len(old)} characters like the {codecs[0]!r} it replaces, got {tag!r}")
    if data[:4] == b"RIFF":  # AVI: the stream header's handler and the bitmap header's compression, in 'hdrl'
        start, end = data.find(b"hdrl"), data.find(b"movi")
        out = data[:start] + data[start:end].replace(old, new) + data[end:]
    elif data[:4] == b"\x1a\x45\xdf\xa3":  # Matroska: the CodecID in Tracks, before the first Cluster
        start, end = data.find(b"\x16\x54\xae\x6b"), data.find(b"\x1f\x43\xb6\x75")
        out = data[:start] + data[start:end].replace(old, new) + data[end:]
    else:  # ISO BMFF: the sample description's format
        at = data.find(old, data.find(b"stsd"))
        out = data[:at] + new + data[at + len(old) :]
    Path(path).write_bytes(out)
    return Path(path)
