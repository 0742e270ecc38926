"""Atomic checkpoints that know which model wrote them.

A checkpoint holds the trainable state (model, optimizer, scheduler), the position in the run (epoch, step, batch
within the epoch), every random-number-generator state, the resolved model config and a fingerprint of the model's
state-dict (names and shapes). Loading into another model raises :class:`CheckpointMismatchError` that names what
differs, instead of a wall of missing/unexpected keys.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from coldstream.atomic import atomic_write

CHECKPOINT_FORMAT = "coldstream-train-1"


class CheckpointMismatchError(RuntimeError):
    """The checkpoint was written by another model (architecture, encoder or config)."""


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def fingerprint(model: nn.Module) -> dict[str, list[int]]:
    """Names and shapes of the model's state-dict entries."""
    return {k: list(v.shape) for k, v in unwrap(model).state_dict().items()}


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, model_config: dict | None = None, **state) -> Path:
    """Write ``{model, fingerprint, model_config, **state}`` to ``path`` atomically (temp file, fsync, rename)."""
    blob = {
        "format": CHECKPOINT_FORMAT,
        "model": unwrap(model).state_dict(),
        "fingerprint": fingerprint(model),
        "model_config": model_config or {},
        **state,
    }
    return atomic_write(path, lambda f: torch.save(blob, f))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file (CPU tensors), with a clear error for files that are not coldstream checkpoints."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        raise CheckpointMismatchError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(f"{path} is not a coldstream training checkpoint (format {CHECKPOINT_FORMAT})")
    return blob


def check_compatible(blob: dict, model: nn.Module, model_config: dict | None, path: str | os.PathLike = "") -> None:
    """Raise :class:`CheckpointMismatchError` when ``blob`` was not written by this kind of model."""
    if model_config is not None and blob.get("model_config"):
        theirs = blob["model_config"]
        diff = {k: (theirs.get(k), v) for k, v in model_config.items() if k in theirs and theirs.get(k) != v}
        if diff:
            what = "; ".join(f"{k}: checkpoint {a!r}, this run {b!r}" for k, (a, b) in diff.items())
            raise CheckpointMismatchError(f"checkpoint {path} comes from another model ({what})")
    mine, theirs = fingerprint(model), blob["fingerprint"]
    if mine != theirs:
        missing = sorted(set(mine) - set(theirs))[:5]
        extra = sorted(set(theirs) - set(mine))[:5]
        shapes = [f"{k}: {theirs[k]} vs {mine[k]}" for k in mine if k in theirs and theirs[k] != mine[k]][:5]
        raise CheckpointMismatchError(
            f"checkpoint {path} does not fit this model: missing {missing}, unexpected {extra}, shape differences "
            f"{shapes}"
        )


def load_model_weights(path: str | os.PathLike, model: nn.Module, model_config: dict | None = None) -> dict:
    """Check and load the model weights of a checkpoint; return the whole blob."""
    blob = read_checkpoint(path)
    check_compatible(blob, model, model_config, path)
    unwrap(model).load_state_dict(blob["model"])
    return blob
