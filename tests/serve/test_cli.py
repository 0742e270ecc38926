"""``coldstream serve VIDEO... --streams N`` on tiny synthetic videos (written with PyAV)."""

from __future__ import annotations

import json

import pytest
import torch

from coldstream import optional
from coldstream.cli import COMMANDS, main

pytestmark = pytest.mark.skipif(optional.unavailable("pyav") is not None, reason="PyAV writes the test videos")


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()  # the CLI sets torch's CPU threads; give the other tests theirs back
    yield
    torch.set_num_threads(n)


def test_serve_prints_live_per_stream_stats(tmp_path, capsys):
    from coldstream.testing import write_index_video

    a = write_index_video(tmp_path / "a.mp4", 12, height=48, width=64)
    b = write_index_video(tmp_path / "b.webm", 6, codec="vp9", height=48, width=64)
    out_json = tmp_path / "stats.json"
    assert "serve" in COMMANDS
    rc = main(["serve", str(a), str(b), str(tmp_path / "missing.mp4"), "--streams", "4", "--interval", "0",
               "--frame-size", "32", "--json", str(out_json)])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "serving 4 streams from 3 source(s) on cpu: 4 slots" in text
    assert "stream    frames      fps   p50 ms   p99 ms  status" in text
    assert "final:" in text and "t=" in text  # live tables, then the final one
    stats = json.loads(out_json.read_text())["streams"]
    assert {k: v["frames"] for k, v in stats.items()} == {"s0": 12, "s1": 6, "s2": 0, "s3": 12}
    assert stats["s2"]["status"] == "dropped" and "VideoNotFoundError" in stats["s2"]["reason"]
    for k in ("s0", "s1", "s3"):
        assert stats[k]["status"] == "left" and stats[k]["fps"] > 0 and stats[k]["p99_ms"] >= stats[k]["p50_ms"] > 0


def test_serve_refuses_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_text("not a checkpoint")
    assert main(["serve", "v.mp4", "--checkpoint", str(bad)]) == 2
    assert "coldstream serve:" in capsys.readouterr().err
