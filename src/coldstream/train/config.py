"""``JobConfig``: one training run (the model, its data, the feature cache, the optimiser, the loop), read from a
YAML file plus ``key=value`` overrides (``coldstream.config``) and saved as ``<out_dir>/config.yaml``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from coldstream.config import load_config
from coldstream.model.config import ModelConfig


@dataclass(frozen=True)
class DataConfig:
    """Which clips: a task of ``coldstream.train.tasks.TASKS`` (built-in task or dataset adapter)."""

    task: str = "direction"  # direction | arrow | csv | ssv2 | box_tracking | point_tracking | depth | camera_pose
    root: str = ""  # data directory (built-in tasks: where packaged data is fetched; "" = default; dense tasks: videos)
    labels: str = ""  # label file for csv/ssv2 (csv: video,label[,start,end]; ssv2: labels JSON)
    frames: int = 16  # clip length T
    clips_per_source: int = 32  # built-in tasks: clips generated per photo / video
    fps: float = 0.0  # target fps for decoded videos (0 = native; dense tasks take their annotated frames)
    holdout: str = ""  # built-in tasks: "" = the task's default split (by source)
    options: dict = field(default_factory=dict)  # task-specific options (see each task's options dataclass)


@dataclass(frozen=True)
class CacheConfig:
    """Where and how frozen features are stored."""

    dir: str = ""  # cache directory ("" = <out_dir>/../cache/<task>)
    batch_size: int = 64  # encoder batch during extraction
    rebuild: bool = False  # delete a cache built under another key instead of refusing it


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with decoupled weight decay on matrices only, and a cosine schedule with linear warm-up."""

    lr: float = 1e-3  # peak learning rate of the core/enrichment groups
    readout_lr: float | None = None  # peak learning rate of the readout group (None = lr)
    weight_decay: float = 0.05  # on matrices only; biases, norms, 1-D tensors and _no_weight_decay tensors get 0
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    warmup_frac: float = 0.1  # fraction of all steps spent warming up linearly from 0
    min_lr_frac: float = 0.0  # cosine floor as a fraction of the peak
    grad_clip: float = 1.0  # max global gradient norm (0 = off)


@dataclass(frozen=True)
class TrainConfig:
    """The loop."""

    epochs: int = 10  # passes over the training clips
    batch_size: int = 32  # global batch (split across ranks under torchrun)
    seed: int = 0  # everything random derives from this
    amp: str = "auto"  # "auto" (bf16 autocast on CUDA), "bf16", "off"
    deterministic: bool = True  # torch.use_deterministic_algorithms on CPU
    ckpt_every: int = 0  # also checkpoint every this many steps (0 = at the end of each epoch only)
    out_dir: str = "runs/default"  # metrics.jsonl, config.yaml, checkpoints
    resume: bool = True  # continue from out_dir/last.pt when it exists
    progress: bool = True  # progress bar
    device: str = "auto"  # "auto", "cpu", "cuda"
    loss_frames: int = 1  # classification: cross-entropy on each of the last this many frames (1 = last only)
    prefetch: int = 2  # batches read, collated (and pinned on CUDA) ahead on a background thread; 0 = in the loop
    log_every: int = 0  # read the losses back (a host sync) every this many steps; 0 = every step on CPU, 20 on CUDA
    eval_every: int = 1  # evaluate after every this many epochs, and after the last; 0 = after the last only


@dataclass(frozen=True)
class JobConfig:
    """One training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_job_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> JobConfig:
    """A :class:`JobConfig` from a YAML file (optional) and ``key=value`` overrides (e.g. ``train.epochs=3``)."""
    return load_config(JobConfig, path, overrides)
