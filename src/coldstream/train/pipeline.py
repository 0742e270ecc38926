"""The data pipeline of a training run: a task's frames -> the frozen encoder, once -> the feature cache -> the
clips the trainer reads.

``coldstream train`` and ``coldstream eval`` run :func:`setup`; the main job (``coldstream.train.demo``) composes the
same pieces: :func:`cache_key` (the one builder of cache keys), :func:`open_cache`, :func:`prepare` and
:func:`build_model`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coldstream.errors import ConfigError
from coldstream.model import READOUTS, ModelConfig, VideoModel, build_encoder
from coldstream.model.encoders import FrozenEncoder
from coldstream.train.allocator import retain_freed_memory
from coldstream.train.cache import CacheKey, FeatureCache
from coldstream.train.clips import CachedClips
from coldstream.train.config import JobConfig
from coldstream.train.distributed import DistInfo, barrier
from coldstream.train.extract import ExtractReport, extract_features
from coldstream.train.tasks import TASKS, Task


def cache_key(encoder: FrozenEncoder, frame_size: int) -> CacheKey:
    """The key of ``encoder``'s features of frames preprocessed to ``frame_size``: everything that changes the stored
    features apart from the video itself (encoder, weights by content hash, preprocessing, feature shape)."""
    return CacheKey(
        encoder=encoder.name,
        weights_id=encoder.weights_id,
        preprocess={
            "size": frame_size,
            "mean": list(encoder.mean),
            "std": list(encoder.std),
            "resize": "short-side+center",
        },
        feature_shape=(encoder.num_depths, encoder.num_tokens(frame_size, frame_size), encoder.dim),
    )


def open_cache(
    root: str | os.PathLike, key: CacheKey, *, dist: DistInfo | None = None, rebuild: bool = False
) -> FeatureCache:
    """The feature cache at ``root`` under ``key``. The main rank checks the key (and rebuilds the cache when asked)
    before the other ranks open it; a cache built under another key raises ``StaleCacheError``."""
    dist = dist or DistInfo()
    if dist.is_main:
        FeatureCache(root, key, rebuild=rebuild)
    barrier(dist)
    return FeatureCache(root, key, rank=dist.rank)


@dataclass
class Prepared:
    """A task's data, encoded and ready for the trainer."""

    train: CachedClips  # training clips (every frame in the cache)
    eval: CachedClips  # evaluation clips
    class_names: list[str]
    skipped: list[tuple[str, str]]  # (source, reason): unreadable sources, skipped and counted
    extraction: ExtractReport  # what the extraction pass did


def prepare(
    task: Task,
    encoder: FrozenEncoder,
    cache: FeatureCache,
    *,
    batch_size: int = 64,
    dist: DistInfo | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> Prepared:
    """Encode the task's missing frames into ``cache`` (sharded over ranks), then keep the clips whose frames are
    all stored (an unreadable source's clips are left out; it is counted in ``skipped``)."""
    dist = dist or DistInfo()
    data = task.data(encoder)
    for note in data.notes:
        log(note)
    rep = extract_features(
        cache, data.jobs, encoder, batch_size=batch_size, rank=dist.rank, world=dist.world, device=dist.device,
        show_progress=show_progress and dist.is_main, desc=f"{task.data_cfg.task}: encode frames",
    )  # fmt: skip
    barrier(dist)
    cache.refresh()
    skipped = list(data.skipped) + rep.skipped
    log(f"feature cache {cache.root}: {rep.summary()}")
    if skipped:
        log(f"skipped {len(skipped)} unreadable video(s): " + "; ".join(f"{n} ({why})" for n, why in skipped[:5]))
    train = [it for it in data.train if cache.has(it.vkey, it.frames)]
    evaluation = [it for it in data.eval if cache.has(it.vkey, it.frames)]
    return Prepared(CachedClips(cache, train), CachedClips(cache, evaluation), data.class_names, skipped, rep)


def build_model(
    config: ModelConfig, encoder: FrozenEncoder, class_names: list[str], frames: int | None = None
) -> VideoModel:
    """The ``VideoModel`` of ``config`` over ``encoder``, its readout sized for the task's classes (a classification
    head), for the frame size (the depth head's output maps, unless ``readout_options.image_size`` says) and for the
    clip length ``frames`` (an offline readout's frames, unless ``readout_options.num_frames`` says); the class
    names travel with the model (``model.meta``) into its checkpoints."""
    if READOUTS.accepts(config.readout, "num_classes"):
        config = dataclasses.replace(
            config, readout_options={**config.readout_options, "num_classes": len(class_names)}
        )
    if READOUTS.accepts(config.readout, "image_size") and "image_size" not in config.readout_options:
        config = dataclasses.replace(
            config, readout_options={**config.readout_options, "image_size": config.frame_size}
        )
    if frames and READOUTS.accepts(config.readout, "num_frames") and "num_frames" not in config.readout_options:
        config = dataclasses.replace(config, readout_options={**config.readout_options, "num_frames": frames})
    model = VideoModel.from_config(config, encoder=encoder)
    model.meta["class_names"] = list(class_names)
    return model


def check_readout(task: Task, readout: str) -> None:
    """Refuse a readout the task cannot train: a dense task needs its own readout (streaming or offline),
    classification a class head."""
    name = READOUTS.canonical(readout)
    if task.readout is not None and READOUTS.get(name).task != READOUTS.get(task.readout).task:
        raise ConfigError(
            f"task {task.data_cfg.task!r} trains the {task.readout!r} readout (or {task.readout}_offline), not "
            f"{readout!r}: set model.readout={task.readout} (configs/{task.data_cfg.task}.yaml does)"
        )
    if task.readout is None and not READOUTS.accepts(name, "num_classes"):
        raise ConfigError(
            f"task {task.data_cfg.task!r} is classification: model.readout must be a classification head "
            f"(linear or ssv2), not {readout!r}"
        )


def setup(cfg: JobConfig, dist: DistInfo, log: Callable[[str], None] = print) -> tuple[Task, FrozenEncoder, Prepared]:
    """``coldstream train`` / ``eval``: the task, the frozen encoder on the run's device, and the prepared data."""
    if dist.device.type == "cpu":
        retain_freed_memory()  # from here on: reuse freed activations instead of faulting in fresh pages
    m = cfg.model
    task = TASKS.create(cfg.data.task, cfg.data, m.frame_size, seed=cfg.train.seed)
    check_readout(task, m.readout)
    encoder = build_encoder(m.encoder, weights=m.encoder_weights, attention=m.attention).to(dist.device)
    root = Path(cfg.cache.dir) if cfg.cache.dir else Path(cfg.train.out_dir).parent / "cache" / cfg.data.task
    cache = open_cache(root, cache_key(encoder, m.frame_size), dist=dist, rebuild=cfg.cache.rebuild)
    prepared = prepare(
        task, encoder, cache, batch_size=cfg.cache.batch_size, dist=dist, show_progress=cfg.train.progress,
        log=log if dist.is_main else (lambda *_: None),
    )  # fmt: skip
    return task, encoder, prepared
