"""Built-in tasks: direction-of-motion clips, arrow-of-time windows, the order-blind baseline, the demo table."""

import numpy as np
import pytest
import torch

from coldstream.train import demo
from coldstream.train.clips import ClipItem
from coldstream.train.demo import DemoConfig, format_table
from coldstream.train.packaged import Source
from coldstream.train.tasks import arrow, crop_tracks, direction


def _photo(tmp_path, h=300, w=400):
    from PIL import Image

    img = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "p.png")
    return Source("test/p", tmp_path / "p.png")


def test_trajectories_stay_inside_and_move_the_right_way(tmp_path):
    src = _photo(tmp_path)
    trajs = direction.make_trajectories([src], 16, 32, 24, speed=(3, 5), photo_scale=3.0)
    assert sorted({t.direction for t in trajs}) == list(range(8))
    for t in trajs:
        frames = direction.render(t, 32, 24)
        assert frames.shape == (24, 32, 32, 3)
        (x0, y0), (x1, y1) = t.positions(24)[0], t.positions(24)[-1]
        a = t.direction * np.pi / 4
        assert np.sign(round(np.cos(a), 6)) == np.sign(x1 - x0) and np.sign(round(-np.sin(a), 6)) == np.sign(y1 - y0)


def test_views_are_the_photo_mirrored_and_transposed(tmp_path):
    src = _photo(tmp_path)  # 300 x 400
    trajs = direction.make_trajectories([src], 16, 32, 24, speed=(3, 5), photo_scale=3.0, views=8)
    assert sorted({t.view for t in trajs}) == list(range(8)) and len(trajs) == 16
    base = direction.photo_view(str(src.path), 96)
    assert base.shape[:2] == (96, 128) and direction.photo_view(str(src.path), 96, 1).shape[:2] == (128, 96)
    for t in trajs:
        img = base.transpose(1, 0, 2) if t.view & 1 else base
        img = img[:, ::-1] if t.view & 2 else img
        img = img[::-1] if t.view & 4 else img
        x, y = t.positions(24)[5]
        np.testing.assert_array_equal(direction.render(t, 32, 24)[5], img[y : y + 32, x : x + 32])
    assert len({direction.trajectory_key(t, 32, 24) for t in trajs}) == 16
    with pytest.raises(ValueError, match="divide per_photo"):
        direction.make_trajectories([src], 12, 32, 24, views=8)


def test_reversed_windows_carry_the_opposite_label(tmp_path):
    src = _photo(tmp_path)
    trajs = direction.make_trajectories([src], 2, 32, 24, speed=(3, 5))
    items = direction.clip_items(trajs, 32, 24, 16, step=4)
    assert len(items) == 2 * 3 * 2  # 2 trajectories x 3 windows x (forward, reversed)
    fwd, rev = items[0], items[1]
    assert rev.frames == fwd.frames[::-1] and rev.label == (fwd.label + 4) % 8 and rev.vkey == fwd.vkey
    train, test = direction.split_by_source([f"s{i}" for i in range(10)], 0.3)
    assert len(test) == 3 and not train & test


def test_arrow_windows_and_folds():
    ws = arrow.windows(40, 16, strides=(1, 2), step=4)
    assert ws[0] == tuple(range(16)) and all(w[-1] < 40 for w in ws)
    assert any(w[1] - w[0] == 2 for w in ws)
    items = arrow.clip_items(Source("v", "v.mp4"), "k", 40, 16, max_windows=3)
    assert len(items) == 6 and items[1].frames == items[0].frames[::-1] and (items[0].label, items[1].label) == (1, 0)
    per = {n: [0] * k for n, k in zip("abcde", (5, 4, 3, 2, 1), strict=True)}
    folds = arrow.folds_of(list(per), per, 2)
    assert sorted(sum(folds, [])) == list("abcde") and len(folds) == 2
    assert len(arrow.folds_of(list(per), per, 0)) == 5


def test_demo_table_has_every_row_and_source():
    cfg = DemoConfig(rows=("gmmix", "meanpool"))
    rows = {"accuracy": 0.9, "clips_per_s": 100.0, "wall_s": 10.0}
    per_source = {"vtest": 0.5, "cup": 0.75}
    core = {**rows, "per_photo": {"a": 0.9, "b": 0.8, "c": 0.5}}
    base = {**rows, "per_photo": {"a": 0.2, "b": 0.1, "c": 0.6}}
    report = {
        "direction": {"rows": {"gmmix": core, "meanpool": base}},
        "arrow": {"rows": {r: {**rows, "per_source": per_source} for r in cfg.rows}},
    }
    table = format_table(cfg, report)
    assert "GMMix core" in table and "mean-pooled frames" in table and "| vtest | cup |" in table and "75%" in table
    # margins 70, 70, -10 points: wins 2 of 3, mean 43.3, population sd 37.7, worst -10.0
    assert "GMMix core beats both baselines on 2 of 3 held-out photos" in table
    assert "mean 43.3 points, sd 37.7, worst -10.0" in table
    tracks = {"average_jaccard": 0.4567, "delta_avg": 0.6, "occlusion_accuracy": 0.8, "mean_error_px": 12.34}
    tracks.update(clips_per_s=50.0, wall_s=5)
    table = format_table(cfg, {"direction": report["direction"], "tracks": {"rows": {"gmmix": tracks}}})
    assert "point tracking (mean error" in table and "| 12.3 |" in table and "0.457" in table and "arrow" not in table
    assert "| mean-pooled frames | 90.0% | - | 100 | 10 |" in table  # a row without a tracks result


