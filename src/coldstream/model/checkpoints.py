"""Reference (PyTorch Lightning) task checkpoints <-> ``VideoModel`` (SPEC §3.9 and the key lists of SPEC §5).

A released ``.ckpt`` holds, under ``state_dict`` and prefixed ``model.``, only the trained parts: the enrichment
(``encoder.interm_mlps.*``), the core (``sequential_core.*``) and the readout (per-task keys); the frozen backbone
comes from the DINOv3 ``.pth`` and ``loss_fn.*`` (learned loss weights) is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from coldstream.model.cores import guess_core_kind, load_rvm_core_init
from coldstream.model.video_model import VideoModel

MODEL_PREFIX = "model."
IGNORED_PREFIXES = ("loss_fn.",)
ENRICHMENT_PREFIX = "encoder.interm_mlps."
CORE_PREFIX = "sequential_core."
# the enrichment's reference names (dino_wrappers._IntermFeatMLP) -> coldstream.model.encoders.enrichment names
_ENRICHMENT_RENAME = {"bn": "norm", "mlp.0": "fc1", "mlp.2": "fc2"}
_ENRICHMENT_KEY = re.compile(r"^(\d+)\.(bn|mlp\.0|mlp\.2)\.(.+)$")
# reference key prefixes that identify a task's readout (for error messages)
_TASK_MARKERS = {
    "waymo": "bbox_head.",
    "pt": "prediction_head.",
    "nuscenes": "pose_head.",
    "scannet": "readout.readout.",
    "ssv2": "readout.classifier.",
}


class CheckpointError(KeyError):
    """A checkpoint that does not fit the model; the message lists the offending keys."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


