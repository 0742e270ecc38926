"""`coldstream train` / `coldstream eval` on each dense task's config, end to end on CPU: fabricated videos with
their annotation files, the real EfficientNet-Lite0 at 32², 4-frame clips, an identity core and a small head
(streaming, and the offline whole-clip readouts)."""

import json
from pathlib import Path

import pytest

from coldstream.train.cli import eval_main, train_main
from tests.train.helpers import write_dense_dataset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HEAD = {
    "box_tracking": "{width: 32, num_heads: 2, hidden: 32}",
    "point_tracking": "{width: 32, num_heads: 2, hidden: 32}",
    "depth": "{width: 32, num_heads: 2}",
    "camera_pose": "{width: 32, hidden: 32}",
}
METRICS = {
    "box_tracking": {"mean_iou"},
    "point_tracking": {"average_jaccard", "delta_avg", "occlusion_accuracy"},
    "depth": {"abs_rel", "delta_1.25"},
    "camera_pose": {"rpe_translation_mm", "rpe_rotation_deg", "ate_mm"},
}


def _args(task, root, run, *extra):
    return ["--config", str(CONFIGS / f"{task}.yaml"), f"data.root={root}", "model.frame_size=32", "data.frames=4",
            "model.core=identity", "model.core_dim=16", "model.core_options={}", f"model.readout_options={HEAD[task]}",
            f"train.out_dir={run}", f"cache.dir={run.parent / 'cache'}", "train.epochs=2", "train.batch_size=2",
            "train.progress=false", *extra]  # fmt: skip


OFFLINE = {"box_tracking": "waymo_offline", "point_tracking": "pt_offline", "depth": "scannet_offline"}
CASES = [(task, None) for task in HEAD] + [(task, readout) for task, readout in OFFLINE.items()]


@pytest.mark.parametrize(("task", "readout"), CASES)
def test_train_then_eval(task, readout, tmp_path, capsys):
    root = write_dense_dataset(tmp_path / "data", task, train=2, val=1, frames=6)
    run = tmp_path / "run"
    extra = [f"model.readout={readout}"] if readout else []  # offline: num_frames follows data.frames
    assert train_main(_args(task, root, run, *extra)) == 0
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2] and all(METRICS[task] <= set(r) for r in evals)
    assert any(r["kind"] == "train" for r in recs)
    capsys.readouterr()
    assert eval_main(["--checkpoint", str(run / "last.pt")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # 5 annotated frames, T = 4: 2 windows in the val video (for each of its 2 tracks, for boxes)
    assert res["clips"] == (4 if task == "box_tracking" else 2) and METRICS[task] <= set(res)
    for k in METRICS[task]:
        assert res[k] == pytest.approx(evals[-1][k], rel=1e-4, abs=1e-6)  # the checkpoint's last evaluation


def test_a_readout_that_does_not_fit_is_refused(tmp_path, capsys):
    root = write_dense_dataset(tmp_path / "data", "box_tracking", train=1, val=0, frames=4)
    assert train_main(_args("box_tracking", root, tmp_path / "run", "model.readout=linear")) == 2
    assert "trains the 'waymo' readout" in capsys.readouterr().err
