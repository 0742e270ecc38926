"""The kernels' slot indices behind the engine: ``core.step_slots`` steps a pool of states in place by slot, and the
engine with ``slot_kernels=True`` gives what it gives with gather/scatter (on the CPU through the kernels'
reference path)."""

from __future__ import annotations

import pytest
import torch

from coldstream.errors import InputError
from coldstream.model.cores import build_core
from coldstream.serve import StreamEngine
from tests.serve.conftest import alone, clip, make_model
from tests.serve.test_engine import run_schedule
from tests.tolerances import tol


@pytest.mark.parametrize("kind", ["mamba", "mambamix", "gmmix"])
def test_step_slots_equals_stepping_the_gathered_rows(kind):
    torch.manual_seed(0)
    core = build_core(kind, 16, num_layers=2, **({"spatial_heads": 4} if kind != "mamba" else {})).eval()
    pool = core.init_state(5, 3)
    for t in pool.tensors.values():
        t.normal_()
    before = pool.clone()
    slots = torch.tensor([3, 0, -1])  # two streams and a padding row
    x = torch.randn(3, 3, 16)
    with torch.no_grad():
        got = core.step_slots(x, pool, slots)
        rows = core.init_state(2, 3)
        for k, t in rows.tensors.items():
            t.copy_(before.tensors[k][[3, 0]])
        want, _ = core.step(x[:2], rows)
    torch.testing.assert_close(got[:2], want, **tol(torch.float32))
    for k, t in pool.tensors.items():
        torch.testing.assert_close(t[[3, 0]], rows.tensors[k], **tol(torch.float32))
        torch.testing.assert_close(t[[1, 2, 4]], before.tensors[k][[1, 2, 4]], atol=0, rtol=0)  # untouched


def test_step_slots_is_refused_where_the_core_has_none():
    core = build_core("rvmrnn", 16, num_layers=1, num_heads=4)
    with pytest.raises(InputError, match="cannot step a pool"):
        core.step_slots(torch.randn(1, 3, 16), core.init_state(2, 3), torch.tensor([0]))
    mamba = build_core("mamba", 16, num_layers=1)
    with pytest.raises(InputError, match="slots must be"):
        mamba.step_slots(torch.randn(2, 3, 16), mamba.init_state(2, 3), torch.tensor([0]))
    with pytest.raises(InputError, match="slot_kernels=True"):
        StreamEngine(make_model("rvmrnn"), 2, slot_kernels=True)


@pytest.mark.parametrize("core", ["mamba", "gmmix"])
def test_engine_with_slot_kernels_equals_each_stream_alone(core):
    model = make_model(core)
    engine = StreamEngine(model, 3, slot_kernels=True)
    assert engine.slot_kernels and engine.padding == -1
    assert all(not v for v in engine._pairs.values())  # nothing is gathered: a linear readout has no state
    schedule = {"a": (0, clip(1, 5)), "b": (2, clip(2, 7)), "c": (3, clip(3, 4)), "d": (6, clip(4, 5))}
    outs = run_schedule(engine, schedule, skip={("b", 4)})
    for name, (_, frames) in schedule.items():
        torch.testing.assert_close(torch.stack(outs[name]), alone(model, frames), **tol(torch.float32), msg=name)


def test_slot_kernels_default_to_the_cuda_engines_only(model):
    assert not StreamEngine(model, 2).slot_kernels  # CPU: gather/scatter