def _short(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + more + "]"


def read_checkpoint(path_or_state_dict: str | Path | Mapping, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The flat ``state_dict`` of a Lightning ``.ckpt`` / ``.pth`` file or mapping (``state_dict`` unwrapped).

    Files are read with ``torch.load(weights_only=True)``; a checkpoint that pickles other objects (Lightning
    callbacks, hyper-parameters) needs ``trusted=True`` (full unpickling: only for files you trust).
    """
    if isinstance(path_or_state_dict, Mapping):
        ckpt = path_or_state_dict
    else:
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=not trusted)
        except Exception as err:
            if trusted:
                raise
            raise ValueError(
                f"{path}: cannot be read with weights_only=True ({err.__class__.__name__}: {err}); if you trust the "
                "file, pass trusted=True"
            ) from err
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else ckpt
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError("the checkpoint holds no flat state dict of tensors (under 'state_dict' or at the top level)")
    return dict(sd)


def _guess_task(keys) -> str | None:
    for task, marker in _TASK_MARKERS.items():
        if any(k.startswith(marker) for k in keys):
            return task
    return None


def from_reference_keys(model: VideoModel, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename reference keys (``model.`` optional, ``loss_fn.*`` dropped) to this model's ``state_dict`` names.

    Keys that fit no part are kept under their reference name, so a strict comparison reports them.
    """
    out: dict[str, torch.Tensor] = {}
    ref_prefix, own_prefix = model.readout.REFERENCE_RENAME
    for key, value in state_dict.items():
        k = key[len(MODEL_PREFIX) :] if key.startswith(MODEL_PREFIX) else key
        if k.startswith(IGNORED_PREFIXES):
            continue
        if k.startswith(ENRICHMENT_PREFIX):
            m = _ENRICHMENT_KEY.match(k[len(ENRICHMENT_PREFIX) :])
            name = f"enrichment.mlps.{m[1]}.{_ENRICHMENT_RENAME[m[2]]}.{m[3]}" if m else k
        elif k.startswith(CORE_PREFIX):
            name = "core." + k[len(CORE_PREFIX) :]
        elif k.startswith(ref_prefix):
            name = "readout." + own_prefix + k[len(ref_prefix) :]
        else:
            name = k
        out[name] = value
    return out


def to_reference_state_dict(model: VideoModel) -> dict[str, torch.Tensor]:
    """The trained parts of ``model`` under the reference checkpoint names (``model.`` prefix not added)."""
    out: dict[str, torch.Tensor] = {}
    ref_prefix, own_prefix = model.readout.REFERENCE_RENAME
    inverse = {v: k for k, v in _ENRICHMENT_RENAME.items()}
    for k, v in model.enrichment.state_dict().items():
        m = re.match(r"^mlps\.(\d+)\.(norm|fc1|fc2)\.(.+)$", k)
        out[f"{ENRICHMENT_PREFIX}{m[1]}.{inverse[m[2]]}.{m[3]}" if m else "enrichment." + k] = v
    for k, v in model.core.state_dict().items():
        out[CORE_PREFIX + k] = v
    for k, v in model.readout.state_dict().items():
        out[ref_prefix + k[len(own_prefix) :] if k.startswith(own_prefix) else k] = v
    return out


def load_reference_checkpoint(
    model: VideoModel, path_or_state_dict: str | Path | Mapping, trusted: bool = False
) -> dict[str, int]:
    """Load a released task checkpoint (SPEC §3.9, §5) into ``model``'s enrichment, core and readout.

    Strict: every trained tensor of the model must be present, every checkpoint key (but ``loss_fn.*``) must belong
    to it, shapes must agree; otherwise a ``CheckpointError`` lists the missing / unexpected keys and names the core
    kind or task the checkpoint was made for when that differs. The frozen encoder is not touched.

    Returns:
        the number of tensors loaded into each part.
    """
    if not isinstance(model, VideoModel):
        raise TypeError(f"expected a VideoModel, got {type(model).__name__}")
    sd = read_checkpoint(path_or_state_dict, trusted=trusted)
    mapped = from_reference_keys(model, sd)
    parts: dict[str, nn.Module] = {"enrichment": model.enrichment, "core": model.core, "readout": model.readout}
    own = {f"{name}.{k}": v for name, part in parts.items() for k, v in part.state_dict().items()}
    missing, unexpected = own.keys() - mapped.keys(), mapped.keys() - own.keys()
    if missing or unexpected:
        ref_keys = [k[len(MODEL_PREFIX) :] if k.startswith(MODEL_PREFIX) else k for k in sd]
        hints = []
        core_keys = [k[len(CORE_PREFIX) :] for k in ref_keys if k.startswith(CORE_PREFIX)]
        kind = guess_core_kind(core_keys)
        if kind is not None and kind != model.core.kind:
            hints.append(f"the checkpoint is for a {kind!r} core but the model's core is {model.core.kind!r}")
        task = _guess_task(ref_keys)
        if task is not None and task != model.readout.task:
            hints.append(
                f"the checkpoint is for the {task!r} readout but the model's readout is {model.readout.task!r}"
            )
        if any(k.startswith("encoder.") and not k.startswith(ENRICHMENT_PREFIX) for k in ref_keys):
            hints.append(
                "it contains frozen-encoder weights, which task checkpoints do not (load them with the encoder)"
            )
        hint = ("; ".join(hints) + ". ") if hints else ""
        raise CheckpointError(
            f"{hint}checkpoint does not match the model: missing {len(missing)} key(s) {_short(missing)}, "
            f"unexpected {len(unexpected)} key(s) {_short(unexpected)}"
        )
    for k, v in mapped.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(
                f"checkpoint tensor for {k!r} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)} "
                "(another encoder size, core width or task option?)"
            )
    counts = {}
    for name, part in parts.items():
        sub = {k[len(name) + 1 :]: v for k, v in mapped.items() if k.startswith(name + ".")}
        part.load_state_dict(sub, strict=True)
        counts[name] = len(sub)
    return counts


def load_rvm_core_checkpoint(
    model_or_core: VideoModel | nn.Module, path_or_state_dict: str | Path | Mapping, trusted: bool = False
) -> nn.Module:
    """The RVM-init ablation (SPEC §8.3): initialise an ``rvmrnn`` core (or a model's) from the reference
    converter's RVM checkpoint (``rvm_core.*`` keys, ``scripts_support/load_rvm_ckpt.py`` wrapper format)."""
    core = model_or_core.core if isinstance(model_or_core, VideoModel) else model_or_core
    return load_rvm_core_init(core, read_checkpoint(path_or_state_dict, trusted=trusted))
