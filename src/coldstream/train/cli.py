"""``coldstream train | eval | stream``: command-line entry points of the training stack.

* ``coldstream train --config FILE [key=value ...]`` (or ``torchrun --nproc_per_node=N -m coldstream.train ...``):
  encode missing frames into the feature cache (sharded over ranks), train, evaluate each epoch, checkpoint.
* ``coldstream eval --checkpoint CKPT [key=value ...]``: the checkpoint's task and model on its eval split.
* ``coldstream stream VIDEO --checkpoint CKPT [--plot PNG]``: frame-by-frame outputs of a trained model with
  frames/s (encoder + enrichment + core step + readout per frame, the streaming protocol).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from coldstream.train.cache import CacheKey, FeatureCache, StaleCacheError, file_content_hash, video_key
from coldstream.train.checkpoint import CheckpointMismatchError, load_model_weights, read_checkpoint
from coldstream.train.clip_model import build_clip_model
from coldstream.train.clips import CachedClips, ClipItem
from coldstream.train.config import ConfigError, JobConfig, apply_overrides, from_dict, load_config
from coldstream.train.distributed import DistInfo, barrier, init_distributed, shutdown
from coldstream.train.extract import FrameJob, extract_features
from coldstream.train.tasks.base import ClassificationTask
from coldstream.train.trainer import Trainer, TrainingInterrupted


def cache_key(enc, size: int) -> CacheKey:
    """The cache key of ``enc``'s features at frame side ``size``."""
    return CacheKey(
        encoder=enc.name,
        weights_id=enc.weights_id,
        preprocess={"size": size, "mean": list(enc.mean), "std": list(enc.std), "resize": "short-side+center"},
        feature_shape=(enc.num_depths, enc.num_tokens(size, size), enc.dim),
    )


def _video_jobs(records, cfg: JobConfig, enc, log) -> tuple[list[FrameJob], dict, list]:
    """One SPEC §2.3 clip per labelled video: (jobs, {record index: ClipItem}, unreadable)."""
    from coldstream.io import centered_clip_indices, clip_stride, open_video

    jobs, items, bad = [], {}, []
    d = cfg.data
    for i, r in enumerate(records):
        try:
            with open_video(r.path) as src:
                info = src.info
        except Exception as e:  # noqa: BLE001 - unreadable video: skipped and counted
            bad.append((str(r.path), str(e)))
            continue
        stride = clip_stride(info.fps, d.fps or None)
        lo = int(r.start * info.fps) if r.start is not None and info.fps else 0
        hi = min(info.num_frames, int(r.end * info.fps) + 1) if r.end is not None and info.fps else info.num_frames
        idx = [lo + k for k in centered_clip_indices(max(1, hi - lo), d.frames, stride)]
        vkey = video_key(file_content_hash(r.path), {"decode": "native-frame-index"})

        def load(ix, path=str(r.path)):
            with open_video(path, output="float", size=d.size, mean=enc.mean, std=enc.std) as s:
                return s.get_frames(ix).data

        jobs.append(FrameJob(vkey, sorted(set(idx)), load, str(r.path)))
        items[i] = ClipItem(vkey, tuple(idx), r.label, str(r.path))
    return jobs, items, bad


def prepare_data(cfg: JobConfig, enc, log=print):
    """``(jobs, train_items, eval_items, class_names, skipped)`` for ``cfg.data.task``."""
    d = cfg.data
    if d.task in ("direction", "arrow"):
        from coldstream.train import demo
        from coldstream.train.packaged import fetch_packaged_data

        root, problems = fetch_packaged_data(d.root or None, verbose=True)
        for p in problems:
            log(f"warning: could not fetch {p}")
        return demo.task_data(d.task, dataclasses.replace(d, root=str(root)), enc, seed=cfg.train.seed)
    if d.task == "csv":
        from coldstream.train.tasks.video_datasets import load_csv

        ds = load_csv(d.labels, d.root or None)
    elif d.task == "ssv2":
        from coldstream.train.tasks.video_datasets import load_ssv2

        if "train" not in d.options or "val" not in d.options:
            raise ConfigError("ssv2 needs data.options.train=<train.json> and data.options.val=<validation.json>")
        ds = load_ssv2(d.root, d.labels, d.options["train"], d.options["val"])
    else:
        raise ConfigError(f"data.task must be direction, arrow, csv or ssv2, got {d.task!r}")
    log(ds.summary())
    jobs, items, bad = _video_jobs(ds.records, cfg, enc, log)
    train = [items[i] for i, r in enumerate(ds.records) if i in items and r.split == "train"]
    val = [items[i] for i, r in enumerate(ds.records) if i in items and r.split == "val"]
    return jobs, train, val, ds.class_names, bad


