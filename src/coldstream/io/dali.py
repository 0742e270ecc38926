"""NVIDIA DALI backend: GPU decoding (``device="mixed"``, NVDEC) and DALI's CPU decoder, handed to torch via DLPack.

Two entry points:

* ``DALISource``: the ``FrameSource`` contract for one file (``fn.decoders.video`` fed from memory with the exact
  frame indices wanted). Frame identity (count, timestamps, rotation) comes from the same packet index as the CPU
  backend (PyAV, or OpenCV's container figures without PyAV), so both backends agree on which frame is which.
* ``DALIClipReader``: multi-file training reader (``fn.experimental.readers.video``) with shuffling, per-rank
  sharding, strided ``sequence_length`` clips at random temporal offsets, and resize/crop/normalise (as
  ``coldstream.io.preprocess``) inside the DALI graph (on the GPU for ``device="cuda"``).

Codecs: the mixed (GPU) decoder handles H.264, HEVC, VP8, VP9, AV1, MPEG-4 and MJPEG where NVDEC has them; DALI's CPU
decoder handles VP9, VP8 and MJPEG only (H.264/HEVC/MPEG-4/AV1 are refused on CPU by design).

Outputs reach torch through ``__dlpack__`` with no host copy; since DALI reuses its output buffers on the next run,
uint8 frames are cloned once on their device.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from coldstream import optional
from coldstream.errors import InputError

from .errors import BackendUnavailableError, CorruptVideoError, UnsupportedCodecError, VideoError, require_backend
from .source import IMAGENET_MEAN, IMAGENET_STD, FrameSource, VideoInfo

log = logging.getLogger("coldstream.io")

DALI_CPU_CODECS = ("vp9", "vp8", "mjpeg")
DALI_GPU_CODECS = ("h264", "hevc", "vp9", "vp8", "av1", "mpeg4", "mjpeg")
# OpenCV reports FourCCs; PyAV reports FFmpeg codec names.
_FOURCC_CODECS = {
    "vp90": "vp9",
    "vp80": "vp8",
    "mjpg": "mjpeg",
    "avc1": "h264",
    "h264": "h264",
    "hev1": "hevc",
    "hvc1": "hevc",
    "av01": "av1",
    "fmp4": "mpeg4",
    "mp4v": "mpeg4",
    "xvid": "mpeg4",
}


def _import_dali():
    """``nvidia.dali``, or ``BackendUnavailableError`` with the install command."""
    return require_backend("dali", "the DALI backend")


def _to_torch(dali_tensor, clone: bool) -> torch.Tensor:
    """A DALI tensor as a torch tensor on the same device, through DLPack (zero copy; cloned on that device)."""
    try:
        t = torch.from_dlpack(dali_tensor)
    except (TypeError, BufferError, RuntimeError):
        # DLPack protocol mismatch between DALI and this torch: DALI's own device-side copy into a torch tensor
        # (still no trip through host memory for GPU tensors).
        from nvidia.dali.plugin.pytorch import feed_ndarray

        is_gpu = type(dali_tensor).__name__.endswith("GPU")
        dtype = torch.float32 if "FLOAT" in str(dali_tensor.dtype) else torch.uint8  # the two types DALI gives us
        device = torch.device("cuda", torch.cuda.current_device()) if is_gpu else torch.device("cpu")
        t = torch.empty(tuple(dali_tensor.shape()), dtype=dtype, device=device)
        feed_ndarray(dali_tensor, t, cuda_stream=torch.cuda.current_stream() if is_gpu else None)
        return t
    return t.clone() if clone else t


def _host(tensor_list):
    return tensor_list.as_cpu() if type(tensor_list).__name__.endswith("GPU") else tensor_list


def _resolve_device(device: torch.device) -> tuple[str, int | None]:
    """Torch device -> (DALI decoder device, DALI device_id)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError("DALI GPU decoding was asked for (device='cuda') but no CUDA GPU is visible")
        return "mixed", device.index if device.index is not None else torch.cuda.current_device()
    if device.type == "cpu":
        return "cpu", None
    raise InputError(f"DALI decodes to 'cpu' or 'cuda' devices, not {device}")