def test_per_source_metrics_add_up_to_the_clip_weighted_mean():
    class Evaluator:  # stands for a trainer: accuracy = the fraction of a group's clips labelled 1
        def evaluate(self, clips):
            labels = [it.label for it in clips.items]
            return {"accuracy": sum(labels) / len(labels), "n": float(len(labels))}

    items = [ClipItem("k", (0,), int(lab[1]), source=lab[0]) for lab in ("a1", "a0", "b1", "b1", "b1", "b0")]
    overall, per = demo._per_source(Evaluator(), None, items)
    assert per == {"a": {"accuracy": 0.5, "n": 2.0}, "b": {"accuracy": 0.75, "n": 4.0}}
    assert overall == {"accuracy": pytest.approx(4 / 6), "n": 6.0}


def test_crop_tracks_are_the_exact_motion_of_the_photo(tmp_path):
    """A window moving right by v px per frame: every query point moves left by v / size per frame in crop
    coordinates, leaves view past the left edge; the reversed clip moves the other way from its own first frame."""
    photo = tmp_path / "p.png"
    photo.write_bytes(b"not decoded: only hashed for the cache key")
    traj = direction.Trajectory("p", str(photo), 0, 6.0, 10, 50, 288)
    items = crop_tracks.track_items([traj], 96, 24, 16, 4, points=5)
    assert len(items) == 6 and items[1].frames == items[0].frames[::-1]
    for it in items:
        q, pts, vis = it.inputs["query_points"], it.label["points"], it.label["visible"]
        step = 6.0 / 96 * (1 if it.frames[0] < it.frames[1] else -1)
        t = torch.arange(16, dtype=torch.float32)
        want = q[:, None, 0] - step * t  # x moves against the window; y stays
        inside = (want >= 0) & (want < 1)
        assert torch.equal(vis, inside) and vis[:, 0].all()
        torch.testing.assert_close(pts[..., 0][vis], want[vis])
        torch.testing.assert_close(pts[..., 1][vis], q[:, None, 1].expand(5, 16)[vis])
        assert (pts[~vis] == 0).all() and it.label["valid"].all() and (it.label["query_frames"] == 0).all()
    again = crop_tracks.track_items([traj], 96, 24, 16, 4, points=5)
    assert all(
        torch.equal(a.inputs["query_points"], b.inputs["query_points"]) for a, b in zip(items, again, strict=True)
    )


def _shift_matched_direction(grid: torch.Tensor) -> int:
    """The direction d whose one-token shift best maps the first token grid ``[side, side, D]`` onto the second: a
    window moving by (dx, dy) shows at (i, j) what it showed at (i + dy, j + dx) one token-width earlier."""
    side = grid.shape[1]
    g = torch.nn.functional.normalize(grid, dim=-1)
    score = []
    for d in range(8):
        a = d * np.pi / 4
        dx, dy = round(np.cos(a)), round(-np.sin(a))
        i0, i1, j0, j1 = max(0, -dy), side - max(0, dy), max(0, -dx), side - max(0, dx)
        score.append(float((g[1, i0:i1, j0:j1] * g[0, i0 + dy : i1 + dy, j0 + dx : j1 + dx]).sum(-1).mean()))
    return int(np.argmax(score))


def test_stride16_features_of_a_real_photo_show_the_direction_of_motion():
    """Why the main job uses ``efficientnet_lite0_s16``: for a window moving one token (16 px) across skimage's
    astronaut, its token grid after the move matches the grid before it shifted by one token the right way."""
    from coldstream.io.preprocess import preprocess_frames
    from coldstream.model import build_encoder

    skimage_data = pytest.importorskip("skimage.data")
    enc = build_encoder("efficientnet_lite0_s16")
    photo = skimage_data.astronaut()  # 512 x 512
    for d in range(8):
        t = direction.Trajectory("astronaut", "", d, 4.0 * (2**0.5 if d % 2 else 1), 224, 224, 512)
        (xa, ya), (xb, yb) = t.positions(5)[0], t.positions(5)[4]  # 4 frames: one token (16 px) along x and/or y
        crops = torch.from_numpy(np.stack([photo[ya : ya + 64, xa : xa + 64], photo[yb : yb + 64, xb : xb + 64]]))
        tokens = enc(preprocess_frames(crops, 64, enc.mean, enc.std))[:, 1:]  # [2, 16, 112]
        assert _shift_matched_direction(tokens.reshape(2, 4, 4, -1)) == d, direction.DIRECTION_NAMES[d]


def test_classification_loss_on_the_last_frames():
    from coldstream.train.tasks import ClassificationObjective

    logits = torch.randn(3, 5, 4)
    y = torch.tensor([0, 3, 1])
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(ClassificationObjective(4).loss(logits, y), ce(logits[:, -1], y))
    per_frame = torch.stack([ce(logits[:, t], y) for t in (2, 3, 4)]).mean()
    torch.testing.assert_close(ClassificationObjective(4, loss_frames=3).loss(logits, y), per_frame)
    every = ce(logits.flatten(0, 1), y.repeat_interleave(5))
    torch.testing.assert_close(ClassificationObjective(4, loss_frames=9).loss(logits, y), every)
    assert ClassificationObjective(4, loss_frames=3).metric_sums(logits, y)["n"] == 3  # accuracy: the last frame
    with pytest.raises(ValueError, match="loss_frames"):
        ClassificationObjective(4, loss_frames=0)