def _setup(cfg: JobConfig, info: DistInfo, log):
    from coldstream.model import build_encoder

    enc = build_encoder(cfg.model.encoder, weights=cfg.model.encoder_weights).to(info.device)
    key = cache_key(enc, cfg.data.size)
    cache_dir = Path(cfg.cache.dir) if cfg.cache.dir else Path(cfg.train.out_dir).parent / "cache" / cfg.data.task
    if info.is_main:
        FeatureCache(cache_dir, key, rebuild=cfg.cache.rebuild)  # checks (or rebuilds) the key once
    barrier(info)
    cache = FeatureCache(cache_dir, key, rank=info.rank)
    jobs, train, val, names, skipped = prepare_data(cfg, enc, log)
    rep = extract_features(
        cache, jobs, enc, batch_size=cfg.cache.batch_size, rank=info.rank, world=info.world, device=info.device,
        show_progress=info.is_main and cfg.train.progress, desc="encode frames",
    )  # fmt: skip
    barrier(info)
    cache.refresh()
    skipped = list(skipped) + rep.skipped
    if info.is_main:
        log(f"feature cache {cache_dir}: {rep.summary()}")
        if skipped:
            log(f"skipped {len(skipped)} unreadable video(s): " + "; ".join(f"{n} ({why})" for n, why in skipped[:5]))
    train = [it for it in train if cache.has(it.vkey, it.frames)]
    val = [it for it in val if cache.has(it.vkey, it.frames)]
    return enc, cache, train, val, names


def _model(cfg: JobConfig, cache: FeatureCache, enc, num_classes: int):
    return build_clip_model(cache.key.feature_shape, num_classes, cfg.model, prefix_tokens=enc.num_prefix_tokens)


def train_main(argv: list[str] | None = None) -> int:
    """``coldstream train --config FILE [key=value ...]``; returns the exit code."""
    ap = argparse.ArgumentParser(prog="coldstream train", description="Train a temporal core from cached features.")
    ap.add_argument("--config", default=None, help="YAML file of a JobConfig (see configs/)")
    ap.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=3 model.core=rvmrnn")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"coldstream train: {e}", file=sys.stderr)
        return 2
    info = init_distributed(cfg.train.device)
    log = print if info.is_main else (lambda *a, **k: None)
    try:
        enc, cache, train, val, names = _setup(cfg, info, log)
        if not train:
            raise RuntimeError("no training clips left (all videos unreadable or missing?)")
        torch.manual_seed(cfg.train.seed)
        model = _model(cfg, cache, enc, len(names))
        task = ClassificationTask(len(names), names, loss_frames=cfg.train.loss_frames)
        trainer = Trainer(model, task, CachedClips(cache, train), CachedClips(cache, val), cfg, dist=info)
        trainer.extra = {"class_names": names, "feature_shape": list(cache.key.feature_shape)}
        log(
            f"training {len(train)} clips, evaluating {len(val)}; {cfg.model.core} core; outputs in {cfg.train.out_dir}"
        )
        summary = trainer.fit()
        log(json.dumps({"final": summary["final"], "clips_per_s": round(summary["clips_per_s"], 1)}))
        return 0
    except TrainingInterrupted as e:
        print(f"coldstream train: {e}", file=sys.stderr)
        return 130
    except (StaleCacheError, CheckpointMismatchError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"coldstream train: {e}", file=sys.stderr)
        return 2
    finally:
        shutdown()


def _config_from_checkpoint(blob: dict, overrides: list[str]) -> JobConfig:
    d = blob.get("config") or {}
    apply_overrides(d, overrides)
    return from_dict(JobConfig, d)


