"""Video decoding throughput: frames/s per backend, codec and resolution.

CPU: PyAV, OpenCV and DALI's CPU decoder (VP9/MJPEG only), one stream, full sequential decode to RGB, plus 16-frame
clips (``FrameSource.clip``). GPU: DALI mixed (NVDEC) to uint8 and to preprocessed float 224² on the GPU, against the
CPU backend decoding one file per core on every core. Content is a pan over a textured canvas, so the codecs do real
work. Before timing, every case checks frame count and pixels against PyAV (DALI within its YUV->RGB tolerance).
Results and their machine: ``docs/video-io.md``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from coldstream.io import available_backends, open_video
from coldstream.perf import pedantic
from coldstream.testing import CODECS, write_panned_video

CODECS_CPU = ["h264", "vp9", "mjpeg"]
CODECS_GPU = ["h264", "hevc", "vp9", "mjpeg"]
RES = {"224": (224, 224), "480p": (480, 640), "1080p": (1080, 1920)}
DALI_CPU_CODECS = ("vp9", "vp8", "mjpeg")
PIXEL_MAE = 4.0  # DALI vs FFmpeg RGB, as in tests/io/test_dali.py


def _need(backend: str) -> None:
    ok, why = available_backends()[backend]
    if not ok:
        pytest.skip(f"{backend} unavailable: {why}")


@pytest.fixture(scope="session")
def bench_video(tmp_path_factory, quick):
    root = tmp_path_factory.mktemp("bench_videos")
    made = {}

    def get(codec: str, res: str) -> str:
        if (codec, res) not in made:
            h, w = RES[res]
            n = 60 if quick else (120 if res != "1080p" else 90)
            made[codec, res] = str(write_panned_video(root / f"{codec}_{res}{CODECS[codec].suffix}", codec, n, h, w))
        return made[codec, res]

    return get


def _reference(path: str, idx: list[int]) -> torch.Tensor:
    with open_video(path, backend="pyav") as src:
        return src.get_frames(idx).data


def _check(path: str, backend: str, device: str, tolerance: float = 0.0) -> int:
    with open_video(path, backend=backend, device=device) as src:
        n = len(src)
        got = src.get_frames([0, n // 2, n - 1]).data.cpu()
    ref = _reference(path, [0, n // 2, n - 1])
    mae = (got.int() - ref.int()).abs().float().mean().item()
    assert mae <= tolerance, f"{backend} differs from PyAV by MAE {mae:.2f} on {path}"
    return n


def _stream_all(path: str, backend: str, device: str, **kw) -> int:
    count = 0
    with open_video(path, backend=backend, device=device, **kw) as src:
        for chunk in src.stream(chunk_size=16):
            count += len(chunk)
    return count


def _record(benchmark, frames: int, clips: int = 0, **extra):
    """frames/s (median and best round) and ms per call into the case's ``extra_info``; with ``clips``, clips/s."""
    if benchmark.stats is None:  # --benchmark-disable: the correctness checks ran, nothing was timed
        return
    sec = benchmark.stats.stats.median
    if clips:
        extra["clips_per_s"] = clips / sec
    best = benchmark.stats.stats.min  # on a shared machine the fastest round is the least disturbed one
    benchmark.extra_info.update(
        {"frames_per_s": frames / sec, "frames_per_s_best": frames / best, "ms_per_call": sec * 1e3, **extra}
    )


@pytest.mark.parametrize("res", ["224", "480p"])
@pytest.mark.parametrize("codec", CODECS_CPU)
@pytest.mark.parametrize("backend", ["pyav", "opencv", "dali-cpu"])
def test_decode_cpu(benchmark, bench_video, quick, backend, codec, res):
    """One stream, every frame to uint8 RGB on the CPU."""
    if quick and res != "224":
        pytest.skip("--quick: 224² only")
    _need(backend)
    if backend == "dali-cpu" and codec not in DALI_CPU_CODECS:
        pytest.skip(f"DALI's CPU decoder does not decode {codec} (VP9/VP8/MJPEG only)")
    benchmark.group = f"io-decode-cpu-{res}"
    path = bench_video(codec, res)
    name = "dali" if backend.startswith("dali") else backend
    n = _check(path, name, "cpu", PIXEL_MAE if name == "dali" else 0.0)
    pedantic(benchmark, lambda: _stream_all(path, name, "cpu"), "cpu", rounds=2 if quick else 5, warmup=1)
    _record(benchmark, n, backend=backend, codec=codec, res=res)


@pytest.mark.parametrize("backend", ["pyav", "opencv", "dali-cpu"])
def test_clip_cpu(benchmark, bench_video, quick, backend):
    """One clip (16 frames, 30 -> 6 fps: stride 5, centred) as preprocessed float [16, 3, 224, 224]: clips/s."""
    _need(backend)
    codec = "vp9" if backend == "dali-cpu" else "h264"
    path = bench_video(codec, "480p" if not quick else "224")
    name = "dali" if backend.startswith("dali") else backend
    benchmark.group = "io-clip-cpu"

    def clip():
        with open_video(path, backend=name, output="float", size=224) as src:
            return src.clip(16, target_fps=6)

    out = clip()
    assert out.data.shape == (16, 3, 224, 224) and len(set(out.indices.tolist())) > 1
    pedantic(benchmark, clip, "cpu", rounds=2 if quick else 5, warmup=1)
    _record(benchmark, 16, clips=1, backend=backend, codec=codec)


def _cuda_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    _need("dali-gpu")


@pytest.mark.parametrize("res", ["224", "1080p"])
@pytest.mark.parametrize("codec", CODECS_GPU)
@pytest.mark.parametrize("output", ["uint8", "float224"])
def test_decode_dali_gpu(benchmark, bench_video, quick, codec, res, output):
    """DALI mixed (NVDEC): every frame to a CUDA tensor, uint8 or preprocessed float 224² (on the GPU)."""
    _cuda_or_skip()
    benchmark.group = f"io-decode-gpu-{res}"
    path = bench_video(codec, res)
    n = _check(path, "dali", "cuda", PIXEL_MAE)
    kw = {"output": "float", "size": 224} if output == "float224" else {}
    pedantic(benchmark, lambda: _stream_all(path, "dali", "cuda", **kw), "cuda", rounds=3, warmup=1)
    _record(benchmark, n, backend="dali-gpu", codec=codec, res=res, output=output)


@pytest.mark.parametrize("res", ["224", "1080p"])
@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_decode_cpu_all_cores(benchmark, bench_video, quick, codec, res):
    """The CPU backend on every core (one file per thread; FFmpeg releases the GIL): the GPU's competitor."""
    if res == "1080p" and not torch.cuda.is_available():
        pytest.skip("1080p all-core case runs on the 16-core GPU machine only")
    backend = "pyav" if available_backends()["pyav"][0] else "opencv"
    _need(backend)
    workers = os.cpu_count() or 1
    benchmark.group = f"io-decode-allcores-{res}"
    path = bench_video(codec, res)
    n = _check(path, backend, "cpu")

    def run():
        with ThreadPoolExecutor(workers) as pool:
            return sum(pool.map(lambda _: _stream_all(path, backend, "cpu"), range(workers)))

    pedantic(benchmark, run, "cpu", rounds=2, warmup=1)
    _record(benchmark, n * workers, backend=backend, codec=codec, res=res, workers=workers)
