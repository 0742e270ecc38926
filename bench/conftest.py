"""Shared options for the benchmark suites: ``--device cpu|cuda|auto`` and ``--quick``.

Every case checks its result against the reference before it is timed; GPU timings synchronise and warm up first
(``coldstream.perf.pedantic``). Figures go into ``benchmark.extra_info`` so ``bench/run.py`` can tabulate them.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # kernels must be importable on CPU-only machines


def pytest_addoption(parser):
    parser.addoption("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device for the suites")
    parser.addoption("--quick", action="store_true", help="smallest shapes and fewest rounds")


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    choice = request.config.getoption("--device")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda asked for, but no CUDA device is available")
    return torch.device(choice)


@pytest.fixture(scope="session")
def quick(request) -> bool:
    return bool(request.config.getoption("--quick"))


@pytest.fixture(autouse=True)
def _reset_peak_memory(device):
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
