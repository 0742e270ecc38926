"""Throughput of the fused kernels (pytest-benchmark): Triton vs the PyTorch eager reference vs torch.compile of it.

On a CUDA GPU every case runs at the project's shapes (clips x 201 tokens, T = 16 frames, E = 2048, d_state 16) in
bf16, checks the Triton result against the reference before timing, then times all three variants in the same run
(CUDA events, after warm-up and compilation) and reports in ``benchmark.extra_info``: the times, the speed-ups, the
bytes an ideal kernel must move, the achieved HBM bandwidth and its share of the device's limit (H100 3.35 TB/s,
H200 4.8 TB/s), and whether each case's target (``targets=`` below) is met. Targets are reported, not asserted, so
one run reports all.

Without CUDA the cases run the reference path at tiny shapes (a plumbing check that finishes in seconds); the
bandwidth and compile comparisons need a GPU and are skipped there.

    pytest bench/test_kernels.py --benchmark-json=bench/results/kernels-<device>-<date>.json
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from coldstream.kernels import (
    causal_conv1d,
    causal_conv1d_update,
    gated_blend,
    gated_linear_scan,
    selective_scan,
    selective_state_update,
)
from coldstream.kernels.causal_conv1d.naive import causal_conv1d_ref
from coldstream.kernels.gated_blend.naive import gated_blend_ref
from coldstream.kernels.gated_linear_scan.naive import gated_linear_scan_ref
from coldstream.kernels.selective_scan.naive import selective_scan_ref
from coldstream.perf import device_limits, time_fn

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPE = torch.bfloat16 if CUDA else torch.float32


def hbm_limit() -> float | None:
    lim = device_limits()
    return lim.hbm_bytes_per_s if lim else None


def cuda_time(fn: Callable[[], object], iters: int = 10, warmup: int = 3) -> float:
    """Median seconds per call, measured with CUDA events after warm-up."""
    return time_fn(fn, "cuda", warmup=warmup, iters=iters)


def kernel_time(fn: Callable[[], object], iters: int = 10, warmup: int = 3) -> float:
    """Seconds of GPU work per call: the summed duration of every kernel, copy and memset ``fn`` launches (the
    profiler's device activity), so host gaps and launch latency are left out. What a kernel alone costs."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    busy_us = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type == DeviceType.CUDA)
    return busy_us / iters / 1e6


def synced(fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        out = fn()
        if CUDA:
            torch.cuda.synchronize()
        return out

    return run


def check_close(actual, expected, what: str, rel: float = 3e-2) -> None:
    """Correctness gate before timing: max error relative to the reference's magnitude."""
    for a, e in zip(actual, expected, strict=True):
        if a is None or e is None:
            continue
        err = (a.float() - e.float()).abs().max().item()
        scale = max(e.float().abs().max().item(), 1e-6)
        assert err <= rel * scale, f"{what}: max error {err:.3g} vs reference magnitude {scale:.3g}"


def report(
    benchmark,
    name: str,
    t_fused: float,
    bytes_moved: float | None,
    t_ref: float | None = None,
    t_compiled: float | None = None,
    targets: dict | None = None,
    kernel: Callable[[], object] | None = None,
) -> None:
    """Fills the row. ``kernel``: the timed closure again, for ``kernel_ms`` (GPU work only, ``kernel_time``),
    ``floor_ms`` (``bytes_moved`` at the device's HBM bandwidth) and ``x_floor`` (kernel_ms / floor_ms)."""
    info = benchmark.extra_info
    info["case"] = name
    info["device"] = torch.cuda.get_device_name() if CUDA else "cpu"
    info["torch"] = torch.__version__
    info["fused_ms"] = t_fused * 1e3
    if bytes_moved is not None:
        info["bytes_moved"] = bytes_moved
        info["achieved_GBps"] = bytes_moved / t_fused / 1e9
        limit = hbm_limit()
        if limit:
            info["hbm_limit_GBps"] = limit / 1e9
            info["pct_of_hbm_limit"] = 100 * bytes_moved / t_fused / limit
    if kernel is not None and CUDA:
        info["kernel_ms"] = kernel_time(kernel) * 1e3
        limit = hbm_limit()
        if bytes_moved is not None and limit:
            info["floor_ms"] = bytes_moved / limit * 1e3
            info["x_floor"] = info["kernel_ms"] / info["floor_ms"]
    if t_ref is not None:
        info["reference_ms"] = t_ref * 1e3
        info["speedup_vs_reference"] = t_ref / t_fused
    if t_compiled is not None:
        info["compiled_ms"] = t_compiled * 1e3
        info["speedup_vs_compile"] = t_compiled / t_fused
    for key, (value_key, bound, larger_is_better) in (targets or {}).items():
        value = info.get(value_key)
        info[f"target_{key}"] = None if value is None else (value >= bound if larger_is_better else value <= bound)
    print(f"\n[{name}] " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()))


def cpu_median(benchmark) -> float:
    stats = getattr(benchmark, "stats", None)
    return stats.stats.median if stats is not None else float("nan")  # nan under --benchmark-disable


def fwd_bwd(fn: Callable[..., object], inputs: list[torch.Tensor | None], grad_out: list[torch.Tensor]):
    """A closure running forward + backward of ``fn`` with fixed output gradients."""

    def run():
        for t in inputs:
            if t is not None and t.requires_grad:
                t.grad = None
        outs = fn(*inputs)
        outs = outs if isinstance(outs, tuple | list) else (outs,)
        torch.autograd.backward([o for o in outs if o is not None][: len(grad_out)], grad_out)
        return [o.detach() for o in outs if o is not None] + [None if t is None else t.grad for t in inputs]

    return run


def leaf(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone().requires_grad_(t.is_floating_point())


# ---------------------------------------------------------------------------------------------------------------
# selective_scan: fwd + bwd at B = 8 clips x 201 tokens, T = 16, E = 2048, d_state 16, bf16


def scan_inputs(batch: int, dim: int, T: int, n: int):
    g = torch.Generator(device="cpu").manual_seed(0)

    def r(*s, scale=1.0, shift=0.0):
        return (torch.randn(*s, generator=g) * scale + shift).to(DEVICE)

    act = [
        r(batch, dim, T).to(DTYPE),
        r(batch, dim, T, scale=0.5, shift=-2.0).to(DTYPE),
        r(batch, n, T).to(DTYPE),
        r(batch, n, T).to(DTYPE),
        r(batch, dim, T).to(DTYPE),
    ]
    A = -torch.arange(1, n + 1, dtype=torch.float32, device=DEVICE).repeat(dim, 1)  # S4D-real init
    return dict(
        u=act[0],
        delta=act[1],
        A=A,
        B=act[2],
        C=act[3],
        D=torch.ones(dim, device=DEVICE),
        z=act[4],
        delta_bias=r(dim, scale=0.1),
    )


@pytest.mark.benchmark(group="selective_scan")
def test_selective_scan_fwd_bwd(benchmark):
    batch, dim, T, n = (8 * 201, 2048, 16, 16) if CUDA else (4, 32, 16, 16)
    x = scan_inputs(batch, dim, T, n)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    dout = torch.randn_like(x["u"])

    def fused(*t):
        return selective_scan(*t, delta_softplus=True)

    def reference(*t):
        return selective_scan_ref(*t, delta_softplus=True)[0]

    inputs = [leaf(x[k]) for k in names]
    run_fused = fwd_bwd(fused, inputs, [dout])
    run_ref = fwd_bwd(reference, inputs, [dout])
    check_close(run_fused(), run_ref(), "selective_scan fwd+bwd")
    if not CUDA:
        benchmark.pedantic(synced(run_fused), rounds=3, iterations=1)
        report(benchmark, "selective_scan fwd+bwd (cpu, reference)", cpu_median(benchmark), None)
        return
    t_fused = cuda_time(run_fused)
    t_ref = cuda_time(run_ref, iters=3, warmup=1)
    run_compiled = fwd_bwd(torch.compile(reference), inputs, [dout])
    check_close(run_compiled(), run_ref(), "compiled reference")
    t_compiled = cuda_time(run_compiled)
    numel = batch * dim * T
    bc = 2 * batch * n * T * 2
    # fwd: u, delta, z in, out; bwd: u, delta, z, dout in, du, ddelta, dz out (bf16); B, C in twice, dB, dC fp32 out
    bytes_moved = 2 * numel * (4 + 7) + 2 * bc + 2 * bc * 2
    # forward alone, to see where the time goes
    plain = [x[k] for k in names]
    compiled_ref = torch.compile(reference)
    with torch.no_grad():
        t_fwd = cuda_time(lambda: fused(*plain))
        t_fwd_ref = cuda_time(lambda: reference(*plain), iters=3, warmup=1)
        t_fwd_compiled = cuda_time(lambda: compiled_ref(*plain))
    benchmark.pedantic(synced(run_fused), rounds=10, iterations=1, warmup_rounds=2)
    report(
        benchmark,
        "selective_scan fwd+bwd B=1608 T=16 E=2048 N=16 bf16",
        t_fused,
        bytes_moved,
        t_ref,
        t_compiled,
        {"10x_vs_reference": ("speedup_vs_reference", 10, True), "2x_vs_compile": ("speedup_vs_compile", 2, True)},
        kernel=run_fused,
    )
    benchmark.extra_info.update(
        forward_ms=t_fwd * 1e3,
        forward_reference_ms=t_fwd_ref * 1e3,
        forward_compiled_ms=t_fwd_compiled * 1e3,
        forward_pct_of_hbm_limit=None if not hbm_limit() else 100 * 2 * numel * 4 / t_fwd / hbm_limit(),
    )


@pytest.mark.benchmark(group="selective_scan")
def test_selective_scan_forward_long_sequence(benchmark):
    """Correct and reasonably fast at long T (chunk checkpoints): B = 4, T = 4096."""
    batch, dim, T, n = (4, 2048, 4096, 16) if CUDA else (1, 16, 40, 16)
    x = scan_inputs(batch, dim, T, n)
    args = [x[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    out = selective_scan(*args, delta_softplus=True)
    if CUDA:
        ref = selective_scan_ref(
            *[a[:1] if a.dim() == 3 else a for a in args[:2]],
            args[2],
            *[a[:1] for a in args[3:5]],
            args[5],
            args[6][:1],
            args[7],
            True,
        )[0]
        check_close([out[:1]], [ref], "selective_scan T=4096")
        t = cuda_time(lambda: selective_scan(*args, delta_softplus=True))
        benchmark.pedantic(synced(lambda: selective_scan(*args, delta_softplus=True)), rounds=5, iterations=1)
        report(
            benchmark,
            "selective_scan fwd B=4 T=4096 E=2048 bf16",
            t,
            2 * batch * dim * T * 4,
            kernel=lambda: selective_scan(*args, delta_softplus=True),
        )
    else:
        benchmark.pedantic(synced(lambda: selective_scan(*args, delta_softplus=True)), rounds=3, iterations=1)
        report(benchmark, "selective_scan fwd long T (cpu, reference)", cpu_median(benchmark), None)


# ---------------------------------------------------------------------------------------------------------------
# gated_linear_scan: B*T*D >= 1e8 elements in bf16, forward and forward + backward


GLS_IMPLS = ("fused_recurrent", "chunk")  # both Triton implementations, timed side by side in one run


def gls_inputs():
    batch, T, dim = (8 * 201, 16, 4096) if CUDA else (4, 16, 64)  # 1.05e8 elements on GPU
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, T, dim, generator=g).to(DEVICE, DTYPE)
    a = (torch.rand(batch, T, dim, generator=g) * 0.5 + 0.5).to(DEVICE, DTYPE)
    return x, a


def other_impls(benchmark, impl: str, t_impl: float, make_run: Callable[[str], Callable[[], object]]) -> None:
    """Time the other implementations in the same test: ``<impl>_ms`` and ``speedup_vs_<impl>`` (> 1: ``impl`` is
    faster)."""
    for other in GLS_IMPLS:
        if other != impl:
            t_other = cuda_time(make_run(other))
            benchmark.extra_info[f"{other}_ms"] = t_other * 1e3
            benchmark.extra_info[f"speedup_vs_{other}"] = t_other / t_impl


# On CPU an explicit impl runs the Triton kernels through the interpreter (bench/conftest.py sets TRITON_INTERPRET=1):
# a plumbing check of each implementation at a tiny shape, not a timing.
@pytest.mark.benchmark(group="gated_linear_scan")
@pytest.mark.parametrize("impl", GLS_IMPLS)
def test_gated_linear_scan_forward(benchmark, impl):
    x, a = gls_inputs()

    def make_run(name):
        return torch.no_grad()(lambda: gated_linear_scan(x, a, impl=name).output)

    fused = make_run(impl)
    reference = torch.no_grad()(lambda: gated_linear_scan_ref(x, a)[0])
    check_close([fused()], [reference()], f"gated_linear_scan fwd impl={impl}")
    if not CUDA:
        benchmark.pedantic(synced(fused), rounds=3, iterations=1)
        report(benchmark, f"gated_linear_scan fwd impl={impl} (cpu, Triton interpreter)", cpu_median(benchmark), None)
        return
    t_fused = cuda_time(fused)
    t_ref = cuda_time(reference, iters=3)
    compiled_fn = torch.compile(gated_linear_scan_ref)
    compiled = torch.no_grad()(lambda: compiled_fn(x, a)[0])
    check_close([compiled()], [reference()], "compiled reference")
    t_compiled = cuda_time(compiled)
    benchmark.pedantic(synced(fused), rounds=20, iterations=1, warmup_rounds=2)
    report(
        benchmark,
        f"gated_linear_scan fwd {list(x.shape)} bf16 impl={impl}",
        t_fused,
        3 * x.numel() * 2,
        t_ref,
        t_compiled,
        {"70pct_hbm": ("pct_of_hbm_limit", 70, True)},
        kernel=fused,
    )
    other_impls(benchmark, impl, t_fused, make_run)


@pytest.mark.benchmark(group="gated_linear_scan")
@pytest.mark.parametrize("impl", GLS_IMPLS)
def test_gated_linear_scan_fwd_bwd(benchmark, impl):
    x, a = gls_inputs()
    dout = torch.randn_like(x)
    inputs = [leaf(x), leaf(a)]

    def make_run(name):
        return fwd_bwd(lambda x, a: gated_linear_scan(x, a, impl=name).output, inputs, [dout])

    run_fused = make_run(impl)
    run_ref = fwd_bwd(lambda x, a: gated_linear_scan_ref(x, a)[0], inputs, [dout])
    check_close(run_fused(), run_ref(), f"gated_linear_scan fwd+bwd impl={impl}")
    if not CUDA:
        benchmark.pedantic(synced(run_fused), rounds=3, iterations=1)
        report(
            benchmark, f"gated_linear_scan fwd+bwd impl={impl} (cpu, Triton interpreter)", cpu_median(benchmark), None
        )
        return
    t_fused = cuda_time(run_fused)
    t_ref = cuda_time(run_ref, iters=3)
    compiled_fn = torch.compile(gated_linear_scan_ref)
    run_compiled = fwd_bwd(lambda x, a: compiled_fn(x, a)[0], inputs, [dout])
    t_compiled = cuda_time(run_compiled)
    # fwd: x, a in, h out; bwd: dout, a, h in, dx, da out
    benchmark.pedantic(synced(run_fused), rounds=10, iterations=1, warmup_rounds=2)
    report(
        benchmark,
        f"gated_linear_scan fwd+bwd {list(x.shape)} bf16 impl={impl}",
        t_fused,
        8 * x.numel() * 2,
        t_ref,
        t_compiled,
        {"60pct_hbm": ("pct_of_hbm_limit", 60, True)},
        kernel=run_fused,
    )
    other_impls(benchmark, impl, t_fused, make_run)


# ---------------------------------------------------------------------------------------------------------------
# streaming steps: one layer's state for 201 tokens x 2048 channels x 16 states


# The state is fp32 by default; mamba-ssm also keeps it in bf16, which halves the bytes of the step. At 201 x 2048 x 16
# an fp32 state alone is 2 x 26 MB to read and write: 15.7 us at an H100's 3.35 TB/s, above the 10 us per-layer
# step target.
def state_update_case(tokens: int, dim: int, n: int, state_dtype: torch.dtype, backend: str, what: str):
    """One ``selective_state_update`` step on seeded inputs, its output and updated state checked against the
    reference first. Returns ``(step, bytes_moved)``: the state read and written, x, dt, z, B, C read, out written."""
    g = torch.Generator(device="cpu").manual_seed(0)
    state = torch.randn(tokens, dim, n, generator=g).to(DEVICE, state_dtype)
    x, dt, z = (torch.randn(tokens, dim, generator=g).to(DEVICE, DTYPE) for _ in range(3))
    Bv, Cv = (torch.randn(tokens, n, generator=g).to(DEVICE, DTYPE) for _ in range(2))
    A = -torch.arange(1, n + 1, dtype=torch.float32, device=DEVICE).repeat(dim, 1)
    D, bias = torch.ones(dim, device=DEVICE), torch.zeros(dim, device=DEVICE)

    def step(backend=backend):
        return selective_state_update(state, x, dt, A, Bv, Cv, D, z, bias, True, backend=backend)

    s0 = state.clone()
    out, s_out = step(), state.clone()
    state.copy_(s0)
    ref = step("reference")
    check_close([out, s_out], [ref, state], what)
    return step, 2 * state.numel() * state.element_size() + 5 * x.numel() * 2


@pytest.mark.benchmark(group="streaming_step")
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16], ids=["state_fp32", "state_bf16"])
def test_selective_state_update_step(benchmark, state_dtype):
    tokens, dim, n = (201, 2048, 16) if CUDA else (8, 32, 16)
    short = str(state_dtype).removeprefix("torch.")
    step, bytes_moved = state_update_case(tokens, dim, n, state_dtype, "auto", "selective_state_update")
    if not CUDA:
        benchmark.pedantic(synced(step), rounds=5, iterations=1)
        report(benchmark, f"selective_state_update {short} state (cpu, reference)", cpu_median(benchmark), None)
        return
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    t_graph = cuda_time(graph.replay, iters=50)
    t_eager = cuda_time(step, iters=50)
    t_ref = cuda_time(lambda: step("reference"), iters=20)
    benchmark.pedantic(synced(graph.replay), rounds=50, iterations=1, warmup_rounds=5)
    report(
        benchmark,
        f"selective_state_update 201x2048x16 {short} state (CUDA graph)",
        t_graph,
        bytes_moved,
        t_ref,
        targets={"10us_per_layer": ("fused_ms", 0.010, False)},
        kernel=graph.replay,
    )
    benchmark.extra_info["eager_launch_ms"] = t_eager * 1e3
    limit = hbm_limit()
    if limit:  # reading and writing the state is a floor no kernel beats unless the state sits in L2
        benchmark.extra_info["hbm_floor_ms"] = bytes_moved / limit * 1e3


@pytest.mark.benchmark(group="streaming_step")
def test_causal_conv1d_update_step(benchmark):
    tokens, dim = (201, 2048) if CUDA else (8, 32)
    g = torch.Generator(device="cpu").manual_seed(0)
    state = torch.randn(tokens, dim, 4, generator=g).to(DEVICE, DTYPE)
    x = torch.randn(tokens, dim, generator=g).to(DEVICE, DTYPE)
    w, b = torch.randn(dim, 4, generator=g).to(DEVICE), torch.randn(dim, generator=g).to(DEVICE)
    s0 = state.clone()
    out = causal_conv1d_update(x, state, w, b, "silu")
    state.copy_(s0)
    check_close([out], [causal_conv1d_update(x, state, w, b, "silu", backend="reference")], "causal_conv1d_update")
    if not CUDA:
        benchmark.pedantic(synced(lambda: causal_conv1d_update(x, state, w, b, "silu")), rounds=5, iterations=1)
        report(benchmark, "causal_conv1d_update (cpu, reference)", cpu_median(benchmark), None)
        return
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        causal_conv1d_update(x, state, w, b, "silu")
    t_graph = cuda_time(graph.replay, iters=50)
    t_ref = cuda_time(lambda: causal_conv1d_update(x, state, w, b, "silu", backend="reference"), iters=20)
    benchmark.pedantic(synced(graph.replay), rounds=50, iterations=1, warmup_rounds=5)
    report(
        benchmark,
        "causal_conv1d_update 201x2048 W=4 (CUDA graph)",
        t_graph,
        2 * state.numel() * 2 + 2 * x.numel() * 2,
        t_ref,
        kernel=graph.replay,
    )


LAYERS_FLUSHED = 4  # layer states stepped in turn: 4 x 26 MB of fp32 SSM state does not fit the H200's 50 MB of L2


@pytest.mark.benchmark(group="streaming_step_flushed")
@pytest.mark.parametrize("steps", [1, 4], ids=["L1", "L4"])
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_layer_step_l2_flushed(benchmark, state_dtype, steps):
    """One Mamba layer's streaming step as a server runs it: ``causal_conv1d_update`` then ``selective_state_update``
    for 201 tokens x 2048 channels x 16 states, stepping ``LAYERS_FLUSHED`` layers' states in turn inside one CUDA
    graph, so no layer finds its state in L2 (a replay of one layer alone would read it from L2 and beat HBM).
    ``kernel_us`` is per layer and per frame; L4 runs 4 frames per pass over the state (x ``[B, D, 4]``)."""
    tokens, dim, n, width = (201, 2048, 16, 4) if CUDA else (4, 32, 16, 4)
    g = torch.Generator(device="cpu").manual_seed(0)
    layers = []
    for _ in range(LAYERS_FLUSHED):
        layers.append(
            dict(
                conv=torch.randn(tokens, dim, width - 1, generator=g).to(DEVICE, DTYPE),
                ssm=torch.randn(tokens, dim, n, generator=g).to(DEVICE, state_dtype),
                w=torch.randn(dim, width, generator=g).to(DEVICE),
                A=-torch.rand(dim, n, generator=g).add(0.5).to(DEVICE),
            )
        )
    x, dt, z = (torch.randn(tokens, dim, steps, generator=g).to(DEVICE, DTYPE) for _ in range(3))
    Bv, Cv = (torch.randn(tokens, n, steps, generator=g).to(DEVICE, DTYPE) for _ in range(2))
    D, bias = torch.ones(dim, device=DEVICE), torch.zeros(dim, device=DEVICE)

    def step(layer, backend="auto"):
        u = causal_conv1d_update(x, layer["conv"], layer["w"], None, "silu", backend=backend)
        return selective_state_update(layer["ssm"], u, dt, layer["A"], Bv, Cv, D, z, bias, True, backend=backend)

    first = {k: v.clone() for k, v in layers[0].items()}
    out = step(layers[0])
    check_close([out], [step(first, "reference")], f"layer step {state_dtype}")
    if not CUDA:
        benchmark.pedantic(synced(lambda: step(layers[1])), rounds=3, iterations=1)
        report(
            benchmark,
            f"streaming step conv+ssm {state_dtype} state L{steps} (cpu, reference)",
            cpu_median(benchmark),
            None,
        )
        return
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for layer in layers:
            step(layer)
    t = cuda_time(graph.replay, iters=30) / (LAYERS_FLUSHED * steps)
    state_bytes = 2 * tokens * dim * (n * layers[0]["ssm"].element_size() + (width - 1) * 2)
    bytes_moved = state_bytes / steps + 2 * 5 * tokens * dim + 2 * 2 * tokens * n  # per frame
    benchmark.pedantic(synced(graph.replay), rounds=20, iterations=1, warmup_rounds=3)
    short = str(state_dtype).removeprefix("torch.")
    report(
        benchmark,
        f"streaming step conv+ssm 201x2048x16 {short} state L{steps} flush (CUDA graph)",
        t,
        bytes_moved,
    )
    kernel_s = kernel_time(graph.replay) / (LAYERS_FLUSHED * steps)
    benchmark.extra_info.update(kernel_us=kernel_s * 1e6, kernel_ms=kernel_s * 1e3)
    limit = hbm_limit()
    if limit:
        floor = bytes_moved / limit
        benchmark.extra_info.update(hbm_floor_us=floor * 1e6, floor_ms=floor * 1e3, x_floor=kernel_s / floor)


# ---------------------------------------------------------------------------------------------------------------
# causal_conv1d and gated_blend at the Mamba / GMMix shapes


@pytest.mark.benchmark(group="causal_conv1d")
def test_causal_conv1d_fwd_bwd(benchmark):
    batch, dim, T = (8 * 201, 2048, 16) if CUDA else (4, 32, 16)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, dim, T, generator=g).to(DEVICE, DTYPE)
    w, b = torch.randn(dim, 4, generator=g).to(DEVICE), torch.randn(dim, generator=g).to(DEVICE)
    dout = torch.randn_like(x)
    inputs = [leaf(x), leaf(w), leaf(b)]
    run_fused = fwd_bwd(lambda x, w, b: causal_conv1d(x, w, b), inputs, [dout])
    run_ref = fwd_bwd(lambda x, w, b: causal_conv1d_ref(x, w, b)[0], inputs, [dout])
    check_close(run_fused(), run_ref(), "causal_conv1d fwd+bwd")
    if not CUDA:
        benchmark.pedantic(synced(run_fused), rounds=3, iterations=1)
        report(benchmark, "causal_conv1d fwd+bwd (cpu, reference)", cpu_median(benchmark), None)
        return
    t_fused = cuda_time(run_fused)
    t_ref = cuda_time(run_ref, iters=5)
    compiled_fn = torch.compile(causal_conv1d_ref)
    run_compiled = fwd_bwd(lambda x, w, b: compiled_fn(x, w, b)[0], inputs, [dout])
    t_compiled = cuda_time(run_compiled)
    benchmark.pedantic(synced(run_fused), rounds=10, iterations=1, warmup_rounds=2)
    report(
        benchmark,
        "causal_conv1d fwd+bwd B=1608 E=2048 T=16 bf16",
        t_fused,
        5 * x.numel() * 2,
        t_ref,
        t_compiled,
        kernel=run_fused,
    )