class _DecoderPipeline:
    """One DALI pipeline ``bytes + frame list -> frames``, shared by every ``DALISource`` on a device."""

    _cache: dict[tuple[str, int | None], _DecoderPipeline] = {}
    _lock = threading.Lock()

    def __init__(self, dali_device: str, device_id: int | None):
        dali = _import_dali()
        from nvidia.dali import fn, types

        self.dali_device, self.device_id = dali_device, device_id

        @dali.pipeline_def(batch_size=1, num_threads=2, device_id=device_id, prefetch_queue_depth=1)
        def pipe():
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
            frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
            return fn.decoders.video(encoded, device=dali_device, frames=frames)

        self._pipe_fn = pipe
        self._pipe = None
        self.lock = threading.Lock()

    @classmethod
    def get(cls, dali_device: str, device_id: int | None) -> _DecoderPipeline:
        key = (dali_device, device_id)
        with cls._lock:
            if key not in cls._cache:
                cls._cache[key] = cls(dali_device, device_id)
            return cls._cache[key]

    def run(self, path: str, encoded: np.ndarray, indices: Sequence[int]) -> torch.Tensor:
        """uint8 ``[len(indices), H, W, 3]`` on the pipeline's device."""
        with self.lock:
            if self._pipe is None:
                self._pipe = self._pipe_fn()
                self._pipe.build()
            try:
                self._pipe.feed_input("encoded", [encoded])
                self._pipe.feed_input("frames", [np.asarray(indices, dtype=np.int32)])
                (out,) = self._pipe.run()
                return _to_torch(out[0], clone=True)
            except RuntimeError as e:
                self._pipe = None  # a pipeline that raised is not reusable: rebuild on the next call
                msg = str(e)
                detail = next((ln.strip() for ln in msg.splitlines() if "not supported" in ln), msg.splitlines()[-1])
                raise CorruptVideoError(path, f"DALI ({self.dali_device}) failed to decode: {detail}") from e


