"""StreamServer: sources (iterables, files) feed the engine from threads; a failing source drops its stream only."""

from __future__ import annotations

import pytest
import torch

from coldstream import optional
from coldstream.io.errors import CorruptVideoError
from coldstream.serve import StreamEngine, StreamServer
from tests.serve.conftest import alone, clip
from tests.tolerances import tol

needs_pyav = pytest.mark.skipif(optional.unavailable("pyav") is not None, reason="PyAV writes the test videos")


def failing(frames: torch.Tensor, after: int):
    """A source that decodes ``after`` frames, then fails as a corrupt file does."""
    yield from frames[:after]
    raise CorruptVideoError("cam-b.mp4", f"decoding failed after frame {after - 1}")


def serve(model, sources: dict, slots: int = 4, late: dict | None = None) -> tuple[dict, StreamEngine]:
    """Run a server over ``sources`` (name -> source); ``late``: name -> (tick, source) added while it runs."""
    engine = StreamEngine(model, slots)
    server = StreamServer(engine)
    outs: dict[str, list] = {}
    for name, src in sources.items():
        server.add(src, stream_id=name)
    ticks = 0

    def on_tick(srv):
        nonlocal ticks
        ticks += 1
        for name, (at, src) in (late or {}).items():
            if at == ticks:
                srv.add(src, stream_id=name)

    stats = server.run(on_output=lambda sid, out: outs.setdefault(sid, []).append(out), on_tick=on_tick)
    assert set(stats) == set(sources) | set(late or {})
    return outs, engine


def test_a_failing_source_is_dropped_without_touching_the_others(model):
    good = {"a": clip(20, 9), "c": clip(22, 6)}
    bad = clip(21, 9)
    outs, engine = serve(model, {"a": iter(good["a"]), "b": failing(bad, 4), "c": iter(good["c"])})
    clean, _ = serve(model, {"a": iter(good["a"]), "c": iter(good["c"])})
    st = engine.stats["b"]
    assert st.status == "dropped" and "CorruptVideoError" in st.reason and "after frame 3" in st.reason
    assert st.frames == 4
    torch.testing.assert_close(torch.stack(outs["b"]), alone(model, bad[:4]), **tol(torch.float32))
    for name, frames in good.items():
        assert engine.stats[name].status == "left" and engine.stats[name].reason == "end of stream"
        torch.testing.assert_close(torch.stack(outs[name]), torch.stack(clean[name]), **tol(torch.float32))
        torch.testing.assert_close(torch.stack(outs[name]), alone(model, frames), **tol(torch.float32))


def test_a_nonfinite_frame_from_a_source_drops_its_stream(model):
    bad = clip(31, 6)
    bad[2] = float("inf")
    outs, engine = serve(model, {"a": iter(clip(30, 6)), "b": iter(bad)})
    assert engine.stats["b"].status == "dropped" and "NaN or Inf" in engine.stats["b"].reason
    assert len(outs["b"]) == 2 and engine.stats["a"].frames == 6
    torch.testing.assert_close(torch.stack(outs["a"]), alone(model, clip(30, 6)), **tol(torch.float32))


def test_streams_join_while_the_server_runs_and_wait_for_a_free_slot(model):
    frames = {name: clip(40 + i, 5) for i, name in enumerate("abc")}
    # two slots: c is added at tick 2 and waits until a or b has left
    outs, engine = serve(model, {"a": iter(frames["a"]), "b": iter(frames["b"])}, slots=2,
                         late={"c": (2, iter(frames["c"]))})  # fmt: skip
    assert engine.stats["c"].slot in (engine.stats["a"].slot, engine.stats["b"].slot)
    for name, f in frames.items():
        torch.testing.assert_close(torch.stack(outs[name]), alone(model, f), **tol(torch.float32))


@needs_pyav
def test_files_are_decoded_and_preprocessed_as_the_model_expects(model, tmp_path):
    from coldstream.io import open_video
    from coldstream.testing import write_index_video

    paths = [write_index_video(tmp_path / f"v{i}.mp4", n, height=48, width=64) for i, n in ((0, 7), (1, 4))]
    outs, engine = serve(model, {"v0": paths[0], "v1": paths[1], "missing": tmp_path / "nope.mp4"})
    assert engine.stats["missing"].status == "dropped" and "VideoNotFoundError" in engine.stats["missing"].reason
    enc = model.encoder
    for i, path in enumerate(paths):
        with open_video(path, output="float", size=model.frame_size, mean=enc.mean, std=enc.std) as src:
            frames = torch.cat([c.data for c in src.stream(chunk_size=4)])
        assert engine.stats[f"v{i}"].frames == len(frames)
        torch.testing.assert_close(torch.stack(outs[f"v{i}"]), alone(model, frames), **tol(torch.float32))


def test_fps_paces_a_source_like_a_camera(model):
    import time

    engine = StreamEngine(model, 1)
    t0 = time.perf_counter()
    server = StreamServer(engine, fps=20)
    server.add(iter(clip(50, 5)), stream_id="cam")
    server.run()
    took = time.perf_counter() - t0
    assert engine.stats["cam"].frames == 5 and took >= 4 / 20  # frame i is not there before i / fps s


def test_uint8_frames_are_preprocessed_for_the_model_and_a_bad_layout_drops_its_stream(model):
    from coldstream.io.preprocess import preprocess_frames

    raw = torch.randint(0, 256, (4, 40, 48, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    bad = [raw[0], torch.zeros(40, 48, 4, dtype=torch.uint8)]  # the second frame has 4 channels
    outs, engine = serve(model, {"raw": iter(raw), "bad": iter(bad)})
    enc = model.encoder
    frames = preprocess_frames(raw, model.frame_size, enc.mean, enc.std)
    torch.testing.assert_close(torch.stack(outs["raw"]), alone(model, frames), **tol(torch.float32))
    assert engine.stats["bad"].status == "dropped" and "bad frame 1" in engine.stats["bad"].reason
    assert engine.stats["bad"].frames == 1
