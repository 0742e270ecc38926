"""Dense-task annotation formats and the SSv2/CSV adapters, on tiny fabricated fixtures."""

import json
import math

import numpy as np
import pytest
import torch

from coldstream.train.tasks.formats import (
    AnnotationError,
    load_boxes,
    load_depth,
    load_points,
    load_poses,
    relative_pose_targets,
)
from coldstream.train.tasks.video_datasets import LabelFileError, load_csv, load_ssv2


def test_boxes(tmp_path):
    p = tmp_path / "v.boxes.json"
    p.write_text(json.dumps({"tracks": [{"id": 3, "boxes": [[0, 0.5, 0.5, 0.2, 0.3], [2, 0.55, 0.5, 0.2, 0.3]]}]}))
    frames, boxes = load_boxes(p)[3]
    assert frames.tolist() == [0, 2] and boxes.shape == (2, 4)
    p.write_text(json.dumps({"tracks": [{"id": 0, "boxes": [[0, 50, 50, 20, 30]]}]}))
    with pytest.raises(AnnotationError, match="normalised"):
        load_boxes(p)


def test_points(tmp_path):
    p = tmp_path / "v.points.npz"
    vis = np.array([[True, True, False], [False, True, True]])
    np.savez(p, points=np.full((2, 3, 2), 0.5), visible=vis, query_frame=np.array([0, 1]), frames=np.array([0, 1, 2]))
    d = load_points(p)
    assert d["points"].shape == (2, 3, 2) and d["visible"].dtype == torch.bool
    np.savez(p, points=np.full((2, 3, 2), 0.5), visible=vis, query_frame=np.array([2, 0]), frames=np.array([0, 1, 2]))
    with pytest.raises(AnnotationError, match="visible at its query frame"):
        load_points(p)


def test_depth(tmp_path):
    p = tmp_path / "v.depth.npz"
    np.savez(p, depth=np.ones((2, 8, 8), np.float32), frames=np.array([4, 5]))
    assert load_depth(p, size=8)["depth"].shape == (2, 8, 8)
    with pytest.raises(AnnotationError, match="8x8"):
        load_depth(p, size=16)
    np.savez(p, depth=-np.ones((2, 8, 8)), frames=np.array([4, 5]))
    with pytest.raises(AnnotationError, match=">= 0"):
        load_depth(p)


def _pose(yaw: float, x: float) -> np.ndarray:
    m = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    m[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    m[0, 3] = x
    return m


def test_poses_and_relative_targets(tmp_path):
    p = tmp_path / "v.poses.npz"
    np.savez(p, poses=np.stack([_pose(0, 0), _pose(0, 1.0), _pose(0.1, 1.0)]), frames=np.array([0, 1, 2]))
    d = load_poses(p)
    tgt, mask = relative_pose_targets(d["poses"].double())
    assert mask.tolist() == [False, True, True]
    torch.testing.assert_close(tgt[1, :3], torch.tensor([1.0, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(tgt[2, 3:6], torch.tensor([math.cos(0.1), 0, -math.sin(0.1)], dtype=torch.float64),
                               atol=1e-6, rtol=0)  # fmt: skip
    bad = np.stack([_pose(0, 0)] * 2)
    bad[1, :3, :3] *= 2
    np.savez(p, poses=bad, frames=np.array([0, 1]))
    with pytest.raises(AnnotationError, match="orthonormal"):
        load_poses(p)


def test_ssv2_adapter(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"Holding something": "0", "Pushing something left": "1"}))
    (tmp_path / "train.json").write_text(json.dumps([{"id": "1", "template": "Holding [something]"},
                                                     {"id": "2", "template": "Pushing [something] left"},
                                                     {"id": "9", "template": "Holding [something]"}]))  # fmt: skip
    (tmp_path / "val.json").write_text(json.dumps([{"id": "3", "template": "Holding [something]"}]))
    for i in (1, 2, 3):
        (tmp_path / f"{i}.webm").write_bytes(b"x")
    ds = load_ssv2(tmp_path, tmp_path / "labels.json", tmp_path / "train.json", tmp_path / "val.json")
    assert [r.label for r in ds.split("train")] == [0, 1] and len(ds.split("val")) == 1
    assert ds.missing == ["9"] and "1 label entries without a video" in ds.summary()
    (tmp_path / "val.json").write_text(json.dumps([{"id": "3", "template": "Spinning [something]"}]))
    with pytest.raises(LabelFileError, match="Spinning something.*not in"):
        load_ssv2(tmp_path, tmp_path / "labels.json", tmp_path / "train.json", tmp_path / "val.json")


def test_csv_adapter(tmp_path):
    for n in ("a.mp4", "b.mp4"):
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "l.csv").write_text("video,label,start,end,split\na.mp4,cat,0.5,2.0,train\nb.mp4,dog,,,val\n")
    ds = load_csv(tmp_path / "l.csv")
    assert ds.class_names == ["cat", "dog"] and ds.records[0].start == 0.5 and ds.records[1].end is None
    (tmp_path / "l.csv").write_text("video,label,start,end\na.mp4,cat,2,1\n")
    with pytest.raises(LabelFileError, match="not after start"):
        load_csv(tmp_path / "l.csv")
    (tmp_path / "l.csv").write_text("file,class\na.mp4,cat\n")
    with pytest.raises(LabelFileError, match="header"):
        load_csv(tmp_path / "l.csv")
