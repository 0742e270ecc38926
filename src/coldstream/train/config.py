"""Configuration: frozen dataclasses, YAML files and ``key=value`` overrides; the resolved config is saved with outputs.

Every training run is described by one :class:`JobConfig`. ``load_config("configs/x.yaml", ["train.epochs=3"])``
reads the file, applies the overrides (values parsed as YAML, so ``3``, ``1e-3``, ``true``, ``[1, 2]`` work), and
refuses unknown keys with the list of known ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from coldstream.atomic import atomic_write_text


@dataclass(frozen=True)
class ModelConfig:
    """The trainable model on top of the frozen encoder."""

    encoder: str = "efficientnet_lite0"  # frozen encoder name (coldstream.model.build_encoder)
    encoder_weights: str | None = None  # local weights file; None = the encoder's packaged/default weights
    core: str = "gmmix"  # temporal core: rvmrnn | mamba | mambamix | gmmix | identity | meanpool
    core_dim: int = 128  # core width (an input projection maps the encoder width to it when they differ)
    core_layers: int = 1  # core depth (SPEC: 4; fewer for the 2-core CPU main job)
    core_options: dict = field(default_factory=dict)  # extra keyword arguments for build_core
    enrichment: str = "last"  # "mlp" (SPEC §2.4 per-depth BN+MLP, mean), "mean" (mean of depths), "last" (last depth)
    readout: str = "linear"  # classification readout: "linear" (mean-pooled tokens) or "attentive" (SPEC §5.1 probe)
    dropout: float = 0.0  # dropout on the readout input
    token_grid: int = 0  # > 0: average-pool the patch grid to token_grid x token_grid tokens before the core
    pos_embed: bool = True  # learned per-position token embedding before the core (conv features carry no position)


@dataclass(frozen=True)
class DataConfig:
    """Which clips: a built-in task or a dataset adapter."""

    task: str = "direction"  # direction | arrow | csv | ssv2
    root: str = ""  # data directory (built-in tasks: where packaged data is fetched; "" = default)
    labels: str = ""  # label file for csv/ssv2 (csv: video,label[,start,end]; ssv2: labels JSON)
    frames: int = 16  # clip length T
    size: int = 128  # frame side S after preprocessing
    clips_per_source: int = 32  # built-in tasks: clips generated per photo / video
    fps: float = 0.0  # target fps for decoded videos (0 = native)
    holdout: str = ""  # built-in tasks: "" = the task's default split (by source)
    options: dict = field(default_factory=dict)  # task-specific extras


@dataclass(frozen=True)
class CacheConfig:
    """Where and how frozen features are stored."""

    dir: str = ""  # cache directory ("" = <out_dir>/../cache/<task>)
    batch_size: int = 64  # encoder batch during extraction
    rebuild: bool = False  # delete a cache built under another key instead of refusing it
    enabled: bool = True  # False: run the encoder in the loop (for the benchmark)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with the SPEC §6 parameter groups and a cosine schedule with linear warm-up."""

    lr: float = 1e-3  # peak learning rate of the core/enrichment groups
    readout_lr: float | None = None  # peak learning rate of the readout group (None = lr)
    weight_decay: float = 0.05  # on matrices only; biases, norms and 1-D tensors get 0
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


@dataclass(frozen=True)
class JobConfig:
    """One training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class ConfigError(ValueError):
    """A config file or override that does not fit the dataclasses."""


def _coerce(tp, value, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(args[0], value, where)
    if origin is tuple:
        return tuple(value)
    if tp in (int, float) and isinstance(value, str):
        try:  # YAML 1.1 reads "3e-4" as a string
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls, d: dict, where: str = ""):
    """Build dataclass ``cls`` from a nested dict, refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in {where or cls.__name__}; known: {sorted(names)}")
    kw = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in d.items()}
    return cls(**kw)


def to_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    return json.loads(json.dumps(d))  # tuples -> lists, for YAML


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` strings to a nested dict (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.epochs=3)")
        key, raw = item.split("=", 1)
        node = d
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return d


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None, cls=JobConfig):
    """Read a YAML file (optional), apply overrides, return the frozen config."""
    d: dict = {}
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        d = yaml.safe_load(p.read_text()) or {}
    apply_overrides(d, list(overrides or []))
    return from_dict(cls, d)


def save_config(cfg, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
