"""Measuring speed honestly: the physical limits of known devices, synchronised timing, and roofline percentages.

Used by the ``bench/`` suites and ``bench/run.py``; importable by users who benchmark their own models.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceLimits:
    name: str  # marketing name matched in the device name
    hbm_bytes_per_s: float  # peak memory bandwidth
    bf16_flops: float  # dense bf16 tensor-core peak (no sparsity)
    fp32_flops: float  # non-tensor-core fp32 peak


# Vendor datasheet figures (SXM parts). Matched by substring of torch.cuda.get_device_name(), first match wins.
KNOWN_DEVICES: tuple[DeviceLimits, ...] = (
    DeviceLimits("H200", 4.8e12, 989e12, 67e12),
    DeviceLimits("H100", 3.35e12, 989e12, 67e12),
    DeviceLimits("A100", 2.0e12, 312e12, 19.5e12),
    DeviceLimits("L40S", 0.864e12, 362e12, 91.6e12),
)


def device_limits(device: torch.device | str | None = None) -> DeviceLimits | None:
    """The limits of a CUDA device, or ``None`` for the CPU and unknown GPUs (no percentage is then reported)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((d for d in KNOWN_DEVICES if d.name in name), None)


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device | str, warmup: int = 3, iters: int = 10) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` calls (which also trigger autotuning / compilation).

    CUDA: measured with CUDA events around each call; CPU: wall clock.
    """
    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def autocast_bf16(device: torch.device | str):
    """bf16 autocast on CUDA (without its weight cache, whose entries a captured CUDA graph would outlive); a no-op
    context on the CPU."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def record_throughput(benchmark, device: torch.device | str, frames: int, **extra) -> None:
    """Put frames/s, ms per call and peak memory of a finished pytest-benchmark case into its ``extra_info``."""
    if benchmark.stats is None:  # --benchmark-disable: correctness only
        return
    sec = benchmark.stats.stats.median
    info = {"frames_per_s": frames / sec, "ms_per_call": sec * 1e3, "peak_mem_mb": peak_memory_mb(device)}
    benchmark.extra_info.update(info, **extra)


def pedantic(benchmark, fn: Callable[[], object], device: torch.device | str, rounds: int = 10, warmup: int = 3):
    """Run ``fn`` under pytest-benchmark with a device synchronisation inside every timed call."""

    def call():
        out = fn()
        synchronize(device)
        return out

    return benchmark.pedantic(call, rounds=rounds, warmup_rounds=warmup, iterations=1)


def roofline(seconds: float, bytes_moved: float = 0.0, flops: float = 0.0, device=None) -> dict[str, float]:
    """Achieved bandwidth / FLOP rate and, on a known GPU, the percentage of its limit."""
    out = {"seconds": seconds, "GB_per_s": bytes_moved / seconds / 1e9, "TFLOP_per_s": flops / seconds / 1e12}
    lim = device_limits(device)
    if lim is not None:
        out["pct_hbm"] = 100.0 * bytes_moved / seconds / lim.hbm_bytes_per_s
        out["pct_bf16_peak"] = 100.0 * flops / seconds / lim.bf16_flops
    return out


def peak_memory_mb(device: torch.device | str) -> float | None:
    """Peak allocated CUDA memory since the last reset, in MiB (``None`` on the CPU)."""
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
