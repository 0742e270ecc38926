"""``coldstream train | eval | stream``: argument parsing only; the work is in ``pipeline``, ``trainer`` and
``coldstream.model``.

* ``coldstream train --config FILE [key=value ...]`` (or ``torchrun --nproc_per_node=N -m coldstream.train ...``):
  encode missing frames into the feature cache (sharded over ranks), train, evaluate each epoch, checkpoint.
* ``coldstream eval --checkpoint CKPT [key=value ...]``: the checkpoint's model on its task's eval split.
* ``coldstream stream VIDEO --checkpoint CKPT [--plot PNG]``: the trained model over a video frame by frame
  (``VideoModel.step``, through a CUDA graph on a GPU), with per-frame outputs and frames/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from coldstream.config import apply_overrides, from_dict, to_dict
from coldstream.errors import ColdstreamError, InputError, TrainingInterrupted
from coldstream.train.checkpoint import load_model_weights, read_checkpoint
from coldstream.train.config import JobConfig, load_job_config
from coldstream.train.distributed import DistInfo, init_distributed, shutdown
from coldstream.train.pipeline import build_model, setup
from coldstream.train.trainer import Trainer, evaluate


def train_main(argv: list[str] | None = None) -> int:
    """``coldstream train --config FILE [key=value ...]``; returns the exit code."""
    ap = argparse.ArgumentParser(prog="coldstream train", description="Train a temporal core from cached features.")
    ap.add_argument("--config", default=None, help="YAML file of a JobConfig (see configs/)")
    ap.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=3 model.core=rvmrnn")
    args = ap.parse_args(argv)
    try:
        cfg = load_job_config(args.config, args.overrides)
        info = init_distributed(cfg.train.device)
    except ColdstreamError as e:
        print(f"coldstream train: {e}", file=sys.stderr)
        return 2
    log = print if info.is_main else (lambda *a, **k: None)
    try:
        task, encoder, data = setup(cfg, info, log)
        if len(data.train) == 0:
            raise ColdstreamError("no training clips left (all videos unreadable or missing?)")
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, encoder, data.class_names, cfg.data.frames)
        objective = task.objective(data.class_names, cfg.train)
        trainer = Trainer(model, objective, data.train, data.eval, cfg, dist=info)
        log(f"training {len(data.train)} clips, evaluating {len(data.eval)}; {cfg.model.core} core; "
            f"outputs in {cfg.train.out_dir}")  # fmt: skip
        summary = trainer.fit()
        log(json.dumps({"final": summary["final"], "clips_per_s": round(summary["clips_per_s"], 1)}))
        return 0
    except TrainingInterrupted as e:
        print(f"coldstream train: {e}", file=sys.stderr)
        return 130
    except ColdstreamError as e:
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
        cfg = _config_from_checkpoint(read_checkpoint(args.checkpoint), args.overrides)
        info = DistInfo(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        task, encoder, data = setup(cfg, info, print)
        model = build_model(cfg.model, encoder, data.class_names, cfg.data.frames)
        load_model_weights(args.checkpoint, model, to_dict(model.config))
        objective = task.objective(data.class_names, cfg.train)
        metrics = evaluate(model, objective, data.eval, batch_size=cfg.train.batch_size, dist=info, amp=cfg.train.amp)
        print(json.dumps({"checkpoint": args.checkpoint, "clips": len(data.eval), **metrics}))
        return 0
    except ColdstreamError as e:
        print(f"coldstream eval: {e}", file=sys.stderr)
        return 2


def stream_main(argv: list[str] | None = None) -> int:
    """``coldstream stream VIDEO --checkpoint CKPT [--plot PNG]``: per-frame outputs and frames/s."""
    ap = argparse.ArgumentParser(
        prog="coldstream stream", description="Run a trained model over a video frame by frame."
    )
    ap.add_argument("video")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--encoder-weights", default=None, help="the encoder's weights file, if not where training had it")
    ap.add_argument("--plot", nargs="?", const="", default=None, help="draw per-frame probabilities (PNG path)")
    ap.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = all)")
    args = ap.parse_args(argv)
    from coldstream.io import open_video
    from coldstream.model import VideoModel
    from coldstream.model.streaming import StreamRunner

    try:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = VideoModel.from_checkpoint(args.checkpoint, encoder_weights=args.encoder_weights, map_location=dev)
        if not hasattr(model.readout, "num_classes"):
            raise InputError(f"coldstream stream shows class probabilities; {args.checkpoint} has a "
                             f"{model.readout.task!r} readout")  # fmt: skip
        runner = StreamRunner(model, 1, device=dev)
        names = model.meta.get("class_names") or [str(i) for i in range(model.readout.num_classes)]
        enc, probs, n = model.encoder, [], 0
        t0 = time.perf_counter()
        with open_video(
            args.video, output="float", size=model.frame_size, mean=enc.mean, std=enc.std, device=dev
        ) as src:
            print(f"{args.video}: {src.info.num_frames} frames at {src.info.fps:.1f} fps; classes {names}")
            for chunk in src.stream(chunk_size=1):
                p = runner(chunk.data).float().softmax(-1)[0].cpu()
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
        graph = ", one CUDA graph per frame" if runner.cuda_graph else ""
        print(f"{n} frames, {fps:.1f} frames/s (decode + encoder + core step + readout, {dev}{graph})")
        if args.plot is not None:
            _plot(torch.stack(probs), names, args.plot or str(Path(args.video).with_suffix(".stream.png")))
        return 0
    except ColdstreamError as e:
        print(f"coldstream stream: {e}", file=sys.stderr)
        return 2


def _plot(probs: torch.Tensor, names: list[str], path: str) -> None:
    from coldstream import optional

    matplotlib = optional.require("matplotlib", "--plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3))
    for c, name in enumerate(names):
        ax.plot(probs[:, c].numpy(), label=name)
    ax.set_xlabel("frame")
    ax.set_ylabel("probability")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot written to {path}")
