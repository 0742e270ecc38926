"""``coldstream serve VIDEO... --streams N``: N streams through one engine, with live per-stream fps and latency.

Stream ``i`` plays ``VIDEO[i % len(VIDEO)]``. Without ``--checkpoint`` the model is a small untrained one
(EfficientNet-Lite0 cut at stride 16 with its packaged weights, 64² frames, a one-layer GMMix core of width 64, a
linear head) that runs on a CPU: it measures the engine, its outputs mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from coldstream.errors import ColdstreamError

DEFAULT_MODEL = dict(
    encoder="efficientnet_lite0_s16",
    frame_size=64,
    core="gmmix",
    core_dim=64,
    core_layers=1,
    readout="linear",
    readout_options={"num_classes": 10},
)


def _model(args, device: torch.device):
    from coldstream.model import ModelConfig, VideoModel

    if args.checkpoint:
        return VideoModel.from_checkpoint(args.checkpoint, encoder_weights=args.encoder_weights, map_location=device)
    options = dict(DEFAULT_MODEL)
    if args.frame_size:
        options["frame_size"] = args.frame_size
    if args.core:
        options["core"] = args.core
    torch.manual_seed(0)
    return VideoModel.from_config(ModelConfig(**options)).to(device).eval()


def serve_main(argv: list[str] | None = None) -> int:
    """``coldstream serve VIDEO... --streams N``; returns the exit code."""
    ap = argparse.ArgumentParser(
        prog="coldstream serve", description="Serve many video streams at once through one model (a stream engine)."
    )
    ap.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or live sources (URLs, devices)")
    ap.add_argument("--streams", type=int, default=0, help="streams to serve (default: one per VIDEO, cycled)")
    ap.add_argument("--slots", type=int, default=0, help="engine slots (default: --streams); extra streams wait")
    ap.add_argument("--checkpoint", default=None, help="a trained model (default: a small untrained CPU model)")
    ap.add_argument("--encoder-weights", default=None, help="the encoder's weights file, if not where training had it")
    ap.add_argument("--core", default=None, help="the default model's core (gmmix, mamba, rvmrnn, ...)")
    ap.add_argument("--frame-size", type=int, default=0, help="the default model's frame side (64)")
    ap.add_argument("--fps", type=float, default=0.0, help="pace every source at this rate, like a camera (0: free)")
    ap.add_argument("--stagger", type=float, default=0.0, help="seconds between one stream's join and the next's")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between live stats tables")
    ap.add_argument("--max-seconds", type=float, default=0.0, help="stop after this long (0: when all sources end)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: half the cores, on CPU)")
    ap.add_argument("--no-cuda-graph", action="store_true", help="run the step eagerly on CUDA too")
    ap.add_argument("--json", default=None, help="write the final per-stream stats to this file")
    args = ap.parse_args(argv)
    from coldstream.serve import StreamEngine, StreamServer

    streams = args.streams or len(args.videos)
    slots = args.slots or streams
    try:
        dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if args.threads or dev.type == "cpu":
            # The decoder threads need cores too: beside them, torch's spinning intra-op workers on every core made a
            # step 40x slower on a 2-core machine (docs/serve.md).
            torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) // 2))
        model = _model(args, dev)
        engine = StreamEngine(model, slots, device=dev, cuda_graph=False if args.no_cuda_graph else None)
        t0 = time.perf_counter()
        if engine.cuda_graph:
            engine.warmup()
        ready = time.perf_counter() - t0
        graphs = f", CUDA graphs for buckets {engine.buckets} captured in {ready:.1f} s" if engine.cuda_graph else ""
        print(
            f"serving {streams} streams from {len(args.videos)} source(s) on {dev}: {slots} slots{graphs}; "
            f"model {model.encoder.name} + {model.core.kind}, {model.frame_size}² frames"
        )
        server = StreamServer(engine, fps=args.fps)
        for i in range(streams):  # a URL (with ://) is opened as a live source, in its stream's thread
            server.add(args.videos[i % len(args.videos)], stream_id=f"s{i}", delay=i * args.stagger)
        start = last = time.perf_counter()

        def on_tick(srv: StreamServer) -> None:
            nonlocal last
            now = time.perf_counter()
            if now - last >= args.interval:
                last = now
                _table(engine, f"t={now - start:6.1f} s  {engine.steps} steps")

        stats = server.run(on_tick=on_tick, max_seconds=args.max_seconds or None)
        took = time.perf_counter() - start
        _table(engine, f"final: {took:.1f} s, {engine.steps} steps, steps per bucket {engine.bucket_counts}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"streams": stats, "steps": engine.steps, "buckets": engine.bucket_counts}, f, indent=1)
        return 0
    except ColdstreamError as e:
        print(f"coldstream serve: {e}", file=sys.stderr)
        return 2


def _table(engine, title: str) -> None:
    from coldstream.serve import StreamStats

    print(f"\n{title}\n{StreamStats.header()}")
    for st in engine.stats.values():
        print(st.line())
    sys.stdout.flush()
