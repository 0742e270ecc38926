"""The dense tasks' metrics against values computed by hand: per-track IoU, TAP-Vid AJ / delta_avg / occlusion
accuracy with padding queries, depth AbsRel and delta < 1.25, camera-pose RPE and ATE."""

import math

import pytest
import torch

from coldstream.model.readouts import (
    absolute_trajectory_error,
    compose_relative,
    delta_accuracy,
    depth_frame_metrics,
    jaccard_terms,
    matrix_to_rotation_6d,
    point_tracking_loss,
    rpe_errors,
    track_iou,
)


def test_track_iou_by_hand():
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2]]).expand(3, 4)[None].clone()  # [1, 3, 4]
    pred = gt.clone()
    pred[0, 0] = torch.tensor([0.9, 0.9, 0.1, 0.1])  # frame 0 is masked: its IoU must not count
    pred[0, 2, 0] += 0.1  # shifted by half a width: intersection 0.1 x 0.2, union 0.06 -> IoU 1/3
    valid = torch.tensor([[False, True, True]])
    iou, counted = track_iou(pred, gt, valid)
    assert iou.item() == pytest.approx((1 + 1 / 3) / 2, rel=1e-5) and counted.tolist() == [True]
    iou, counted = track_iou(pred, gt, torch.zeros(1, 3, dtype=torch.bool))
    assert counted.tolist() == [False]


def test_jaccard_by_hand_and_padding_queries_do_not_count():
    gt = torch.full((1, 2, 3, 2), 0.5)  # [B, Q, T, 2]
    pred = gt.clone()
    pred[0, 0, 2, 0] += 3 / 256  # 3 px off at 256 px: within 4, 8, 16 but not 1, 2
    pred[0, 1] = 0.0  # the second query is padding: far off, all wrong
    vis = torch.ones(1, 2, 3, dtype=torch.bool)
    pvis = vis.clone()
    pvis[0, 1] = False
    qf = torch.zeros(1, 2, dtype=torch.long)
    t = jaccard_terms(pred, pvis, gt, vis, qf, valid=torch.tensor([[True, False]]))
    # frame 1 exact, frame 2 off by 3 px: J = 1/3 at 1 and 2 px (tp 1, gt 2, false positive 1), 1 at 4, 8, 16 px
    assert t["jaccard_1"].item() == pytest.approx(1 / 3) and t["jaccard_4"].item() == pytest.approx(1.0)
    assert t["average_jaccard"].item() == pytest.approx((1 / 3 + 1 / 3 + 1 + 1 + 1) / 5)
    assert t["position_accuracy"].item() == pytest.approx((0.5 + 0.5 + 1 + 1 + 1) / 5)  # delta_avg
    assert t["occlusion_accuracy"].item() == pytest.approx(1.0)
    assert t["mean_error_px"].item() == pytest.approx(1.5)  # 0 and 3 px over the two evaluated frames
    # a predicted occlusion where the point is visible: one frame of two wrong
    pvis[0, 0, 1] = False
    t = jaccard_terms(pred, pvis, gt, vis, qf, valid=torch.tensor([[True, False]]))
    assert t["occlusion_accuracy"].item() == pytest.approx(0.5)
    assert t["jaccard_16"].item() == pytest.approx(0.5)  # tp 1 / (gt 2 + false positive 0)


def test_point_loss_ignores_padding_queries():
    gt = torch.rand(2, 3, 4, 2)
    vis = torch.rand(2, 3, 4) > 0.3
    out = {"pred_points": torch.rand(2, 3, 4, 2), "pred_visibility": torch.randn(2, 3, 4),
           "pred_uncertainty": torch.randn(2, 3, 4)}  # fmt: skip
    valid = torch.tensor([[True, True, False], [True, False, False]])
    qf = torch.zeros(2, 3, dtype=torch.long)
    base = point_tracking_loss(out, gt, vis, qf, valid=valid)
    garbage = {k: v.clone() for k, v in out.items()}
    garbage["pred_points"][0, 2] = 5.0
    garbage["pred_visibility"][1, 1:] = 50.0
    assert point_tracking_loss(garbage, gt, vis, qf, valid=valid).item() == pytest.approx(base.item())


def test_depth_metrics_by_hand():
    gt = torch.full((2, 4, 4), 2.0)
    pred = gt.clone()
    pred[0, :2] = 2.6  # half the pixels of frame 0 30% too far: AbsRel 0.15, delta 0.5
    pred[1] = 1.0  # frame 1 half as deep everywhere: AbsRel 0.5, delta 0 (ratio 2)
    m = depth_frame_metrics(pred, gt)
    assert m["abs_rel"].tolist() == pytest.approx([0.15, 0.5]) and m["delta"].tolist() == pytest.approx([0.5, 0.0])
    assert delta_accuracy(pred, gt).item() == pytest.approx(0.25)
    # median scaling: frame 0's median is already 2 (delta 0.5), frame 1 is scaled by 2 to exact (delta 1)
    assert delta_accuracy(pred, gt, median_scale=True).item() == pytest.approx(0.75)
    holes = gt.clone()
    holes[1] = 0  # no measurement in frame 1: not counted
    m = depth_frame_metrics(pred, holes)
    assert m["counted"].tolist() == [True, False]
    neg = -gt  # a non-positive prediction is never within 1.25
    assert depth_frame_metrics(neg, gt)["delta"].tolist() == [0.0, 0.0]


def _rz(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def test_rpe_and_ate_by_hand():
    t, eye = 3, torch.eye(3)
    gt_t = torch.zeros(1, t, 3)
    gt_t[0, 1:, 0] = 1.0  # 1 m along x each frame
    gt_r = eye.expand(1, t, 3, 3).clone()
    pred = torch.zeros(1, t, 9)
    pred[..., 3:] = matrix_to_rotation_6d(_rz(10.0))
    pred[0, 1:, 0] = 2.0
    trans, rot = rpe_errors(pred, gt_t, gt_r)
    assert trans[0, 1:].tolist() == pytest.approx([1.0, 1.0]) and rot[0, 1:].tolist() == pytest.approx([10, 10])
    # straight line: predicted positions 0, 2, 4 vs true 0, 1, 2; after rigid alignment residuals -1, 0, 1
    pred[..., 3:] = matrix_to_rotation_6d(eye)
    assert absolute_trajectory_error(pred, gt_t, gt_r).item() == pytest.approx(math.sqrt(2 / 3), rel=1e-5)
    # the true trajectory turned as a whole (along y instead of x) has no absolute error after alignment
    turn = torch.zeros(1, t, 9)
    turn[0, 1:, 1] = 1.0
    turn[0, 0, :3] = torch.tensor([5.0, -3.0, 1.0])  # frame 0's output is ignored
    turn[..., 3:] = matrix_to_rotation_6d(eye)
    assert absolute_trajectory_error(turn, gt_t, gt_r).item() == pytest.approx(0.0, abs=1e-5)


def test_compose_relative_follows_the_turns():
    tr = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 0, 0]]])
    rot = torch.stack([torch.eye(3), _rz(90.0), torch.eye(3)])[None]
    pos = compose_relative(tr, rot)  # move 1 along x, turn left 90 deg, move 1 along the new x (= old y)
    assert pos[0].tolist() == [pytest.approx([0, 0, 0]), pytest.approx([1, 0, 0]), pytest.approx([1, 1, 0], abs=1e-6)]
