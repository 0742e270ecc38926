"""Temporal cores: whole-clip throughput and single-step (streaming) latency per core.

CPU: tiny widths (D = 64, N = 9, T = 8, B = 2), fp32, reference kernels.
GPU: ViT-L width (N = 201 tokens, D = 1024), bf16 autocast with the fp32 state, T = 16 clips; the step path eager vs
``torch.compile`` vs CUDA-graph replay (``coldstream.model.cuda_graph.CUDAGraphRunner``), the clip path eager vs
``torch.compile``. Every case checks its numbers (T steps == clip, replay/compiled == eager) before it is timed.
"""

from __future__ import annotations

import pytest
import torch

from coldstream.model.cores import build_core
from coldstream.model.cuda_graph import CUDAGraphRunner
from coldstream.perf import autocast_bf16, pedantic, record_throughput

KINDS = ["identity", "meanpool", "rvmrnn", "mamba", "mambamix", "gmmix"]


def _core(kind: str, dim: int, device) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {"num_heads": 4} if kind == "rvmrnn" and dim == 64 else {}
    return build_core(kind, dim, **options).to(device).eval()


def _steps(core, x, state):
    return torch.stack([core.step(x[:, t], state)[0] for t in range(x.shape[1])], 1)


def _check_steps_equal_clip(core, x, device):
    """Correctness gate: T single steps from a zero state reproduce the clip forward."""
    with torch.no_grad(), autocast_bf16(device):
        clip = core(x).float()
        steps = _steps(core, x, core.init_state(x.shape[0], x.shape[2], device=device)).float()
    tol = 1e-5 if device.type == "cpu" else 5e-2  # GPU: bf16 autocast, chunked scan vs step recurrence
    torch.testing.assert_close(steps, clip, atol=tol, rtol=tol)
    return clip


def _record(benchmark, device, frames: int, state=None):
    extra = {} if state is None else {"state_mb_per_stream": state.nbytes() / state.batch / 2**20}
    record_throughput(benchmark, device, frames, **extra)


@pytest.mark.parametrize("kind", KINDS)
def test_clip_cpu(benchmark, device, quick, kind):
    if device.type != "cpu":
        pytest.skip("CPU case")
    benchmark.group = "cores-cpu-clip-D64-N9-T8-B2"
    core, x = _core(kind, 64, device), torch.randn(2, 8, 9, 64)
    _check_steps_equal_clip(core, x, device)
    with torch.no_grad():
        pedantic(benchmark, lambda: core(x), device, rounds=3 if quick else 10, warmup=1)
    _record(benchmark, device, 2 * 8)


@pytest.mark.parametrize("kind", KINDS)
def test_step_cpu(benchmark, device, quick, kind):
    if device.type != "cpu":
        pytest.skip("CPU case")
    benchmark.group = "cores-cpu-step-D64-N9-B2"
    core, x = _core(kind, 64, device), torch.randn(2, 4, 9, 64)
    _check_steps_equal_clip(core, x, device)
    state = core.init_state(2, 9)
    with torch.no_grad():
        pedantic(benchmark, lambda: core.step(x[:, 0], state), device, rounds=5 if quick else 20, warmup=2)
    _record(benchmark, device, 2, state)


GPU_KINDS = ["rvmrnn", "mamba", "mambamix", "gmmix", "identity"]
N_TOK, WIDTH, T_CLIP = 201, 1024, 16


@pytest.mark.parametrize("mode", ["eager", "compile"])
@pytest.mark.parametrize("kind", GPU_KINDS)
def test_clip_cuda(benchmark, device, quick, kind, mode):
    if device.type != "cuda":
        pytest.skip("needs a CUDA device")
    if quick and (mode == "compile" and kind != "gmmix" or kind == "identity"):
        pytest.skip("--quick")
    benchmark.group = f"cores-cuda-clip-{kind}-N201-D1024-T16"
    core, x = _core(kind, WIDTH, device), torch.randn(1, T_CLIP, N_TOK, WIDTH, device=device)
    ref = _check_steps_equal_clip(core, x[:, :4], device)
    fn = torch.compile(core) if mode == "compile" else core
    with torch.no_grad(), autocast_bf16(device):
        got = fn(x[:, :4]).float()
        torch.testing.assert_close(got, ref, atol=5e-2, rtol=5e-2)
        pedantic(benchmark, lambda: fn(x), device, rounds=3 if quick else 10, warmup=2)
    _record(benchmark, device, T_CLIP)


@pytest.mark.parametrize("mode", ["eager", "compile", "cudagraph"])
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("kind", GPU_KINDS)
def test_step_cuda(benchmark, device, quick, kind, batch, mode):
    if device.type != "cuda":
        pytest.skip("needs a CUDA device")
    if quick and (batch == 8 or kind == "identity" or (mode == "compile" and kind != "gmmix")):
        pytest.skip("--quick")
    benchmark.group = f"cores-cuda-step-{kind}-N201-D1024-B{batch}"
    core = _core(kind, WIDTH, device)
    x = torch.randn(batch, 4, N_TOK, WIDTH, device=device)
    _check_steps_equal_clip(core, x, device)
    with torch.no_grad():
        eager_state = core.init_state(batch, N_TOK, device=device)
        with autocast_bf16(device):
            want = _steps(core, x, eager_state).float()
        state = core.init_state(batch, N_TOK, device=device)

        def step(x_t):
            with autocast_bf16(device):
                return core.step(x_t, state)[0]

        if mode == "compile":
            call = torch.compile(step)
        elif mode == "cudagraph":
            call = CUDAGraphRunner(step, x[:, 0])
        else:
            call = step
        call(x[:, 0])  # compile / warm up, then check from a zero state
        state.reset_()
        got = torch.stack([call(x[:, t]).float().clone() for t in range(x.shape[1])], 1)
        torch.testing.assert_close(got, want, atol=5e-2, rtol=5e-2)
        pedantic(benchmark, lambda: call(x[:, 0]), device, rounds=10 if quick else 50, warmup=3)
    _record(benchmark, device, batch, state)
