"""End to end: frozen encoder + enrichment + temporal core + readout, frames/s and per-frame latency.

GPU (bf16 autocast, 224², SSv2 readout): DINOv3-S/B/L × each core;
  * ``stream-b1``: one stream, one frame per call, eager vs CUDA-graph replay (per-frame latency);
  * ``clip-b64``: throughput over 64 frames per call (4 clips × 16 frames);
  * ``clip-b64-split``: DINOv3-L + GMMix / RVMRNN, the encoder alone, the head (enrichment + core + readout) alone
    and both in the same run, eager vs ``VideoModel.compile_clip`` (``core_share_pct``);
  * ``decode+clip``: the same with decoding in the loop (DALI when installed, else the CPU backend) from a real file,
    and in the same run decoding alone and the model alone (the goal: decoding delivers >= 2x the model's frames/s).
  Goals on an H100: DINOv3-L + GMMix >= 3,000 frames/s at batch 64; streaming latency at batch 1 <= 5 ms with graphs.
  * ``serve``: the stream engine (``coldstream.serve``, GMMix core, up to 32 slots, one CUDA graph per bucket 1, 2,
    4, ..., 32): ``streams_30fps`` = the largest bucket whose step (host copies of the outputs included) fits in
    1/30 s, i.e. streams served at 30 fps each, and the p50 / p99 frame latency at that load (frames arriving
    together, already on the GPU: no decoding in the loop); the core's state stepped in its pool through the
    kernels' slot indices (``slots``) or gathered and scattered around ``model.step`` (``gather``).
CPU: EfficientNet-Lite0 + each core (width 256) at 128², the clip path vs the step loop (the streaming overhead).
Each case first checks that streaming and the clip path agree.
"""

from __future__ import annotations

import pytest
import torch

from coldstream.model import VideoModel
from coldstream.model.cuda_graph import CUDAGraphRunner
from coldstream.perf import autocast_bf16, pedantic, record_throughput, time_fn

CORES = ["rvmrnn", "mamba", "mambamix", "gmmix"]
ENCODERS = ["dinov3_vits16", "dinov3_vitb16", "dinov3_vitl16"]


_MODELS: dict[tuple, VideoModel] = {}


def _model(encoder: str, core: str, device, core_dim=None) -> VideoModel:
    """Built once per (encoder, core, device) and reused across cases; initialised directly on the device."""
    key = (encoder, core, str(device), core_dim)
    if key not in _MODELS:
        _MODELS.clear()  # keep one model resident
        torch.manual_seed(0)
        with torch.device(device):
            model = VideoModel.build(encoder, core, "ssv2", core_dim=core_dim).eval()
        model.encoder.check_finite = False  # one host sync per frame would distort the latency
        _MODELS[key] = model
    return _MODELS[key]


def _gate(model, clip, device):
    """Streaming == clip path on a short clip (the property the whole design rests on)."""
    with torch.no_grad(), autocast_bf16(device):
        a = model(clip).float()
        b = model.stream(clip).float()
    tol = 1e-4 if device.type == "cpu" else 1e-1  # GPU: bf16, chunked scan vs step recurrence
    torch.testing.assert_close(b, a, atol=tol, rtol=tol)


@pytest.mark.parametrize("mode", ["clip", "steps"])
@pytest.mark.parametrize("core", CORES)
def test_cpu_clip_vs_step_loop(benchmark, device, quick, core, mode):
    if device.type != "cpu":
        pytest.skip("CPU case")
    benchmark.group = f"e2e-cpu-lite0-{core}"
    model = _model("efficientnet_lite0", core, device, core_dim=256)
    clip = torch.randn(1, 4 if quick else 8, 3, 128, 128)
    _gate(model, clip[:, :3], device)
    fn = (lambda: model(clip)) if mode == "clip" else (lambda: model.stream(clip))
    with torch.no_grad():
        pedantic(benchmark, fn, device, rounds=2 if quick else 4, warmup=1)
    record_throughput(benchmark, device, clip.shape[1])


def _gpu_cases(quick: bool):
    if quick:
        return [("dinov3_vitl16", c) for c in CORES] + [("dinov3_vits16", "gmmix")]
    return [(e, c) for e in ENCODERS for c in CORES]


