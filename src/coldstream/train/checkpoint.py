"""Training checkpoints: the model's entries (``coldstream.model.checkpoints``) plus everything a run needs to
continue exactly where it stopped (optimizer, scheduler, position in the run, every RNG state).

All of it is plain values and tensors (the NumPy RNG state is stored as a tensor), so checkpoints load with
``torch.load(weights_only=True)``. Loading into another model raises ``CheckpointError`` naming what differs.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn

from coldstream.errors import CheckpointError
from coldstream.model.checkpoints import config_difference, read_checkpoint, save_checkpoint
from coldstream.model.loading import load_strict
from coldstream.model.video_model import VideoModel

__all__ = ["load_model_weights", "read_checkpoint", "rng_state", "save_checkpoint", "set_rng_state", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def rng_state() -> dict:
    """Every RNG state of this process (torch, CUDA, Python, NumPy) as plain values and tensors."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of ``model`` (a ``VideoModel`` leaves its frozen encoder out)."""
    model = unwrap(model)
    return model.trainable_state_dict() if isinstance(model, VideoModel) else model.state_dict()


def load_model_weights(
    path: str | os.PathLike, model: nn.Module, model_config: dict | None = None, label: str = "this run"
) -> dict:
    """Check a checkpoint against ``model`` (and, when given, its ``model_config`` against the checkpoint's) and
    load its weights strictly; return the whole checkpoint."""
    blob = read_checkpoint(path)
    if model_config is not None and blob.get("model_config"):
        diff = config_difference(blob["model_config"], model_config, label)
        if diff:
            raise CheckpointError(f"checkpoint {path} comes from another model ({diff})")
    model = unwrap(model)
    if isinstance(model, VideoModel):
        model.load_trainable_state_dict(blob["model"], f"checkpoint {path}")
    else:
        load_strict(model, blob["model"], f"checkpoint {path}")
    return blob
