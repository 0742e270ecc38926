"""`coldstream train | eval | stream` end to end on a tiny CSV dataset (real EfficientNet-Lite0 at 32², 4 frames),
with bad inputs: an unreadable video, a label file that matches no video, a checkpoint from another model, a cache
from another encoder/preprocessing."""

import json

import pytest

from coldstream.testing import write_index_video
from coldstream.train.cli import eval_main, stream_main, train_main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("csv")
    rows = ["video,label,split"]
    for i in range(6):
        write_index_video(root / f"v{i}.mp4", 12 + i, height=32, width=32, fps=10)
        rows.append(f"v{i}.mp4,{'up' if i % 2 else 'down'},{'val' if i >= 4 else 'train'}")
    (root / "broken.mp4").write_bytes(b"\x00" * 100)
    rows.append("broken.mp4,up,train")
    rows.append("gone.mp4,down,train")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _args(ds, run, *extra):
    return ["data.task=csv", f"data.labels={ds / 'labels.csv'}", "model.frame_size=32", "data.frames=4",
            f"train.out_dir={run}", f"cache.dir={run.parent / 'cache'}", "train.epochs=2", "train.batch_size=2",
            "model.core=identity", "model.core_dim=16", "train.progress=false", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "a"
    assert train_main(_args(dataset, run)) == 0
    return run


def test_train_writes_checkpoint_metrics_config(trained, capsys):
    assert (trained / "last.pt").exists() and (trained / "config.yaml").exists()
    recs = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs if r["kind"] == "eval"] == [1, 2]


def test_unreadable_and_missing_videos_are_skipped_and_counted(dataset, tmp_path, capsys):
    assert train_main(_args(dataset, tmp_path / "b", "train.epochs=1")) == 0
    out = capsys.readouterr().out
    assert "1 label entries without a video skipped (e.g. gone.mp4)" in out
    assert "skipped 1 unreadable video(s): " in out and "broken.mp4" in out


def test_eval_and_stream(trained, dataset, capsys):
    assert eval_main(["--checkpoint", str(trained / "last.pt")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["clips"] == 2 and 0 <= res["accuracy"] <= 1
    assert stream_main([str(dataset / "v1.mp4"), "--checkpoint", str(trained / "last.pt"), "--max-frames", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("frame ") == 5 and "frames/s" in out


def test_checkpoint_from_another_model(trained, capsys):
    assert eval_main(["--checkpoint", str(trained / "last.pt"), "model.core_dim=32"]) == 2
    assert "comes from another model (core_dim: checkpoint 16, this run 32)" in capsys.readouterr().err


def test_cache_from_another_preprocessing(trained, dataset, capsys):
    run = trained.parent / "c"
    assert train_main(_args(dataset, run, "model.frame_size=64")) == 2
    err = capsys.readouterr().err
    assert "built under another key" in err and "preprocess" in err and "rebuild" in err


def test_label_file_matching_no_video(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("video,label\nnope1.mp4,a\nnope2.mp4,b\n")
    assert train_main(_args(tmp_path, tmp_path / "run")) == 2
    assert "none of the 2 entries" in capsys.readouterr().err


def test_bad_override_is_a_clear_error(capsys):
    assert train_main(["train.epoch=3"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_module_entry_point_for_torchrun():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "coldstream.train", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--config" in r.stdout
