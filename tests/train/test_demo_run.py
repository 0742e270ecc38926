"""`run_demo` end to end on CPU, tiny: random photographs stand for the packaged ones (nothing is fetched), the real
EfficientNet-Lite0 at 32², 4-frame clips, one epoch per task; checks the report's shape and the table's lines."""

import json

import numpy as np
import pytest

from coldstream.config import load_config
from coldstream.train import demo
from coldstream.train.packaged import Source
from coldstream.train.tasks import direction


@pytest.fixture
def photos(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(0)
    sources = []
    for i in range(5):
        path = tmp_path / "photos" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray((rng.random((160, 200, 3)) * 255).astype(np.uint8)).save(path)
        sources.append(Source(f"test/p{i}", path))
    fetched = lambda root=None, **_: (tmp_path / "data", [])  # noqa: E731
    monkeypatch.setattr(demo, "fetch_packaged_data", fetched)
    monkeypatch.setattr(direction, "fetch_packaged_data", fetched)
    monkeypatch.setattr(direction, "photo_sources", lambda root=None: sources)
    return tmp_path


def test_the_main_job_reports_every_row_and_photo(photos, capsys):
    cfg = load_config(
        demo.DemoConfig, None,
        ["rows=[rvmrnn,identity,meanpool]", "frames=4", f"out_dir={photos / 'run'}", f"cache_dir={photos / 'cache'}",
         "model.frame_size=32", "model.core_dim=16", "direction.per_photo=8", "direction.traj_frames=8",
         "direction.epochs=1", "direction.min_side=150", "tracks.every=1", "tracks.points=2",
         "tracks.readout_options={width: 16, num_heads: 2, hidden: 16}", "train.batch_size=16"],
    )  # fmt: skip
    report = demo.run_demo(cfg, log=lambda *_: None)
    test_photos = report["direction"]["test_photos"]
    assert test_photos and set(report) >= {"direction", "tracks", "extract"}
    for task, key in (("direction", "accuracy"), ("tracks", "mean_error_px")):
        for row in cfg.rows:
            r = report[task]["rows"][row]
            assert sorted(r["per_photo"]) == sorted(test_photos) and r["n_test"] > 0
            # the overall figure is the clip-weighted mean of the photos': between their extremes
            assert min(r["per_photo"].values()) - 1e-9 <= r[key] <= max(r["per_photo"].values()) + 1e-9
    table = (photos / "run" / "table.md").read_text()
    assert "the RVMRNN core beats both baselines on" in table and f"of {len(test_photos)} held-out photos" in table
    saved = json.loads((photos / "run" / "results.json").read_text())
    assert saved["direction"]["rows"]["rvmrnn"]["per_photo"] == report["direction"]["rows"]["rvmrnn"]["per_photo"]
