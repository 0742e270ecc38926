"""Built-in tasks: direction-of-motion clips, arrow-of-time windows, the order-blind baseline, the demo table."""

import numpy as np
import torch

from coldstream.train.clip_model import ClipModel
from coldstream.train.demo import DemoConfig, arrow_folds, format_table
from coldstream.train.packaged import Source
from coldstream.train.tasks import arrow, direction


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


def test_reversed_windows_carry_the_opposite_label(tmp_path):
    src = _photo(tmp_path)
    trajs = direction.make_trajectories([src], 2, 32, 24, speed=(3, 5))
    items = direction.clip_items(trajs, 32, 24, 16, step=4)
    assert len(items) == 2 * 3 * 2  # 2 trajectories x 3 windows x (forward, reversed)
    fwd, rev = items[0], items[1]
    assert rev.frames == fwd.frames[::-1] and rev.label == (fwd.label + 4) % 8 and rev.vkey == fwd.vkey
    train, test = direction.split_by_source([f"s{i}" for i in range(10)], 0.3)
    assert len(test) == 3 and not train & test


def test_meanpool_baseline_is_blind_to_order_and_cores_are_not():
    x = torch.randn(2, 16, 1, 5, 8)
    rev = x.flip(1)
    blind = ClipModel((1, 5, 8), 8, core="meanpool", core_dim=8)
    torch.testing.assert_close(blind(x)[:, -1], blind(rev)[:, -1])
    seeing = ClipModel((1, 5, 8), 8, core="rvmrnn", core_dim=8, core_options={"num_heads": 2})
    assert not torch.allclose(seeing(x)[:, -1], seeing(rev)[:, -1])


def test_arrow_windows_and_folds():
    ws = arrow.windows(40, 16, strides=(1, 2), step=4)
    assert ws[0] == tuple(range(16)) and all(w[-1] < 40 for w in ws)
    assert any(w[1] - w[0] == 2 for w in ws)
    items = arrow.clip_items(Source("v", "v.mp4"), "k", 40, 16, max_windows=3)
    assert len(items) == 6 and items[1].frames == items[0].frames[::-1] and (items[0].label, items[1].label) == (1, 0)
    per = {n: [0] * k for n, k in zip("abcde", (5, 4, 3, 2, 1), strict=True)}
    folds = arrow_folds(list(per), per, 2)
    assert sorted(sum(folds, [])) == list("abcde") and len(folds) == 2
    assert len(arrow_folds(list(per), per, 0)) == 5


def test_demo_table_has_every_row_and_source():
    cfg = DemoConfig(rows=("gmmix", "meanpool"))
    rows = {"accuracy": 0.9, "clips_per_s": 100.0, "wall_s": 10.0}
    per_source = {"vtest": 0.5, "cup": 0.75}
    report = {
        "direction": {"rows": {"gmmix": rows, "meanpool": rows}},
        "arrow": {"rows": {r: {**rows, "per_source": per_source} for r in cfg.rows}},
    }
    table = format_table(cfg, report)
    assert "GMMix core" in table and "mean-pooled frames" in table and "| vtest | cup |" in table and "75%" in table


def _moving_grid(d: int, side: int = 4, frames: int = 3) -> torch.Tensor:
    """Features of a window moving one cell per frame in direction d over a random feature 'world'."""
    a = d * np.pi / 4
    dx, dy = round(np.cos(a)), round(-np.sin(a))
    world = torch.randn(20, 20, 6, generator=torch.Generator().manual_seed(d))
    rows = [world[8 + dy * t : 8 + dy * t + side, 8 + dx * t : 8 + dx * t + side].reshape(side * side, 6)
            for t in range(frames)]  # fmt: skip
    return torch.stack(rows)[:, None]  # [T, K=1, N, D]


def _direction_of(f: torch.Tensor, side: int = 4) -> int:
    g = f[:, 0].reshape(f.shape[0], side, side, -1)
    errs = []
    for d in range(8):
        a = d * np.pi / 4
        dx, dy = round(np.cos(a)), round(-np.sin(a))
        i0, i1, j0, j1 = max(0, -dy), side - max(0, dy), max(0, -dx), side - max(0, dx)
        errs.append(float((g[1, i0:i1, j0:j1] - g[0, i0 + dy : i1 + dy, j0 + dx : j1 + dx]).abs().mean()))
    return int(np.argmin(errs))


def test_grid_symmetries_map_the_direction_label_exactly():
    for d in range(8):
        clip = _moving_grid(d)
        assert _direction_of(clip) == d
        labels = set()
        for op in range(8):
            f, label = direction.dihedral(clip, d, op, prefix_tokens=0)
            assert _direction_of(f) == label
            labels.add(label)
        assert labels == {x for x in range(8) if x % 2 == d % 2}  # axis stays axis, diagonal stays diagonal


def test_lattice_paths_move_the_right_way_and_share_crops(tmp_path):
    src = _photo(tmp_path)
    lat = direction.make_lattice(src, 32, 4, 20, photo_scale=3.0)  # 96 x 128 photo: crops 32 px, 4 px apart
    assert (lat.nx, lat.ny) == (20, 17)
    pos = lat.positions()
    assert all(0 <= x and x + 32 <= 128 and 0 <= y and y + 32 <= 96 for x, y in pos)
    crops = direction.render_lattice(lat, 32, [0, len(pos) - 1])
    assert crops.shape == (2, 32, 32, 3)
    items = direction.lattice_clip_items(lat, 32, 16, per_direction=3)
    assert len(items) == 8 * 3 and sorted({i.label for i in items}) == list(range(8))
    for it in items:
        (x0, y0), (x1, y1) = pos[it.frames[0]], pos[it.frames[-1]]
        a = it.label * np.pi / 4
        assert np.sign(round(np.cos(a), 6)) == np.sign(x1 - x0) and np.sign(round(-np.sin(a), 6)) == np.sign(y1 - y0)
        pairs = zip(it.frames[:-1], it.frames[1:], strict=True)
        steps = {(pos[b][0] - pos[a_][0], pos[b][1] - pos[a_][1]) for a_, b in pairs}
        assert len(steps) == 1  # a straight path at constant speed
    # every path comes with its reverse: same crops, opposite label
    for fwd, rev in zip(items[::2], items[1::2], strict=True):
        assert rev.frames == fwd.frames[::-1] and rev.label == (fwd.label + 4) % 8 and rev.vkey == fwd.vkey
    # crops are shared: some crop is used by clips of several directions
    users = {}
    for it in direction.lattice_clip_items(lat, 32, 16, per_direction=100):
        for f in it.frames:
            users.setdefault(f, set()).add(it.label)
    assert max(map(len, users.values())) >= 4
