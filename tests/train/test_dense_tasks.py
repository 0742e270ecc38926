"""Dense tasks on fabricated videos and annotation files: the clips each adapter cuts, the objectives' metrics on
hand-made outputs, a few steps reducing each loss, learned loss weights in the trainer, and refusals."""

import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from coldstream.errors import ConfigError, DataError
from coldstream.model import ModelConfig, build_encoder
from coldstream.model.readouts import matrix_to_rotation_6d
from coldstream.train.config import DataConfig, TrainConfig, load_job_config
from coldstream.train.pipeline import build_model, cache_key, check_readout, open_cache, prepare
from coldstream.train.tasks import TASKS
from coldstream.train.tasks.dense import (
    BoxTrackingObjective,
    CameraPoseObjective,
    DepthObjective,
    PointTrackingObjective,
    windows,
)
from coldstream.train.trainer import Trainer, call_model
from tests.train.helpers import write_annotation, write_dense_dataset

TASK_NAMES = ["box_tracking", "point_tracking", "depth", "camera_pose"]
READOUT = {  # small heads: fast on 2 CPU cores
    "box_tracking": ("waymo", {"width": 32, "num_heads": 2, "hidden": 32}),
    "point_tracking": ("pt", {"width": 32, "num_heads": 2, "hidden": 32}),
    "depth": ("scannet", {"width": 32, "num_heads": 2}),
    "camera_pose": ("nuscenes", {"width": 32, "hidden": 32}),
}


def _task(name, root, frames=4, **options):
    return TASKS.create(name, DataConfig(task=name, root=str(root), frames=frames, options=options), 32)


