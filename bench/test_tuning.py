"""Launch-configuration sweeps: which block sizes the fused kernels should default to, decided by timing on a GPU.

Not in bench/device_check.sh's default suites; run it on its own (a few minutes of compiles and timings):

    SUITES=tuning SUITE_TIMEOUTS=tuning=240 CUDA_TESTS=tests/kernels bash bench/device_check.sh

``selective_scan`` backward, at the project's shape (B = 8 clips x 201 tokens, T = 16, E = 2048, d_state 16, bf16):
the H200 run of 2026-11-26 took 16.5 ms for forward + backward, of which the forward was 0.98 ms. Compiled for
sm_90 on a CPU machine, the backward at its defaults (chunk K = 16, 16 channels, 8 warps) holds 233 registers per
thread, so an SM runs one 8-warp program at a time; its ~1,700 instructions per chunk and thread would take about
2.7 ms if issued back to back, so the kernel is mostly waiting on latency. Each case below trades registers for
occupancy (a shorter chunk; fewer channels per program; a ``maxnreg`` cap that spills a little) and is checked
against the reference before it is timed. The fastest correct case becomes the default in ``selective_scan/ops.py``.

``selective_scan`` forward: the tile length of the sequential forward at the project's shape, and at B = 4, T = 4096
the chunked forward (chunks of 128-512 steps) against the sequential one; ``ops.FWD_TILE``, ``FWD_CHUNK_T`` and
``FWD_CHUNKED_BELOW`` take the winners.

``causal_conv1d`` forward + backward at the same shape (W = 4, bf16): the H200 run of 2026-11-26 took 1.76 ms, 16x
its HBM floor, with small tiles (16 x 16 elements) that left the kernels waiting on latency. The kernels now give a
thread one channel row (16-byte vectors, taps as register indices; 32 and 79 registers per thread for forward and
backward at sm_90): the sweep sizes the channels per program (one per thread, so also the warps), the steps per
register tile (one or two vectors) and how many rows one backward program sums its weight gradient over.

``selective_state_update`` (one streaming step, 201 tokens x 2048 x 16, CUDA graph): the default tile of 64 channels
and 4 warps reached 67% of the H200's HBM bandwidth with an fp32 state; bigger and smaller tiles, with fp32 and bf16
states. The step keeps one fixed configuration (never autotuned, so it is safe in a CUDA graph): this picks it.

On CPU each case runs through the Triton interpreter at a tiny shape: a correctness check of every configuration
(the interpreter ignores ``maxnreg``), not a timing.
"""

from __future__ import annotations

import pytest
import torch

from coldstream.kernels import causal_conv1d, selective_scan
from coldstream.kernels.causal_conv1d import ops as conv_ops
from coldstream.kernels.causal_conv1d.naive import causal_conv1d_ref
from coldstream.kernels.selective_scan import ops
from coldstream.kernels.selective_scan.naive import selective_scan_ref
from test_kernels import (
    CUDA,
    DEVICE,
    DTYPE,
    check_close,
    cpu_median,
    cuda_time,
    fwd_bwd,
    hbm_limit,
    leaf,
    report,
    scan_inputs,
    state_update_case,
    synced,
)

# (chunk K, channels per program, warps, register cap): registers per thread and warps per SM from sm_90 compiles
# (the K16 rows measured with the step-loop backward, one exp per update; the others with the scan version)
SCAN_BWD_CONFIGS = {
    "default": (16, 16, 8, None),  # 222 registers: one 8-warp program per SM
    "K16-cap128": (16, 16, 8, 128),  # 16 warps per SM, 184 bytes of spills
    "K8": (8, 16, 8, None),  # 243 registers: still 8 warps per SM (isolates the chunk length)
    "K8-cap128": (8, 16, 8, 128),  # 16 warps per SM, 168 bytes of spills
    "K4-cap128": (4, 16, 8, 128),  # 16 warps per SM, 16 bytes of spills
    "K4-d8-w4": (4, 8, 4, None),  # 167 registers: 12 warps per SM
    "K4-d8-w4-cap128": (4, 8, 4, 128),  # 16 warps per SM, no spills
}


