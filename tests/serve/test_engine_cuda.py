"""StreamEngine on CUDA: one captured graph per bucket gives what the eager engine gives (GPU only)."""

from __future__ import annotations

import pytest
import torch

from coldstream.serve import StreamEngine
from tests.serve.conftest import alone, clip, make_model
from tests.serve.test_engine import run_schedule

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("core,slot_kernels", [("gmmix", True), ("gmmix", False), ("mamba", True), ("rvmrnn", False)])
def test_graphed_buckets_equal_the_eager_engine_and_each_stream_alone(core, slot_kernels):
    model = make_model(core).cuda()
    schedule = {"a": (0, clip(1, 5)), "b": (2, clip(2, 9)), "c": (3, clip(3, 4)), "d": (6, clip(4, 7))}
    schedule = {k: (t, f.cuda()) for k, (t, f) in schedule.items()}
    graphed = StreamEngine(model, 3, autocast=False, slot_kernels=slot_kernels)
    assert graphed.cuda_graph and graphed.buckets == (1, 2, 3)
    assert StreamEngine(model, 1).slot_kernels == (core != "rvmrnn")  # the default on CUDA
    graphed.warmup()
    assert sorted(graphed._graphs) == [1, 2, 3]
    eager = StreamEngine(model, 3, autocast=False, cuda_graph=False, slot_kernels=False)  # gather/scatter, eagerly
    got = run_schedule(graphed, schedule, skip={("b", 4), ("b", 7)})
    want = run_schedule(eager, schedule, skip={("b", 4), ("b", 7)})
    for name, (_, frames) in schedule.items():
        torch.testing.assert_close(torch.stack(got[name]), torch.stack(want[name]), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(torch.stack(got[name]), alone(model, frames).cpu(), atol=1e-4, rtol=1e-4)
    assert graphed.bucket_counts == eager.bucket_counts


def test_graphed_engine_drops_a_nonfinite_frame_without_touching_the_others():
    model = make_model().cuda()
    engine = StreamEngine(model, 4, autocast=False)
    a, b = clip(1, 4).cuda(), clip(2, 4).cuda()
    b[1] = float("nan")
    engine.join("a")
    engine.join("b")
    outs = [engine.step({"a": a[t], **({"b": b[t]} if "b" in engine.active else {})}) for t in range(4)]
    assert engine.stats["b"].status == "dropped"
    torch.testing.assert_close(torch.stack([o["a"] for o in outs]), alone(model, a).cpu(), atol=1e-4, rtol=1e-4)


def test_bf16_autocast_engine_is_close_to_fp32():
    model = make_model().cuda()
    engine = StreamEngine(model, 2)
    assert engine.autocast
    engine.join("a")
    frames = clip(1, 4).cuda()
    got = torch.stack([engine.step({"a": f})["a"] for f in frames])
    torch.testing.assert_close(got, alone(model, frames).cpu(), atol=1e-1, rtol=1e-1)