def test_windows():
    assert windows(9, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [5, 6, 7, 8]]  # the tail gets an end-aligned window
    assert windows(8, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert windows(2, 4) == [[0, 1, 1, 1]]  # short: the last frame repeats
    assert windows(9, 4, limit=1) == [[0, 1, 2, 3]]


def test_box_clips_start_from_the_tracks_first_box(tmp_path):
    root = write_dense_dataset(tmp_path, "box_tracking", train=1, val=1, frames=7)
    data = _task("box_tracking", root).data(build_encoder("efficientnet_lite0_s16"))
    # 6 annotated frames (1..6), T = 4: windows [1..4] and [3..6], for each of 2 tracks
    assert len(data.train) == 4 and len(data.eval) == 4 and data.class_names == []
    it = data.train[0]
    assert it.frames == (1, 2, 3, 4)
    assert it.inputs["init_box"].tolist() == pytest.approx([0.3, 0.5, 0.2, 0.25])
    assert it.label["boxes"][:, 0].tolist() == pytest.approx([0.3, 0.33, 0.36, 0.39])
    assert data.train[1].frames == (3, 4, 5, 6) and data.train[1].inputs["init_box"][0] == pytest.approx(0.36)
    assert data.jobs[0].frames == [1, 2, 3, 4, 5, 6]


def test_point_clips_query_padding_and_first_visible(tmp_path):
    v = tmp_path / "v.mp4"
    v.write_bytes(b"")  # content is not read to cut clips
    t = 8
    pts = np.stack([np.full((t, 2), 0.1 * (q + 1)) for q in range(3)])
    vis = np.ones((3, t), dtype=bool)
    vis[1, :5] = False  # point 1 appears at column 5
    vis[2, 4:] = False  # point 2 is gone in the second window
    np.savez(tmp_path / "v.points.npz", points=pts, visible=vis, query_frame=np.array([0, 6, 0]),
             frames=np.arange(10, 10 + t))  # fmt: skip
    task = _task("point_tracking", tmp_path, max_points=4)
    from coldstream.train.tasks.dense import AnnotatedVideo

    first, second = task.items(AnnotatedVideo(v, tmp_path / "v.points.npz", "train"), "k")
    assert first.frames == (10, 11, 12, 13) and second.frames == (14, 15, 16, 17)
    # window 1: point 0 queried at its query frame 0, point 1 never visible (left out), point 2 at its frame 0
    assert first.label["valid"].tolist() == [True, True, False, False]
    assert first.label["query_frames"][:2].tolist() == [0, 0]
    assert first.inputs["query_points"][1].tolist() == pytest.approx([0.3, 0.3])  # point 2 in slot 1
    # window 2: point 0 at its first frame there, point 1 at its query frame (column 6 = clip frame 2); point 2 gone
    assert second.label["valid"].tolist() == [True, True, False, False]
    assert second.label["query_frames"][:2].tolist() == [0, 2]
    assert second.label["visible"][1].tolist() == [False, True, True, True]  # columns 4..7
    assert second.inputs["query_points"][1].tolist() == pytest.approx([0.2, 0.2])


def test_depth_maps_are_read_when_the_clip_is(tmp_path):
    root = write_dense_dataset(tmp_path, "depth", train=1, val=0, frames=5)
    data = _task("depth", root).data(build_encoder("efficientnet_lite0_s16"))
    it = data.train[0]
    assert callable(it.label)
    depth = it.label()["depth"]
    assert depth.shape == (4, 32, 32) and depth[0, 0, 0] == 0 and depth[1, 5, 0] == pytest.approx(1.05)
    with pytest.raises(DataError, match="not 48x48"):
        TASKS.create("depth", DataConfig(task="depth", root=str(root), frames=4), 48).data(None)


def test_pose_targets_are_relative_motions(tmp_path):
    root = write_dense_dataset(tmp_path, "camera_pose", train=1, val=0, frames=5)
    it = _task("camera_pose", root).data(build_encoder("efficientnet_lite0_s16")).train[0]
    y = it.label
    assert y["valid"].tolist() == [False, True, True, True]
    assert y["translation"][2, 2] > 0.4  # moving forward about 0.5 m a frame
    angle = math.degrees(math.acos((float(y["rotation"][2].trace()) - 1) / 2))
    assert angle == pytest.approx(math.degrees(0.05), rel=1e-3)


def test_split_by_hash_and_videos_without_annotations(tmp_path):
    from coldstream.testing import write_index_video

    for i in range(10):
        v = write_index_video(tmp_path / f"c{i}.mp4", 3, height=32, width=32)
        if i < 8:
            write_annotation(v.with_suffix(".boxes.json"), "box_tracking", [0, 1, 2])
    data = _task("box_tracking", tmp_path, val_fraction=0.5).data(build_encoder("efficientnet_lite0_s16"))
    assert data.train and data.eval and len(data.train) + len(data.eval) == 16
    assert "2 videos without a .boxes.json file skipped" in data.notes[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_index_video(empty / "x.mp4", 3, height=32, width=32)
    with pytest.raises(DataError, match="x.boxes.json"):
        _task("box_tracking", empty).data(None)
    with pytest.raises(ConfigError, match="set data.root"):
        _task("box_tracking", "").data(None)


def test_broken_annotation_names_the_file(tmp_path):
    root = write_dense_dataset(tmp_path, "box_tracking", train=1, val=0, frames=4)
    (root / "train" / "v0.boxes.json").write_text(json.dumps({"tracks": [{"id": 0, "boxes": [[0, 2, 2, 1, 1]]}]}))
    with pytest.raises(DataError, match="v0.boxes.json.*normalised"):
        _task("box_tracking", root).data(None)


def test_readout_must_fit_the_task(tmp_path):
    check_readout(_task("box_tracking", tmp_path), "box_tracking")  # an alias of waymo
    with pytest.raises(ConfigError, match="model.readout=waymo"):
        check_readout(_task("box_tracking", tmp_path), "linear")
    csv = TASKS.create("csv", DataConfig(task="csv"), 32)
    with pytest.raises(ConfigError, match="classification head"):
        check_readout(csv, "scannet")


# ------------------------------------------------------------------------------------ objectives, by hand


def test_box_objective_leaves_the_given_first_box_out():
    gt = torch.tensor([0.5, 0.5, 0.2, 0.2]).expand(2, 3, 4).clone()
    pred = gt.clone()
    pred[:, 0] = 0.9  # frame 0 wrong: not counted
    pred[1, 2, 0] += 0.1  # IoU 1/3 on the last frame of clip 1
    obj = BoxTrackingObjective()
    m = obj.summarize(obj.metric_sums(pred, {"boxes": gt, "valid": torch.ones(2, 3, dtype=torch.bool)}))
    assert m == {"mean_iou": pytest.approx((1 + (1 + 1 / 3) / 2) / 2), "n": 2.0}


def test_point_objective_by_hand():
    gt = torch.full((1, 2, 3, 2), 0.5)
    out = {"pred_points": gt.clone(), "pred_visibility": torch.full((1, 2, 3), 5.0),
           "pred_uncertainty": torch.zeros(1, 2, 3)}  # fmt: skip
    out["pred_points"][0, 0, 2, 0] += 3 / 256  # 3 px off on one frame
    out["pred_points"][0, 1] = 0  # padding query: ignored
    y = {"points": gt, "visible": torch.ones(1, 2, 3, dtype=torch.bool), "query_frames": torch.zeros(1, 2).long(),
         "valid": torch.tensor([[True, False]])}  # fmt: skip
    obj = PointTrackingObjective()
    m = obj.summarize(obj.metric_sums(out, y))
    assert m["average_jaccard"] == pytest.approx(11 / 15) and m["delta_avg"] == pytest.approx(0.8)
    assert m["occlusion_accuracy"] == 1.0 and m["n"] == 1.0
    assert obj.loss(out, y).isfinite()


def test_depth_objective_by_hand():
    gt = torch.full((1, 2, 4, 4), 2.0)
    pred = gt.clone()
    pred[0, 0, :2] = 2.6
    gt[0, 1] = 0  # frame 1 has no measurement
    obj = DepthObjective()
    m = obj.summarize(obj.metric_sums(pred, {"depth": gt}))
    assert m == {"abs_rel": pytest.approx(0.15), "delta_1.25": pytest.approx(0.5), "n": 1.0}
    assert obj.loss(pred, {"depth": gt}).item() == pytest.approx(0.3)  # L1 over measured pixels


def test_pose_objective_by_hand():
    y = {"translation": torch.zeros(1, 3, 3), "rotation": torch.eye(3).expand(1, 3, 3, 3).clone(),
         "valid": torch.tensor([[False, True, True]])}  # fmt: skip
    y["translation"][0, 1:, 2] = 0.5
    pred = torch.zeros(1, 3, 9)
    pred[..., 3:] = matrix_to_rotation_6d(torch.eye(3))
    pred[0, 1:, 2] = 0.5
    pred[0, 2, 2] = 0.52  # 20 mm too far on the last step
    obj = CameraPoseObjective()
    m = obj.summarize(obj.metric_sums(pred, y))
    assert m["rpe_translation_mm"] == pytest.approx(10.0, rel=1e-4) and m["rpe_rotation_deg"] == pytest.approx(0)
    # positions along z 0, 0.5, 1.02 vs 0, 0.5, 1.0: after alignment residuals -1/150, 1/75, -1/150 m
    assert m["ate_mm"] == pytest.approx(1000 * math.sqrt((2 * (1 / 150) ** 2 + (1 / 75) ** 2) / 3), rel=1e-3)


# ------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("efficientnet_lite0_s16")


def _prepared(task_name, root, encoder, cache_dir):
    task = _task(task_name, root)
    cache = open_cache(cache_dir, cache_key(encoder, 32))
    return task, prepare(task, encoder, cache, show_progress=False, log=lambda *_: None)


def _model(task_name, encoder):
    ro, opts = READOUT[task_name]
    cfg = ModelConfig(encoder="efficientnet_lite0_s16", frame_size=32, core="identity", core_dim=16, readout=ro,
                      readout_options=opts)  # fmt: skip
    return build_model(cfg, encoder, [])


@pytest.mark.parametrize("name", TASK_NAMES)
def test_a_few_steps_reduce_the_loss(name, encoder, tmp_path):
    task, data = _prepared(name, write_dense_dataset(tmp_path / "d", name, train=2, val=1), encoder, tmp_path / "c")
    torch.manual_seed(0)
    model = _model(name, encoder)
    obj = task.objective([], TrainConfig())
    params = [p for p in model.parameters() if p.requires_grad]
    params += list(obj.parameters()) if isinstance(obj, torch.nn.Module) else []
    opt = torch.optim.Adam(params, lr=3e-3)
    x, y = default_collate([data.train[i] for i in range(4)])
    x["features"] = x["features"].float()
    losses = []
    for _ in range(12):
        loss = obj.loss(call_model(model, x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1 * abs(losses[0]), losses
    with torch.no_grad():
        metrics = obj.summarize(obj.metric_sums(call_model(model, x), y))
    assert metrics["n"] > 0 and all(math.isfinite(v) for v in metrics.values())


def test_trainer_learns_and_keeps_the_pose_loss_weights(encoder, tmp_path):
    task, data = _prepared("camera_pose", write_dense_dataset(tmp_path / "d", "camera_pose", train=2, val=1),
                           encoder, tmp_path / "c")  # fmt: skip
    cfg = load_job_config(None, [f"train.out_dir={tmp_path / 'run'}", "train.epochs=2", "train.batch_size=2",
                                 "train.progress=false", "optim.lr=0.01"])  # fmt: skip
    torch.manual_seed(0)
    obj = task.objective([], cfg.train)
    trainer = Trainer(_model("camera_pose", encoder), obj, data.train, data.eval, cfg)
    trainer.fit()
    assert obj.loss_fn.log_var_rotation.item() != -3.0  # learned, not left at its start
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2] and {"rpe_translation_mm", "rpe_rotation_deg", "ate_mm"} <= set(
        evals[-1]
    )
    blob = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert blob["objective"]["loss_fn.log_var_rotation"].item() == pytest.approx(obj.loss_fn.log_var_rotation.item())
    fresh = task.objective([], cfg.train)
    resumed = Trainer(_model("camera_pose", encoder), fresh, data.train, data.eval, cfg)
    assert resumed.resume()
    assert fresh.loss_fn.log_var_rotation.item() == pytest.approx(obj.loss_fn.log_var_rotation.item())


def test_a_frame_past_the_videos_end_skips_that_video(encoder, tmp_path):
    from coldstream.testing import write_index_video

    root = write_dense_dataset(tmp_path / "d", "camera_pose", train=1, val=0, frames=5)
    v = write_index_video(root / "train" / "short.mp4", 4, height=32, width=32)
    write_annotation(v.with_suffix(".poses.npz"), "camera_pose", [0, 2, 4, 6])
    _, data = _prepared("camera_pose", root, encoder, tmp_path / "c")
    assert len(data.train) == 1 and {it.source for it in data.train.items} == {str(root / "train" / "v0.mp4")}
    assert [name for name, _ in data.skipped] == [str(v)] and "out of range" in data.skipped[0][1]