@pytest.mark.benchmark(group="selective_scan_bwd_config")
@pytest.mark.parametrize("config", list(SCAN_BWD_CONFIGS))
def test_selective_scan_bwd_config(benchmark, config, monkeypatch):
    chunk, block_d, warps, maxnreg = SCAN_BWD_CONFIGS[config]
    for name, value in (("CHUNK", chunk), ("BLOCK_D", block_d), ("NUM_WARPS", warps), ("BWD_MAXNREG", maxnreg)):
        monkeypatch.setattr(ops, name, value)
    batch, dim, T, n = (8 * 201, 2048, 16, 16) if CUDA else (3, 16, 16, 4)
    x = scan_inputs(batch, dim, T, n)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    inputs = [leaf(x[k]) for k in names]
    dout = torch.randn_like(x["u"])
    run_fused = fwd_bwd(lambda *t: selective_scan(*t, delta_softplus=True, backend="triton"), inputs, [dout])
    run_ref = fwd_bwd(lambda *t: selective_scan_ref(*t, delta_softplus=True)[0], inputs, [dout])
    check_close(run_fused(), run_ref(), f"selective_scan fwd+bwd config {config}")
    label = f"selective_scan fwd+bwd {config} (K={chunk} channels={block_d} warps={warps} maxnreg={maxnreg or '-'})"
    if not CUDA:
        benchmark.pedantic(synced(run_fused), rounds=1, iterations=1)
        report(benchmark, f"{label} (cpu, Triton interpreter)", cpu_median(benchmark), None)
        return
    plain = [x[k] for k in names]
    with torch.no_grad():
        t_fwd = cuda_time(lambda: selective_scan(*plain, delta_softplus=True))
    t = cuda_time(run_fused)
    benchmark.pedantic(synced(run_fused), rounds=5, iterations=1, warmup_rounds=1)
    report(benchmark, label, t, None)
    benchmark.extra_info.update(forward_ms=t_fwd * 1e3, backward_ms=(t - t_fwd) * 1e3)


# Forward: (shape, steps per tile or None for one 16-byte vector, chunk length, chunked below this many programs).
# "main" is the project's shape (sequential forward, tiles of 8 bf16 steps by default); "long" is B = 4, T = 4096
# (64 programs: the chunked forward by default), also run sequentially (threshold 0) and with other chunk lengths.
SCAN_FWD_CONFIGS = {
    "main-default": ("main", None, 256, 264),
    "main-K4": ("main", 4, 256, 264),
    "main-K16": ("main", 16, 256, 264),
    "long-default": ("long", None, 256, 264),
    "long-sequential": ("long", None, 256, 0),
    "long-chunk128": ("long", None, 128, 264),
    "long-chunk512": ("long", None, 512, 264),
}


@pytest.mark.benchmark(group="selective_scan_fwd_config")
@pytest.mark.parametrize("config", list(SCAN_FWD_CONFIGS))
def test_selective_scan_fwd_config(benchmark, config, monkeypatch):
    shape, tile, chunk, below = SCAN_FWD_CONFIGS[config]
    for name, value in (("FWD_TILE", tile), ("FWD_CHUNK_T", chunk), ("FWD_CHUNKED_BELOW", below)):
        monkeypatch.setattr(ops, name, value)
    if CUDA:
        batch, dim, T, n = (8 * 201, 2048, 16, 16) if shape == "main" else (4, 2048, 4096, 16)
    else:  # the interpreter: two chunks and a partial one for the long cases
        batch, dim, T, n = (3, 16, 16, 4) if shape == "main" else (1, 16, 2 * chunk + 5, 4)
    x = scan_inputs(batch, dim, T, n)
    args = [x[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]

    def run():
        return selective_scan(*args, delta_softplus=True, backend="triton")

    with torch.no_grad():
        check_close([run()], [selective_scan_ref(*args, delta_softplus=True)[0]], f"selective_scan fwd {config}")
    label = f"selective_scan fwd {config} (B={batch} T={T} tile={tile or '16 B'} chunk={chunk} below={below})"
    if not CUDA:
        benchmark.pedantic(synced(run), rounds=1, iterations=1)
        report(benchmark, f"{label} (cpu, Triton interpreter)", cpu_median(benchmark), None)
        return
    with torch.no_grad():
        t = cuda_time(run)
        benchmark.pedantic(synced(run), rounds=5, iterations=1, warmup_rounds=1)
    report(benchmark, label, t, 2 * batch * dim * T * 4)  # u, delta, z in, out (bf16)


STEP_CONFIGS = {"default": (64, 4), "d32-w2": (32, 2), "d128-w4": (128, 4), "d128-w8": (128, 8), "d256-w8": (256, 8)}


@pytest.mark.benchmark(group="selective_state_update_config")
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16], ids=["state_fp32", "state_bf16"])
@pytest.mark.parametrize("config", list(STEP_CONFIGS))
def test_selective_state_update_config(benchmark, config, state_dtype, monkeypatch):
    block_d, warps = STEP_CONFIGS[config]
    monkeypatch.setattr(ops, "STEP_BLOCK_D", block_d)
    monkeypatch.setattr(ops, "STEP_NUM_WARPS", warps)
    tokens, dim, n = (201, 2048, 16) if CUDA else (4, 300, 16)  # 300: a partial last tile for every block size
    step, bytes_moved = state_update_case(
        tokens, dim, n, state_dtype, "triton", f"selective_state_update config {config}"
    )
    short = str(state_dtype).removeprefix("torch.")
    benchmark.group = f"selective_state_update_config_{short}"  # each state dtype compared with its own default
    label = f"selective_state_update {config} (channels={block_d} warps={warps}) {short} state"
    if not CUDA:
        benchmark.pedantic(synced(step), rounds=1, iterations=1)
        report(benchmark, f"{label} (cpu, Triton interpreter)", cpu_median(benchmark), None)
        return
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    t = cuda_time(graph.replay, iters=50)
    benchmark.pedantic(synced(graph.replay), rounds=20, iterations=1, warmup_rounds=5)
    report(benchmark, label, t, bytes_moved)
    if hbm_limit():
        benchmark.extra_info["hbm_floor_ms"] = bytes_moved / hbm_limit() * 1e3