@pytest.mark.parametrize("graph", ["eager", "cudagraph"])
@pytest.mark.parametrize("encoder, core", _gpu_cases(quick=False))
def test_cuda_stream_b1(benchmark, device, quick, encoder, core, graph):
    if device.type != "cuda":
        pytest.skip("needs a CUDA device")
    if (encoder, core) not in _gpu_cases(quick):
        pytest.skip("--quick")
    benchmark.group = f"e2e-stream-b1-{encoder}-{core}"
    model = _model(encoder, core, device)
    clip = torch.randn(1, 3, 3, 224, 224, device=device)
    _gate(model, clip, device)
    state = model.init_state(1, frame_size=(224, 224), device=device)
    frame = torch.randn(1, 3, 224, 224, device=device)

    def step(f):
        with torch.no_grad(), autocast_bf16(device):
            return model.step(f, state)[0]

    if graph == "cudagraph":
        eager_out = step(frame).float()
        state.core.reset_()  # same starting state for the replay as for the eager step
        runner = CUDAGraphRunner(step, frame, warmup=0)  # capture runs step once
        state.core.reset_()
        torch.testing.assert_close(runner(frame).float(), eager_out, atol=5e-2, rtol=5e-2)
        fn = lambda: runner(frame)  # noqa: E731
    else:
        fn = lambda: step(frame)  # noqa: E731
    pedantic(benchmark, fn, device, rounds=20 if quick else 50, warmup=5)
    record_throughput(benchmark, device, 1)


@pytest.mark.parametrize("encoder, core", _gpu_cases(quick=False))
def test_cuda_clip_b64(benchmark, device, quick, encoder, core):
    if device.type != "cuda":
        pytest.skip("needs a CUDA device")
    if (encoder, core) not in _gpu_cases(quick):
        pytest.skip("--quick")
    benchmark.group = f"e2e-clip-b64-{encoder}"
    model = _model(encoder, core, device)
    _gate(model, torch.randn(1, 3, 3, 224, 224, device=device), device)
    clip = torch.randn(4, 16, 3, 224, 224, device=device)

    def run():
        with torch.no_grad(), autocast_bf16(device):
            return model(clip)

    pedantic(benchmark, run, device, rounds=5 if quick else 10, warmup=2)
    record_throughput(benchmark, device, 64)


@pytest.mark.parametrize("mode", ["eager", "compile"])
@pytest.mark.parametrize("core", ["gmmix", "rvmrnn"])
def test_cuda_clip_b64_split(benchmark, device, quick, core, mode):
    """DINOv3-L + core, 64 frames per call (4 clips x 16), bf16, inference mode: the encoder alone, the head alone
    (enrichment + core + readout from the encoder's features) and both, timed in the same run, eager or with
    ``VideoModel.compile_clip``. ``core_share_pct``: the head's share of encoder + head."""
    if device.type != "cuda":
        pytest.skip("needs a CUDA device")
    if quick and core != "gmmix":
        pytest.skip("--quick")
    benchmark.group = "e2e-clip-b64-split-dinov3_vitl16"
    _MODELS.clear()  # compile_clip changes the model in place: build a fresh one
    model = _model("dinov3_vitl16", core, device)
    clip = torch.randn(4, 16, 3, 224, 224, device=device)
    with torch.inference_mode(), autocast_bf16(device):
        want = model(clip[:1, :4]).float()
        if mode == "compile":
            model.compile_clip(mode="max-autotune-no-cudagraphs", dynamic=False)
            torch.testing.assert_close(model(clip[:1, :4]).float(), want, atol=1e-1, rtol=1e-1)
        feats = model.encode(clip)
        encoder_s = time_fn(lambda: model.encode(clip), device, warmup=2, iters=5)
        head_s = time_fn(lambda: model(features=feats), device, warmup=2, iters=5)
        pedantic(benchmark, lambda: model(clip), device, rounds=3 if quick else 8, warmup=2)
    _MODELS.clear()
    record_throughput(benchmark, device, 64)
    if benchmark.stats is not None:
        benchmark.extra_info.update(
            encoder_ms=encoder_s * 1e3,
            head_ms=head_s * 1e3,
            encoder_frames_per_s=64 / encoder_s,
            head_frames_per_s=64 / head_s,
            core_share_pct=100 * head_s / (encoder_s + head_s),
        )


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    """A real encoded H.264 file (PyAV writes it; skipped where PyAV is missing)."""
    pytest.importorskip("av", reason="PyAV writes the input video: pip install av")
    from coldstream.testing import write_index_video

    path = tmp_path_factory.mktemp("e2e") / "clip.mp4"
    write_index_video(path, 128, codec="h264", height=240, width=320)
    return path