def eval_main(argv: list[str] | None = None) -> int:
    """``coldstream eval --checkpoint CKPT [key=value ...]``: metrics on the checkpoint's eval split as JSON."""
    ap = argparse.ArgumentParser(prog="coldstream eval", description="Evaluate a trained checkpoint.")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("overrides", nargs="*", help="key=value on the checkpoint's config (e.g. data.labels=...)")
    args = ap.parse_args(argv)
    try:
        blob = read_checkpoint(args.checkpoint)
        cfg = _config_from_checkpoint(blob, args.overrides)
        info = DistInfo(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        enc, cache, _, val, names = _setup(cfg, info, print)
        model = _model(cfg, cache, enc, len(names))
        load_model_weights(args.checkpoint, model, dataclasses.asdict(cfg.model))
        task = ClassificationTask(len(names), names, loss_frames=cfg.train.loss_frames)
        trainer = Trainer(model, task, [None], None, cfg, dist=info)
        metrics = trainer.evaluate(CachedClips(cache, val))
        print(json.dumps({"checkpoint": args.checkpoint, "clips": len(val), **metrics}))
        return 0
    except (StaleCacheError, CheckpointMismatchError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"coldstream eval: {e}", file=sys.stderr)
        return 2


def stream_main(argv: list[str] | None = None) -> int:
    """``coldstream stream VIDEO --checkpoint CKPT [--plot PNG]``: per-frame outputs and frames/s."""
    ap = argparse.ArgumentParser(
        prog="coldstream stream", description="Run a trained model over a video frame by frame."
    )
    ap.add_argument("video")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--plot", nargs="?", const="", default=None, help="draw per-frame probabilities (PNG path)")
    ap.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = all)")
    args = ap.parse_args(argv)
    from coldstream.io import VideoError, open_video
    from coldstream.model import build_encoder

    try:
        blob = read_checkpoint(args.checkpoint)
        cfg = _config_from_checkpoint(blob, [])
        names = blob.get("extra", {}).get("class_names") or [
            str(i) for i in range(blob["model"][_last_key(blob)].shape[0])
        ]
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        enc = build_encoder(cfg.model.encoder, weights=cfg.model.encoder_weights).to(dev)
        key = cache_key(enc, cfg.data.size)
        model = build_clip_model(key.feature_shape, len(names), cfg.model, prefix_tokens=enc.num_prefix_tokens)
        load_model_weights(args.checkpoint, model, dataclasses.asdict(cfg.model))
        model.to(dev).eval()
        probs, state, n = [], None, 0
        t0 = time.perf_counter()
        with open_video(args.video, output="float", size=cfg.data.size, mean=enc.mean, std=enc.std, device=dev) as src:
            print(f"{args.video}: {src.info.num_frames} frames at {src.info.fps:.1f} fps; classes {names}")
            for chunk in src.stream(chunk_size=1):
                feats = enc.features(chunk.data).permute(1, 0, 2, 3)  # [1, K, N, D]
                logits, state = model.stream(feats, state)
                p = logits.softmax(-1)[0].float().cpu()
                probs.append(p)
                top = int(p.argmax())
                print(
                    f"frame {int(chunk.indices[0]):5d}  {names[top]:<12} {p[top]:.3f}  "
                    + " ".join(f"{x:.2f}" for x in p)
                )
                n += 1
                if args.max_frames and n >= args.max_frames:
                    break
        fps = n / (time.perf_counter() - t0)
        print(f"{n} frames, {fps:.1f} frames/s (decode + encoder + core step + readout, {dev})")
        if args.plot is not None:
            _plot(torch.stack(probs), names, args.plot or str(Path(args.video).with_suffix(".stream.png")))
        return 0
    except (CheckpointMismatchError, VideoError, FileNotFoundError, ValueError, ImportError) as e:
        print(f"coldstream stream: {e}", file=sys.stderr)
        return 2


def _last_key(blob) -> str:
    return [k for k in blob["model"] if k.startswith("readout.") and k.endswith("weight")][-1]


def _plot(probs: torch.Tensor, names: list[str], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("--plot needs matplotlib: pip install matplotlib") from e
    fig, ax = plt.subplots(figsize=(10, 3))
    for c, name in enumerate(names):
        ax.plot(probs[:, c].numpy(), label=name)
    ax.set_xlabel("frame")
    ax.set_ylabel("probability")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot written to {path}")
