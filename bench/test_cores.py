"""Temporal cores: whole-clip throughput and single-step (streaming) latency per core.

CPU: tiny widths (D = 64, N = 9, T = 8, B = 2), fp32, reference kernels.
GPU: ViT-L width (N = 201 tokens, D = 1024), bf16 autocast with the fp32 state, T = 16 clips; the step path eager vs
``torch.compile`` vs CUDA-graph replay (``coldstream.model.cuda_graph.CUDAGraphRunner``), the clip path eager vs
``torch.compile``. Every case checks its numbers (T steps == clip, replay/compiled == eager) before it is timed.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time

import pytest
import torch
import torch.nn.functional as F

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


def _paper_mamba_forward(m, u, conv_state=None, ssm_state=None):
    """A Mamba layer as the paper's reference code runs it on a CPU: mamba-ssm's slow path (``nn.Conv1d``, then its
    plain PyTorch ``selective_scan_ref``: every ``exp(delta A)`` and ``delta B u`` built up front with einsum, then a
    Python loop over time with an einsum readout), over groups of 512 sequences. Same weights and outputs (and final
    states) as ``coldstream.model.layers.mamba.Mamba.forward`` from a zero state."""
    assert conv_state is None and ssm_state is None, "clip forward from a zero state only"
    outs, convs, ssms = [], [], []
    for chunk in u.split(512):
        T = chunk.shape[1]
        x, z = m.in_proj(chunk).transpose(1, 2).chunk(2, dim=1)
        convs.append(F.pad(x, (m.d_conv - 1, 0))[..., -(m.d_conv - 1) :])
        x = F.silu(m.conv1d(x)[..., :T])
        dt, B, C = m._split(m.x_proj(x.transpose(1, 2)))
        delta = F.softplus((dt @ m.dt_proj.weight.t()).transpose(1, 2) + m.dt_proj.bias[:, None])
        A = -torch.exp(m.A_log.float())
        B, C = B.transpose(1, 2), C.transpose(1, 2)
        decay = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
        drive = torch.einsum("bdl,bnl,bdl->bdln", delta, B, x)
        h = x.new_zeros(x.shape[0], x.shape[1], A.shape[1])
        ys = []
        for i in range(T):
            h = decay[:, :, i] * h + drive[:, :, i]
            ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, i]))
        y = (torch.stack(ys, dim=2) + x * m.D[:, None]) * F.silu(z)
        outs.append(m.out_proj(y.transpose(1, 2)))
        ssms.append(h)
    return torch.cat(outs), torch.cat(convs), torch.cat(ssms)


def _paper_path(core):
    """A copy of ``core`` whose Mamba layers run ``_paper_mamba_forward`` (everything else is the same code)."""
    paper = copy.deepcopy(core)
    for block in getattr(paper, "mamba_blocks", []):
        block.mamba.forward = functools.partial(_paper_mamba_forward, block.mamba)
    return paper


@pytest.mark.parametrize("kind", ["mamba", "mambamix", "gmmix", "rvmrnn"])
def test_clip_cpu_vs_paper_path(benchmark, device, quick, kind):
    """ViT-S width (D = 384, 201 tokens, T = 16, batch 1, 4 layers, fp32): the core as coldstream runs it on a CPU
    against the same core and weights with its Mamba layers on the paper reference code's CPU path, timed side by
    side in this process (RVMRNN has no Mamba layer: both columns run the same code, a check on the timer).
    ``x_paper`` is the ratio of frames/s; ``gflop_per_s`` (matrix products and attention at our frames/s) against
    the CPU's FMA peak says how much room is left (docs/results.md)."""
    if device.type != "cpu":
        pytest.skip("CPU case")
    benchmark.group = "cores-cpu-clip-vs-paper-D384-N201-T16-B1"
    core = _core(kind, 384, device)
    paper = _paper_path(core)
    x = torch.randn(1, 4 if quick else 16, 201, 384)
    with torch.no_grad():
        torch.testing.assert_close(core(x), paper(x), atol=1e-4, rtol=1e-4)
        rounds = 2 if quick else 5
        paper(x)  # warm-up, as pedantic does for ours
        paper_s = statistics.median(_wall(lambda: paper(x)) for _ in range(rounds))
        pedantic(benchmark, lambda: core(x), device, rounds=rounds, warmup=1)
    _record(benchmark, device, x.shape[1], None)
    if benchmark.stats is not None:
        ours = benchmark.extra_info["frames_per_s"]
        gflop = _gflop(core, x) / x.shape[1]  # matrix products and attention: what the CPU's FMA units must do
        benchmark.extra_info.update(
            paper_frames_per_s=x.shape[1] / paper_s,
            x_paper=ours * paper_s / x.shape[1],
            gflop_per_frame=gflop,
            gflop_per_s=gflop * ours,
        )


def _gflop(core, x) -> float:
    """The matrix-product work of one clip forward in GFLOP, as ``torch.utils.flop_counter`` counts it (elementwise
    work is left out). Counted on a copy whose attention runs as plain matmuls: the counter skips SDPA's CPU kernel."""
    from torch.utils.flop_counter import FlopCounterMode

    counted = copy.deepcopy(core)
    for m in counted.modules():
        if isinstance(getattr(m, "attention", None), str):
            m.attention = "math"
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        counted(x)
    return counter.get_total_flops() / 1e9


def _wall(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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
