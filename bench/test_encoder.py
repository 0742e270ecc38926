"""Frozen-encoder throughput: frames/s per attention backend, dtype and execution mode, with an MFU figure.

CPU: ViT-S/16 and EfficientNet-Lite0 at small batches, SDPA vs the math oracle.
GPU: ViT-S/B/L at 224², bf16, batch 1/8/64, eager vs torch.compile vs CUDA-graph replay (+ xFormers if installed).
"""

from __future__ import annotations

import pytest
import torch

from coldstream.model import build_encoder
from coldstream.model.cuda_graph import CUDAGraphRunner
from coldstream.model.encoders.dinov3.vit import DINOV3_CONFIGS
from coldstream.model.layers.attention import xformers_unavailable_reason
from coldstream.perf import device_limits, pedantic, record_throughput


def vit_flops_per_frame(name: str, size: int = 224) -> float:
    """2·MACs of one frame: per block 24·N·D² (qkv, proj, MLP) + 4·N²·D (scores, weighted sum), plus patch embed."""
    cfg = DINOV3_CONFIGS[name]
    d, p = cfg.embed_dim, (size // cfg.patch_size) ** 2
    n = p + 1 + cfg.num_storage_tokens
    return cfg.depth * (24 * n * d * d + 4 * n * n * d) + 2 * p * d * 3 * cfg.patch_size**2


def _record(benchmark, device, batch, flops_per_frame=None):
    record_throughput(benchmark, device, batch)
    lim = device_limits(device)
    if flops_per_frame is not None and benchmark.stats is not None:
        fps = benchmark.extra_info["frames_per_s"]
        benchmark.extra_info["TFLOP_per_s"] = flops_per_frame * fps / 1e12
        if lim is not None:
            benchmark.extra_info["mfu_pct"] = 100 * flops_per_frame * fps / lim.bf16_flops


def _reference_check(enc, x, dtype):
    """Correctness gate before timing: the timed configuration must match the fp32 math oracle."""
    with torch.device(x.device):  # initialise on the device: a CPU init of ViT-L takes seconds
        ref = build_encoder(enc.name, attention="math")
    ref.load_state_dict(enc.state_dict())
    want = ref(x.float())
    got = enc(x).float()
    atol = 1e-3 if dtype == torch.float32 else 1e-1  # random LayerScale-1e-5 weights keep activations small
    torch.testing.assert_close(got, want, atol=atol, rtol=atol)


@pytest.mark.parametrize("attention", ["sdpa", "math"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_vits16_cpu(benchmark, device, quick, attention, dtype):
    if device.type != "cpu":
        pytest.skip("CPU case")
    benchmark.group = "encoder-cpu-dinov3_vits16"
    enc = build_encoder("dinov3_vits16", attention=attention).to(dtype)
    x = torch.randn(2, 3, 224, 224, dtype=dtype)
    _reference_check(enc, x, dtype)
    pedantic(benchmark, lambda: enc(x), device, rounds=2 if quick else 5, warmup=1)
    _record(benchmark, device, 2, vit_flops_per_frame("dinov3_vits16"))


def test_efficientnet_lite0_cpu(benchmark, device, quick):
    if device.type != "cpu":
        pytest.skip("CPU case")
    benchmark.group = "encoder-cpu-efficientnet_lite0"
    enc = build_encoder("efficientnet_lite0")
    x = torch.randn(4, 3, 224, 224)
    pedantic(benchmark, lambda: enc(x), device, rounds=2 if quick else 5, warmup=1)
    _record(benchmark, device, 4)


GPU_MODES = ["eager", "compile", "cudagraph", "xformers"]


@pytest.mark.parametrize("mode", GPU_MODES)
@pytest.mark.parametrize("batch", [1, 8, 64])
@pytest.mark.parametrize("name", list(DINOV3_CONFIGS))
def test_dinov3_cuda(benchmark, device, quick, name, batch, mode):
    if device.type != "cuda":
        pytest.skip("needs a CUDA device")
    if quick and (batch == 8 or name == "dinov3_vitb16" or (mode == "compile" and batch == 1)):
        pytest.skip("--quick")
    if mode == "xformers" and xformers_unavailable_reason():
        pytest.skip(xformers_unavailable_reason())
    benchmark.group = f"encoder-{name}-b{batch}"
    with torch.device(device):
        enc = build_encoder(name, attention="xformers" if mode == "xformers" else "sdpa").to(torch.bfloat16)
    enc.check_finite = False  # a host sync per call would distort the timing
    x = torch.randn(batch, 3, 224, 224, device=device, dtype=torch.bfloat16)
    _reference_check(enc, x[:1], torch.bfloat16)
    if mode == "compile":
        enc.compile()
        call = lambda: enc(x)  # noqa: E731
    elif mode == "cudagraph":
        runner = CUDAGraphRunner(enc, x)
        torch.testing.assert_close(runner(x).float(), enc(x).float(), atol=1e-2, rtol=1e-2)
        call = lambda: runner(x)  # noqa: E731
    else:
        call = lambda: enc(x)  # noqa: E731
    pedantic(benchmark, call, device, rounds=5 if quick else 20, warmup=3)
    _record(benchmark, device, batch, vit_flops_per_frame(name))