@pytest.mark.benchmark(group="gated_blend")
def test_gated_blend_fwd_bwd(benchmark):
    shape = (8 * 16 * 201, 1024) if CUDA else (64, 64)
    g = torch.Generator(device="cpu").manual_seed(0)
    xs = [torch.randn(*shape, generator=g).to(DEVICE, DTYPE) for _ in range(3)]
    dout = torch.randn_like(xs[0])
    inputs = [leaf(t) for t in xs]
    run_fused = fwd_bwd(gated_blend, inputs, [dout])
    run_ref = fwd_bwd(gated_blend_ref, inputs, [dout])
    check_close(run_fused(), run_ref(), "gated_blend fwd+bwd")
    if not CUDA:
        benchmark.pedantic(synced(run_fused), rounds=3, iterations=1)
        report(benchmark, "gated_blend fwd+bwd (cpu, reference)", cpu_median(benchmark), None)
        return
    t_fused = cuda_time(run_fused)
    t_ref = cuda_time(run_ref)
    compiled_fn = torch.compile(gated_blend_ref)
    run_compiled = fwd_bwd(compiled_fn, inputs, [dout])
    t_compiled = cuda_time(run_compiled)
    benchmark.pedantic(synced(run_fused), rounds=20, iterations=1, warmup_rounds=2)
    # fwd: a, b, l in, out; bwd: a, b, l, dout in, da, db, dl out
    report(
        benchmark,
        f"gated_blend fwd+bwd {list(shape)} bf16",
        t_fused,
        11 * math.prod(shape) * 2,
        t_ref,
        t_compiled,
        kernel=run_fused,  # kernel_ms vs fused_ms: whether the host or the kernel is the gap
    )