def test_cuda_decode_and_clip(benchmark, device, quick, video_file):
    if device.type != "cuda":
        pytest.skip("needs a CUDA device")
    from coldstream.io import open_video

    benchmark.group = "e2e-decode"
    model = _model("dinov3_vitl16", "gmmix", device)
    mean, std = model.encoder.mean, model.encoder.std

    def run():
        n = 0
        with open_video(video_file, device=device, output="float", size=224, mean=mean, std=std) as src:
            for chunk in src.stream(chunk_size=64):
                with torch.no_grad(), autocast_bf16(device):
                    model(chunk.data[None])
                n += len(chunk)
        return n

    def decode_only():
        with open_video(video_file, device=device, output="float", size=224, mean=mean, std=std) as src:
            return sum(len(chunk) for chunk in src.stream(chunk_size=64))

    frames = torch.randn(2, 64, 3, 224, 224, device=device)

    def model_only():  # the same 128 frames, already decoded and preprocessed
        with torch.no_grad(), autocast_bf16(device):
            for chunk in frames:
                model(chunk[None])

    assert run() == 128 and decode_only() == 128
    with open_video(video_file, device=device) as src:
        backend = type(src).__name__
    # The goal: decoding is never the bottleneck, i.e. it delivers >= 2x the model's frames/s (same run)
    decode_fps = 128 / time_fn(decode_only, device, warmup=1, iters=3)
    model_fps = 128 / time_fn(model_only, device, warmup=1, iters=3)
    pedantic(benchmark, run, device, rounds=3, warmup=1)
    record_throughput(
        benchmark,
        device,
        128,
        decoder=backend,
        decode_frames_per_s=decode_fps,
        model_frames_per_s=model_fps,
        decode_over_model=decode_fps / model_fps,
        target_decode_2x_model=decode_fps >= 2 * model_fps,
    )


@pytest.mark.parametrize("state", ["slots", "gather"])
@pytest.mark.parametrize("encoder", ENCODERS)
def test_cuda_serve(benchmark, device, quick, encoder, state):
    if device.type != "cuda":
        pytest.skip("needs a CUDA device")
    if quick and (encoder != "dinov3_vitl16" or state != "slots"):
        pytest.skip("--quick")
    from coldstream.serve import StreamEngine, percentile

    benchmark.group = f"e2e-serve-{encoder}"
    model = _model(encoder, "gmmix", device)
    slots = 16 if quick else 32
    engine = StreamEngine(model, slots, device=device, slot_kernels=state == "slots")
    engine.warmup()
    frames = torch.randn(slots, 3, 224, 224, device=device)
    ids = [engine.join() for _ in range(slots)]
    # gate: a stream through the graphed, bucketed engine equals the model stepping it alone (bf16 tolerance)
    state = model.init_state(1, device=device)
    for t in range(3):
        got = engine.step({ids[0]: frames[t], ids[1]: frames[t + 1]})[ids[0]]
        with torch.no_grad(), autocast_bf16(device):
            want = model.step(frames[t : t + 1], state)[0][0].float().cpu()
        torch.testing.assert_close(got, want, atol=1e-1, rtol=1e-1)
    step_s = {}
    for b in engine.buckets:
        batch = {sid: frames[i] for i, sid in enumerate(ids[:b])}
        step_s[b] = time_fn(lambda batch=batch: engine.step(batch), device, warmup=2, iters=5 if quick else 10)
    fits = [b for b in engine.buckets if step_s[b] <= 1 / 30]
    load = max(fits, default=1)
    for sid in ids:
        engine.stats[sid].latencies.clear()
    batch = {sid: frames[i] for i, sid in enumerate(ids[:load])}
    pedantic(benchmark, lambda: engine.step(batch), device, rounds=20 if quick else 50, warmup=3)
    lat = [x for sid in ids[:load] for x in engine.stats[sid].latencies]
    record_throughput(
        benchmark,
        device,
        load,
        streams_30fps=load if fits else 0,
        p50_ms=1e3 * percentile(lat, 50),
        p99_ms=1e3 * percentile(lat, 99),
        slots=slots,
        step_ms_per_bucket={b: round(1e3 * t, 3) for b, t in step_s.items()},
    )