class DALISource(FrameSource):
    """``FrameSource`` decoded by DALI: NVDEC for ``device="cuda"``, DALI's CPU decoder for ``device="cpu"``.

    Args:
        chunk_size: frames per DALI run while streaming (the memory bound); ``None`` picks ~64 MiB of frames on CPU,
            ~512 MiB on GPU (8 to 256 frames). Streams that start near frame 0 run one ``inputs.video`` pass; streams
            that start deeper use ``decoders.video`` frame lists, whose every run re-opens the in-memory file and
            rebuilds DALI's index (slow with small chunks; figures in ``docs/video-io.md``).
        probe: ``"pyav"`` (exact packet index, default when PyAV is installed) or ``"opencv"`` (container figures).
        Other arguments as ``FrameSource``.
    """

    backend_name = "dali"

    def __init__(self, path, *, chunk_size: int | None = None, probe: str | None = None, **kwargs):
        if probe not in (None, "pyav", "opencv"):
            raise InputError(f"probe must be 'pyav', 'opencv' or None, got {probe!r}")
        super().__init__(path, **kwargs)
        _import_dali()
        self._dali_device, self._device_id = _resolve_device(self.device)
        self.backend_name = "dali-gpu" if self._dali_device == "mixed" else "dali-cpu"
        self._probe = _probe(self.path, probe)
        pinfo = self._probe.info
        try:
            codec = _check_dali_can_read(self._probe, self._dali_device)
        except UnsupportedCodecError:
            self._probe.close()
            raise
        self._info = VideoInfo(**{**pinfo.__dict__, "backend": self.backend_name, "codec": codec})
        self._stamps = [self._probe.timestamp(i) for i in range(pinfo.num_frames)]
        if chunk_size is None:
            budget = (512 if self._dali_device == "mixed" else 64) * 2**20
            chunk_size = max(8, min(256, budget // max(1, 3 * pinfo.width * pinfo.height)))
        self._chunk = chunk_size
        self._probe.close()
        self._encoded = np.fromfile(self.path, dtype=np.uint8)
        self._pipeline = _DecoderPipeline.get(self._dali_device, self._device_id)

    @property
    def info(self) -> VideoInfo:
        return self._info

    def _rotate(self, frames: torch.Tensor) -> torch.Tensor:
        # DALI ignores the display matrix; apply it like the CPU backend (counter-clockwise, on the frames' device).
        k = (self._info.rotation // 90) % 4
        return torch.rot90(frames, k, dims=(1, 2)).contiguous() if k else frames

    def _decode(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        data = self._pipeline.run(self.path, self._encoded, indices)
        if data.shape[0] != len(indices):
            raise CorruptVideoError(self.path, f"DALI returned {data.shape[0]} frames for {len(indices)} requested")
        return self._rotate(data), [self._stamps[i] for i in indices]

    def _decode_sequential(self, start: int, step: int = 1) -> Iterator[tuple[int, float, torch.Tensor]]:
        if start <= self._chunk:
            yield from self._decode_front_to_back(start, step)
            return
        # Deep into the file: seek with frame lists rather than decode everything before `start`.
        wanted = range(start, self._info.num_frames, step)
        for lo in range(0, len(wanted), self._chunk):
            idx = list(wanted[lo : lo + self._chunk])
            data, stamps = self._decode(idx)
            for k, i in enumerate(idx):
                yield i, stamps[k], data[k]

    def _decode_front_to_back(self, start: int, step: int) -> Iterator[tuple[int, float, torch.Tensor]]:
        """``fn.experimental.inputs.video``: one pass over the file, ``chunk`` frames per run, no index rebuilds."""
        dali = _import_dali()
        from nvidia.dali import fn

        dev, seq = self._dali_device, self._chunk

        @dali.pipeline_def(batch_size=1, num_threads=2, device_id=self._device_id, prefetch_queue_depth=1)
        def pipe():
            return fn.experimental.inputs.video(name="video", sequence_length=seq, device=dev)

        p = pipe()
        p.build()
        p.feed_input("video", [self._encoded])
        n, i = self._info.num_frames, 0
        try:
            while i < n:
                try:
                    (out,) = p.run()
                except RuntimeError as e:
                    raise CorruptVideoError(
                        self.path, f"DALI ({dev}) stopped after {i} of {n} frames: {str(e).splitlines()[-1]}"
                    ) from e
                data = self._rotate(_to_torch(out[0], clone=True))
                for k in range(data.shape[0]):
                    if i >= start and (i - start) % step == 0:
                        yield i, self._stamps[i], data[k]
                    i += 1
                    if i >= n:
                        break
        finally:
            del p

    def close(self) -> None:
        self._encoded = None


def _check_dali_can_read(src: FrameSource, dali_device: str) -> str:
    """The DALI codec name of a probed file, or ``UnsupportedCodecError`` when DALI cannot read it exactly."""
    backend = "dali-gpu" if dali_device == "mixed" else "dali-cpu"
    codecs = DALI_GPU_CODECS if dali_device == "mixed" else DALI_CPU_CODECS
    codec = _FOURCC_CODECS.get(src.info.codec, src.info.codec)
    if codec not in codecs:
        raise UnsupportedCodecError(
            src.path, f"the {backend} backend cannot decode {codec} video (it decodes: {', '.join(codecs)})"
        )
    if getattr(src, "index_mode", "packets") == "decode":
        # DALI numbers frames by the container's timestamps, which this file gets wrong (the CPU index had to
        # decode it to find display order): its frame i would not be our frame i.
        raise UnsupportedCodecError(
            src.path,
            f"the {backend} backend cannot index this file exactly: its container timestamps do not give display "
            "order (B-frames without composition offsets, or AVI with B-frames); decode it on the CPU",
        )
    return codec


def _probe(path: str, probe: str | None):
    """An index of the file from the CPU backend (PyAV if installed, else OpenCV)."""
    from .opencv import OpenCVSource
    from .pyav import PyAVSource

    if probe == "pyav" or (probe is None and optional.unavailable("pyav") is None):
        return PyAVSource(path)  # BackendUnavailableError when probe="pyav" and PyAV is missing
    src = OpenCVSource(path)
    fps = src.info.fps
    src.timestamp = lambda i: i / fps if fps > 0 else 0.0  # container figures only: no per-frame timestamps
    return src


class DALIClipReader:
    """Training clips from many files: shuffled, sharded per rank, preprocessed inside DALI.

    Each iteration yields ``(frames, labels, start_frames)``: ``frames`` float32 ``[B, T, 3, S, S]`` (or uint8
    ``[B, T, H, W, 3]`` with ``size=None``) on ``device``, ``labels`` int64 ``[B]``, ``start_frames`` int64 ``[B]``
    (display index of each clip's first frame). Clips are ``sequence_length`` frames ``stride`` apart, starting every
    ``step`` frames of every file (all windows of all files are shuffled together when ``random_shuffle``: random
    temporal offsets). Files must share one resolution per batch unless ``size`` is given.

    Every file is checked first with the CPU backend's index (PyAV, or OpenCV without it) and the codecs DALI decodes
    on ``device``: files DALI cannot read exactly (not a video, truncated, no video, a codec it lacks, timestamps that
    do not give display order) are left out, logged and counted in ``report`` (a ``SkipReport``, as ``ClipDataset``'s),
    since DALI's reader drops them without a word; so are missing files (as in ``ClipDataset``). No readable file
    raises ``VideoError``.

    Resize differs from ``preprocess_frames`` only by DALI's resampling arithmetic (antialias off, linear); see the
    tolerance in ``tests/io/test_dali.py``.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        labels: Sequence[int] | None = None,
        *,
        sequence_length: int = 16,
        stride: int = 1,
        step: int | None = None,
        batch_size: int = 2,
        device: str | torch.device = "cpu",
        size: int | None = 224,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        shard_id: int = 0,
        num_shards: int = 1,
        random_shuffle: bool = True,
        seed: int = 0,
        num_threads: int = 2,
    ):
        dali = _import_dali()
        from nvidia.dali import fn, types

        if not files:
            raise InputError("DALIClipReader needs at least one file")
        self.device = torch.device(device)
        dali_device, device_id = _resolve_device(self.device)
        reader_device = "gpu" if dali_device == "mixed" else "cpu"
        self.batch_size = batch_size
        labels = list(labels) if labels is not None else list(range(len(files)))
        keep, self.report = _scan_for_dali(files, dali_device)
        if not keep:
            raise VideoError(
                "<DALIClipReader>", f"none of the {len(files)} files can be read by DALI: {self.report.problems[0][1]}"
            )
        files, labels = [files[i] for i in keep], [labels[i] for i in keep]
        scale = 255.0

        @dali.pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed)
        def pipe():
            video, label, frame_num = fn.experimental.readers.video(
                device=reader_device,
                filenames=[os.fspath(f) for f in files],
                labels=labels,
                sequence_length=sequence_length,
                stride=stride,
                step=step if step is not None else sequence_length * stride,
                random_shuffle=random_shuffle,
                shard_id=shard_id,
                num_shards=num_shards,
                enable_frame_num=True,
                pad_last_batch=True,
                name="reader",
            )
            if size is not None:
                video = fn.resize(video, resize_shorter=size, antialias=False, interp_type=types.INTERP_LINEAR)
                video = fn.crop_mirror_normalize(
                    video,
                    crop=(size, size),
                    dtype=types.FLOAT,
                    output_layout="FCHW",
                    mean=[m * scale for m in (mean or (0.0, 0.0, 0.0))],
                    std=[s * scale for s in (std or (1.0, 1.0, 1.0))],
                )
            return video, label, frame_num

        self._pipe = pipe()
        self._pipe.build()
        self.epoch_size = self._pipe.epoch_size("reader")

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        try:
            video, label, frame_num = self._pipe.run()
        except RuntimeError as e:
            raise VideoError("<DALIClipReader>", f"DALI reader failed: {str(e).splitlines()[-1]}") from e
        frames = torch.stack([_to_torch(video[i], clone=True) for i in range(len(video))]).to(self.device)
        lab = torch.as_tensor(np.array(_host(label).as_tensor()).reshape(-1), dtype=torch.int64)
        start = torch.as_tensor(np.array(_host(frame_num).as_tensor()).reshape(-1), dtype=torch.int64)
        return frames, lab, start


def _scan_for_dali(files: Sequence[str | os.PathLike], dali_device: str):
    """Indices of the files DALI can read on ``dali_device``, and a ``SkipReport`` of the others (logged)."""
    from .dataset import SkipReport

    keep, report = [], SkipReport()
    for i, f in enumerate(files):
        report.seen += 1
        try:
            with _probe(os.fspath(f), None) as src:
                _check_dali_can_read(src, dali_device)
        except VideoError as e:
            report.add(e)
            log.warning("DALIClipReader: skipping %s: %s (%d skipped so far)", e.path, e.problem, report.skipped)
            continue
        keep.append(i)
    return keep, report
