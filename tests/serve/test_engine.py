"""StreamEngine: join/leave at any frame equals each stream alone, reset on join, bad frames drop one stream only,
bucket selection, stats."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from coldstream.errors import InputError
from coldstream.serve import EngineFullError, StreamEngine, default_buckets, percentile
from tests.serve.conftest import SIZE, alone, clip, make_model
from tests.tolerances import tol


def run_schedule(engine: StreamEngine, schedule: dict, skip: set = frozenset(), ticks: int = 40) -> dict:
    """``schedule``: name -> (tick it joins at, frames ``[T, 3, S, S]``); ``skip``: (name, tick) pairs where the
    stream sends no frame. A stream leaves after its last frame. Returns name -> list of outputs."""
    outs: dict[str, list] = {name: [] for name in schedule}
    pos = dict.fromkeys(schedule, 0)
    for t in range(ticks):
        for name, (start, _) in schedule.items():
            if start == t:
                engine.join(name)
        frames = {}
        for name in engine.active:
            data = schedule[name][1]
            if pos[name] < len(data) and (name, t) not in skip:
                frames[name] = data[pos[name]]
                pos[name] += 1
        for name, out in engine.step(frames).items():
            outs[name].append(out)
        for name in engine.active:
            if pos[name] == len(schedule[name][1]):
                engine.leave(name, "end of stream")
    return outs


@pytest.mark.parametrize("core", ["gmmix", "mamba", "rvmrnn"])
def test_join_and_leave_at_any_frame_equal_each_stream_alone(core):
    model = make_model(core)
    engine = StreamEngine(model, 3)
    # a joins first; b and c join later; a leaves at tick 5 and d takes its slot; b misses two ticks
    schedule = {"a": (0, clip(1, 5)), "b": (2, clip(2, 9)), "c": (3, clip(3, 4)), "d": (6, clip(4, 7))}
    outs = run_schedule(engine, schedule, skip={("b", 4), ("b", 7)})
    assert engine.stats["d"].slot == engine.stats["a"].slot or engine.stats["d"].slot == engine.stats["c"].slot
    for name, (_, frames) in schedule.items():
        assert len(outs[name]) == len(frames), name
        torch.testing.assert_close(torch.stack(outs[name]), alone(model, frames), **tol(torch.float32), msg=name)
        assert engine.stats[name].status == "left" and engine.stats[name].frames == len(frames)
    assert engine.active == [] and engine.free_slots == 3
    assert sum(engine.bucket_counts.values()) == engine.steps


def test_a_stream_joining_a_used_slot_starts_from_a_zero_state(model):
    engine = StreamEngine(model, 1)
    first, second = clip(5, 4), clip(6, 3)
    engine.join("first")
    for f in first:
        engine.step({"first": f})
    engine.leave("first")
    sid = engine.join("second")
    assert engine.stats[sid].slot == engine.stats["first"].slot == 0
    got = torch.stack([engine.step({sid: f})[sid] for f in second])
    torch.testing.assert_close(got, alone(model, second), **tol(torch.float32))
    # the state left by `first` would have given other outputs
    carried = alone(model, torch.cat([first, second]))[len(first) :]
    assert not torch.allclose(got, carried, atol=1e-4)


def test_a_nonfinite_frame_drops_its_stream_only(model, caplog):
    good = {"a": clip(10, 8), "c": clip(12, 8)}
    bad = clip(11, 8)
    bad[3, 1, 5, 5] = float("nan")

    def run(with_bad: bool):
        engine = StreamEngine(model, 4)
        for name in ("a", "b", "c") if with_bad else ("a", "c"):
            engine.join(name)
        outs = {"a": [], "b": [], "c": []}
        for t in range(8):
            frames = {name: good[name][t] for name in ("a", "c")}
            if with_bad and "b" in engine.active:
                frames["b"] = bad[t]
            for name, out in engine.step(frames).items():
                outs[name].append(out)
        return engine, outs

    with caplog.at_level("WARNING", logger="coldstream.serve"):
        engine, outs = run(True)
    _, clean = run(False)
    assert engine.stats["b"].status == "dropped" and "NaN" in engine.stats["b"].reason
    assert engine.stats["b"].frames == 3 and len(outs["b"]) == 3  # its frames before the bad one were served
    assert "stream b dropped after 3 frames" in caplog.text
    for name in ("a", "c"):
        torch.testing.assert_close(torch.stack(outs[name]), torch.stack(clean[name]), **tol(torch.float32))
        torch.testing.assert_close(torch.stack(outs[name]), alone(model, good[name]), **tol(torch.float32))
    # the freed slot serves a new stream from a clean state
    sid = engine.join("e")
    fresh = clip(13, 2)
    got = torch.stack([engine.step({sid: f})[sid] for f in fresh])
    torch.testing.assert_close(got, alone(model, fresh), **tol(torch.float32))


def test_a_nonfinite_state_drops_its_stream_and_the_slot_is_cleaned(model):
    engine = StreamEngine(model, 2)
    engine.join("a")
    engine.join("b")
    engine.step({"a": clip(1, 1)[0], "b": clip(2, 1)[0]})
    slot = engine.stats["b"].slot
    for t in engine.pool.core.tensors.values():
        t[slot].fill_(float("nan"))  # a diverged recurrent state
    out = engine.step({"a": clip(1, 2)[1], "b": clip(2, 2)[1]})
    assert "b" not in out and engine.stats["b"].status == "dropped" and "not finite" in engine.stats["b"].reason
    torch.testing.assert_close(out["a"], alone(model, clip(1, 2))[1], **tol(torch.float32))
    sid = engine.join("c")
    assert engine.stats[sid].slot == slot
    torch.testing.assert_close(engine.step({sid: clip(3, 1)[0]})[sid], alone(model, clip(3, 1))[0])


def test_a_misshapen_frame_drops_its_stream(model):
    engine = StreamEngine(model, 2)
    engine.join("a")
    engine.join("b")
    out = engine.step({"a": clip(1, 1)[0], "b": torch.zeros(3, SIZE * 2, SIZE)})
    assert (
        set(out) == {"a"}
        and engine.stats["b"].status == "dropped"
        and "expected a float frame" in (engine.stats["b"].reason)
    )
    assert engine.step({"a": clip(1, 1)[0][None]})["a"].shape == (3,)  # [1, 3, S, S] is accepted too


def test_buckets():
    assert default_buckets(1) == (1,)
    assert default_buckets(8) == (1, 2, 4, 8)
    assert default_buckets(6) == (1, 2, 4, 6)
    with pytest.raises(InputError):
        default_buckets(0)


def test_a_step_runs_at_the_smallest_bucket_that_holds_its_frames(model):
    engine = StreamEngine(model, 6)
    assert [engine.bucket(n) for n in range(1, 7)] == [1, 2, 4, 4, 6, 6]
    ids = [engine.join() for _ in range(5)]
    frames = clip(0, 5)
    engine.step({ids[0]: frames[0]})
    engine.step({sid: f for sid, f in zip(ids[:3], frames, strict=False)})
    engine.step({sid: f for sid, f in zip(ids, frames, strict=True)})
    assert engine.bucket_counts == {1: 1, 2: 0, 4: 1, 6: 1}
    custom = StreamEngine(model, 6, buckets=(3, 6))
    assert [custom.bucket(n) for n in range(1, 7)] == [3, 3, 3, 6, 6, 6]
    with pytest.raises(InputError, match="end at slots"):
        StreamEngine(model, 6, buckets=(1, 2, 4))
    with pytest.raises(InputError):
        engine.bucket(7)


def test_engine_refuses_what_it_cannot_serve(model):
    engine = StreamEngine(model, 2)
    engine.join("a")
    with pytest.raises(InputError, match="already"):
        engine.join("a")
    engine.join()
    with pytest.raises(EngineFullError):
        engine.join()
    with pytest.raises(InputError, match="not being served"):
        engine.step({"zzz": clip(0, 1)[0]})
    with pytest.raises(InputError, match="not being served"):
        engine.leave("zzz")
    with pytest.raises(InputError, match="cuda_graph=True"):
        StreamEngine(model, 2, cuda_graph=True)
    assert engine.step({}) == {}


def test_stats_count_frames_and_latency(model):
    engine = StreamEngine(model, 2)
    sid = engine.join(name="cam")
    for i, f in enumerate(clip(0, 5)):
        engine.step({sid: f}, arrivals={sid: time.perf_counter() - (0.5 if i == 4 else 0.0)})
    st = engine.stats[sid]
    assert st.frames == 5 and len(st.latencies) == 5 and st.fps > 0
    assert max(st.latencies) >= 0.5 and st.p99_ms > 400 > st.p50_ms > 0  # the frame that waited 0.5 s: the tail
    row = st.as_dict()
    assert row["name"] == "cam" and row["status"] == "active" and row["frames"] == 5
    assert sid in st.line() and "p99" in st.header()


def test_percentile_matches_numpy():
    xs = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0, 50, 90, 99, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert math.isnan(percentile([], 50))


@pytest.mark.parametrize("slot_kernels", [False, True])
def test_task_inputs_are_per_stream(slot_kernels):
    torch.manual_seed(0)
    from coldstream.model import ModelConfig, VideoModel

    config = ModelConfig(encoder="efficientnet_lite0_s16", frame_size=SIZE, core="gmmix", core_dim=32, core_layers=1,
                         readout="waymo", readout_options={"width": 32, "num_heads": 4, "hidden": 16})  # fmt: skip
    model = VideoModel.from_config(config).eval()
    box_a, box_b = torch.tensor([[0.5, 0.5, 0.3, 0.2]]), torch.tensor([[0.2, 0.3, 0.1, 0.1]])
    engine = StreamEngine(model, 3, buckets=(3,), init_box=box_a, slot_kernels=slot_kernels)  # a padding row a tick
    engine.join("a")  # the default task inputs
    engine.join("b", init_box=box_b)
    frames = {"a": clip(1, 3), "b": clip(2, 3)}
    outs = {"a": [], "b": []}
    for t in range(3):
        for k, v in engine.step({k: f[t] for k, f in frames.items()}).items():
            outs[k].append(v)
    # the predicted box is fed back through Fourier features up to π·2^15, which amplify float rounding frame after
    # frame (tests/model/test_video_model.py): only frame 0 compares with each stream alone; the whole run compares
    # with the two streams batched through VideoModel.step, as the engine batches them
    for name, box in (("a", box_a), ("b", box_b)):
        state = model.init_state(1, init_box=box)
        with torch.no_grad():
            first = model.step(frames[name][:1], state)[0][0]
        torch.testing.assert_close(outs[name][0], first, **tol(torch.float32))
    # (with the padding row the engine runs: batch size changes float rounding too)
    state = model.init_state(3, init_box=torch.cat([box_a, box_b, torch.zeros(1, 4)]))
    pad = torch.zeros(3, SIZE, SIZE)
    with torch.no_grad():
        want = torch.stack(
            [model.step(torch.stack([frames["a"][t], frames["b"][t], pad]), state)[0] for t in range(3)], 1
        )
    for i, name in enumerate(("a", "b")):
        torch.testing.assert_close(torch.stack(outs[name]), want[i], **tol(torch.float32))
