"""Small synthetic videos whose pixels encode the frame index (torchcodec's technique).

Each frame is a ``GRID x GRID`` grid of black/white cells; cell ``k`` (row-major from the top-left) is white when bit
``k`` of the frame index is set. Cells survive lossy codecs and 4:2:0 chroma subsampling, so ``read_frame_index``
recovers the index exactly from any decoder's RGB output, and a wrongly rotated or transposed frame reads as a wrong
index. Used by the tests and the benchmarks; needs PyAV (which bundles FFmpeg and its encoders).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

GRID = 4  # 4 x 4 cells -> 16 bits -> indices up to 65,535
MAX_INDEX = 2 ** (GRID * GRID) - 1


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
        raise ValueError(f"frame index {index} does not fit in {GRID * GRID} bits")
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
    import av

    recipe = CODECS[codec]
    path = Path(path)
    if pts_ms is not None and len(pts_ms) != num_frames:
        raise ValueError(f"pts_ms has {len(pts_ms)} entries for {num_frames} frames")
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
            acodec = {".mp4": "aac", ".webm": "libopus", ".avi": "pcm_s16le"}.get(path.suffix, "aac")
            astream = container.add_stream(acodec, rate=48000 if acodec == "libopus" else 16000)
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