# (forward BLOCK_D, BLOCK_T, backward BLOCK_D, BLOCK_T, warps, rows per backward program); BLOCK_D channels per
# program, one per thread (warps = BLOCK_D / 32 at most); BLOCK_T steps per register tile (8 = one bf16 vector)
CONV_CONFIGS = {
    "default": (128, 16, 128, 16, 4, 32),
    "d64-w2": (64, 16, 64, 16, 2, 32),
    "d256-w8": (256, 16, 256, 16, 8, 32),
    "fwd-t8": (128, 8, 128, 16, 4, 32),
    "bwd-t8": (128, 16, 128, 8, 4, 32),
    "rows2": (128, 16, 128, 16, 4, 2),
}


@pytest.mark.benchmark(group="causal_conv1d_config")
@pytest.mark.parametrize("config", list(CONV_CONFIGS))
def test_causal_conv1d_config(benchmark, config, monkeypatch):
    values = CONV_CONFIGS[config]
    for name, value in zip(
        ("BLOCK_D", "BLOCK_T", "BWD_BLOCK_D", "BWD_BLOCK_T", "NUM_WARPS", "MAX_ROWS"), values, strict=True
    ):
        monkeypatch.setattr(conv_ops, name, value)
    batch, dim, T = (8 * 201, 2048, 16) if CUDA else (3, 40, 16)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, dim, T, generator=g).to(DEVICE, DTYPE)
    w, b = torch.randn(dim, 4, generator=g).to(DEVICE), torch.randn(dim, generator=g).to(DEVICE)
    inputs, dout = [leaf(x), leaf(w), leaf(b)], torch.randn_like(x)
    run_fused = fwd_bwd(lambda *t: causal_conv1d(*t, backend="triton"), inputs, [dout])
    run_ref = fwd_bwd(lambda *t: causal_conv1d_ref(*t)[0], inputs, [dout])
    check_close(run_fused(), run_ref(), f"causal_conv1d fwd+bwd config {config}")
    fd, ft, bd, bt, warps, rows = values
    label = f"causal_conv1d fwd+bwd {config} (fwd {fd}x{ft} bwd {bd}x{bt} warps={warps} rows={rows})"
    if not CUDA:
        benchmark.pedantic(synced(run_fused), rounds=1, iterations=1)
        report(benchmark, f"{label} (cpu, Triton interpreter)", cpu_median(benchmark), None)
        return
    with torch.no_grad():
        t_fwd = cuda_time(lambda: causal_conv1d(x, w, b))
    t = cuda_time(run_fused)
    benchmark.pedantic(synced(run_fused), rounds=5, iterations=1, warmup_rounds=1)
    report(benchmark, label, t, 5 * x.numel() * x.element_size())
    benchmark.extra_info.update(forward_ms=t_fwd * 1e3, backward_ms=(t - t_fwd) * 1e3)
