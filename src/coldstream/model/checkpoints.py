"""Checkpoint files <-> ``VideoModel``, every load strict (through ``coldstream.model.loading.load_strict``).

Two formats:

* **coldstream checkpoints** (``coldstream train``'s ``last.pt``, ``VideoModel.save``): a ``torch.save`` dict with
  ``format``, ``model_config`` (the :class:`ModelConfig`), ``model`` (the trainable state dict: the frozen encoder is
  not stored), ``encoder`` (its name and weights hash), ``meta`` (e.g. class names) and, from training, the
  optimizer, scheduler, RNG states and position in the run. Only plain types and tensors, so every file is read with
  ``torch.load(weights_only=True)``.
* **reference checkpoints** of the paper's code (PyTorch Lightning ``.ckpt``): under ``state_dict`` and prefixed
  ``model.``, only the trained parts: the enrichment (``encoder.interm_mlps.*``), the core (``sequential_core.*``)
  and the readout (per-task keys); the frozen backbone comes from the DINOv3 ``.pth`` and ``loss_fn.*`` (learned
  loss weights) is ignored. docs/model.md lists the keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from coldstream.atomic import atomic_write
from coldstream.config import from_dict, to_dict
from coldstream.errors import CheckpointError, ConfigError, InputTypeError, MissingFileError
from coldstream.model.config import ModelConfig
from coldstream.model.cores import TemporalCore
from coldstream.model.loading import load_strict
from coldstream.model.video_model import VideoModel

CHECKPOINT_FORMAT = "coldstream-2"
_OLD_FORMATS = ("coldstream-train-1",)

# ---------------------------------------------------------------------------------------------- coldstream format


def model_entries(model: nn.Module) -> dict:
    """The model's part of a checkpoint: its trainable state, the names and shapes of that state, and (for a
    ``VideoModel`` built from a config) the config and the identity of its frozen encoder."""
    state = model.trainable_state_dict() if isinstance(model, VideoModel) else model.state_dict()
    entries = {"model": state, "fingerprint": {k: list(v.shape) for k, v in state.items()}, "model_config": {}}
    if isinstance(model, VideoModel) and model.config is not None:
        entries["model_config"] = to_dict(model.config)
        entries["encoder"] = {"name": model.encoder.name, "weights_id": model.encoder.weights_id}
        entries["meta"] = dict(model.meta)
    return entries


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **state) -> Path:
    """Write ``model``'s entries and ``state`` (plain values and tensors) to ``path`` atomically (temporary file,
    fsync, rename): a crash leaves the previous checkpoint or the new one, never a torn file."""
    blob = {"format": CHECKPOINT_FORMAT, **model_entries(model), **state}
    return atomic_write(path, lambda f: torch.save(blob, f))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A coldstream checkpoint's contents (CPU tensors), read with ``weights_only=True``; a file that is not one
    raises ``CheckpointError`` saying what it is."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, a foreign pickle
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:300]})") from e
    fmt = blob.get("format") if isinstance(blob, dict) else None
    if fmt in _OLD_FORMATS:
        raise CheckpointError(f"{path} was written by an older coldstream ({fmt}); train it again with this version")
    if fmt != CHECKPOINT_FORMAT:
        if isinstance(blob, dict) and isinstance(blob.get("state_dict"), Mapping):
            raise CheckpointError(
                f"{path} is a reference (PyTorch Lightning) checkpoint, not a coldstream one: build the model "
                "(VideoModel.build(...)) and call coldstream.model.load_reference_checkpoint(model, path)"
            )
        raise CheckpointError(f"{path} is not a coldstream checkpoint (format {CHECKPOINT_FORMAT})")
    return blob


def config_difference(theirs: Mapping, mine: Mapping, label: str = "this model") -> str | None:
    """``None`` when two config dicts agree, else each differing field as ``field: checkpoint X, <label> Y``."""
    keys = sorted(set(theirs) | set(mine))
    diff = [f"{k}: checkpoint {theirs.get(k)!r}, {label} {mine.get(k)!r}" for k in keys if theirs.get(k) != mine.get(k)]
    return "; ".join(diff) or None


def load_model(
    path: str | os.PathLike,
    *,
    encoder_weights: str | os.PathLike | None = None,
    map_location: str | torch.device = "cpu",
) -> VideoModel:
    """``VideoModel.from_checkpoint``: rebuild the model from the checkpoint's config, then load its tensors."""
    blob = read_checkpoint(path)
    if not blob.get("model_config") or "encoder" not in blob:
        raise CheckpointError(f"{path} holds no VideoModel (it was written for another module)")
    try:
        config = from_dict(ModelConfig, dict(blob["model_config"]))
    except ConfigError as e:
        raise CheckpointError(f"{path}: its model config does not fit this version of coldstream ({e})") from e
    if encoder_weights is not None:
        config = ModelConfig(**{**vars(config), "encoder_weights": str(encoder_weights)})
    try:
        model = VideoModel.from_config(config)
    except MissingFileError as e:
        raise MissingFileError(
            f"{path}: the encoder weights it was trained with are not here ({e}); pass encoder_weights=PATH"
        ) from e
    _check_encoder(blob, model, path)
    model.load_trainable_state_dict(blob["model"], f"checkpoint {path}")
    model.meta = dict(blob.get("meta") or {})
    return model.to(map_location)


def _check_encoder(blob: dict, model: VideoModel, path) -> None:
    theirs = blob["encoder"]
    if theirs.get("weights_id") != model.encoder.weights_id:
        raise CheckpointError(
            f"{path} was trained on features of {theirs.get('weights_id')}, but the encoder built here has "
            f"{model.encoder.weights_id}: give the weights file it was trained with (encoder_weights=PATH)"
        )


def load_into(model: VideoModel, path: str | os.PathLike) -> dict:
    """``VideoModel.load_checkpoint``: strict load into an existing model; returns the checkpoint's ``meta``."""
    if not isinstance(model, VideoModel):
        raise InputTypeError(f"expected a VideoModel, got {type(model).__name__}")
    blob = read_checkpoint(path)
    if model.config is not None and blob.get("model_config"):
        diff = config_difference(blob["model_config"], to_dict(model.config))
        if diff:
            raise CheckpointError(f"checkpoint {path} comes from another model ({diff})")
    if "encoder" in blob:
        _check_encoder(blob, model, path)
    model.load_trainable_state_dict(blob["model"], f"checkpoint {path}")
    return dict(blob.get("meta") or {})


# ---------------------------------------------------------------------------------------------- reference format

MODEL_PREFIX = "model."
IGNORED_PREFIXES = ("loss_fn.",)
ENRICHMENT_PREFIX = "encoder.interm_mlps."
CORE_PREFIX = "sequential_core."
RVM_CORE_PREFIX = "rvm_core."
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


def guess_core_kind(keys) -> str | None:
    """The core kind a reference core state dict (prefix stripped) belongs to, from its key names."""
    keys = set(keys)
    if any(k.startswith("input_update.") or k.startswith("transformer.") for k in keys):
        return "rvmrnn"
    if any(k.startswith("gates.") for k in keys):
        return "gmmix"
    if any(k.startswith("spatial_blocks.") for k in keys):
        return "mambamix"
    if any(k.startswith("mamba_blocks.") for k in keys):
        return "mamba"
    if keys and all(k.startswith("output_norm.") for k in keys):
        return "identity"
    return None


def _guess_task(keys) -> str | None:
    for task, marker in _TASK_MARKERS.items():
        if any(k.startswith(marker) for k in keys):
            return task
    return None


def _strip(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def read_reference_checkpoint(
    path_or_state_dict: str | Path | Mapping, trusted: bool = False
) -> dict[str, torch.Tensor]:
    """The flat ``state_dict`` of a Lightning ``.ckpt`` / ``.pth`` file or mapping (``state_dict`` unwrapped).

    Files are read with ``torch.load(weights_only=True)``; a checkpoint that pickles other objects (Lightning
    callbacks, hyper-parameters) needs ``trusted=True`` (full unpickling: only for files you trust).
    """
    if isinstance(path_or_state_dict, Mapping):
        ckpt = path_or_state_dict
    else:
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise MissingFileError(f"checkpoint not found: {path}")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=not trusted)
        except Exception as err:
            if trusted:
                raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
            raise CheckpointError(
                f"{path}: cannot be read with weights_only=True ({err.__class__.__name__}: {err}); if you trust the "
                "file, pass trusted=True"
            ) from err
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else ckpt
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError("the checkpoint holds no flat state dict of tensors (under 'state_dict' or at the top)")
    return dict(sd)


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
    """Load a released task checkpoint of the paper's code into ``model``'s enrichment, core and readout.

    Strict: every trained tensor of the model must be present, every checkpoint key (but ``loss_fn.*``) must belong
    to it, shapes must agree; otherwise a ``CheckpointError`` lists the missing / unexpected / mis-shaped keys and
    names the core kind or task the checkpoint was made for when that differs. The frozen encoder is not touched.

    Returns:
        the number of tensors loaded into each part.
    """
    if not isinstance(model, VideoModel):
        raise InputTypeError(f"expected a VideoModel, got {type(model).__name__}")
    sd = read_reference_checkpoint(path_or_state_dict, trusted=trusted)
    mapped = from_reference_keys(model, sd)
    ref_keys = [k[len(MODEL_PREFIX) :] if k.startswith(MODEL_PREFIX) else k for k in sd]
    hints = []
    kind = guess_core_kind([k[len(CORE_PREFIX) :] for k in ref_keys if k.startswith(CORE_PREFIX)])
    if kind is not None and kind != model.core.kind:
        hints.append(f"the checkpoint is for a {kind!r} core but the model's core is {model.core.kind!r}")
    task = _guess_task(ref_keys)
    if task is not None and task != model.readout.task:
        hints.append(f"the checkpoint is for the {task!r} readout but the model's readout is {model.readout.task!r}")
    if any(k.startswith("encoder.") and not k.startswith(ENRICHMENT_PREFIX) for k in ref_keys):
        hints.append("it contains frozen-encoder weights, which task checkpoints do not (load them with the encoder)")
    hint = ("; ".join(hints) + ". ") if hints else ""
    parts = ("enrichment", "core", "readout")
    ignore = tuple({k.split(".")[0] for k in model.state_dict()} - set(parts))  # the encoder (and pos_embed)
    load_strict(model, mapped, "reference checkpoint", hint=hint, ignore=ignore)
    return {name: sum(k.startswith(name + ".") for k in mapped) for name in parts}


def load_reference_state_dict(core: TemporalCore, state_dict: Mapping[str, torch.Tensor]) -> TemporalCore:
    """Load a reference core state dict (``sequential_core.`` keys, stripped or all still carrying the prefix).

    Strict, with the message naming the core kind the keys were made for when it differs. A core with an
    ``input_proj`` (not a reference layout) is refused.
    """
    if not isinstance(core, TemporalCore):
        raise InputTypeError(f"expected a core from build_core(...), got {type(core).__name__}")
    if core.input_proj is not None:
        raise CheckpointError(
            f"the {core.kind!r} core has an input projection ({core.in_dim} -> {core.dim}), which no reference "
            "checkpoint contains; build it without in_dim to load reference weights"
        )
    sd = _strip(state_dict, CORE_PREFIX)
    load_strict(core, sd, f"the {core.kind!r} core (D={core.dim})", hint=_core_hint(sd, core))
    return core


def _core_hint(sd: Mapping, core: TemporalCore) -> str:
    found = guess_core_kind(sd.keys())
    if found is not None and found != core.kind:
        return f"this state dict is for a {found!r} core but the core is {core.kind!r}; "
    return ""


def load_rvm_core_checkpoint(
    model_or_core: VideoModel | TemporalCore, path_or_state_dict: str | Path | Mapping, trusted: bool = False
) -> TemporalCore:
    """The RVM-init ablation: initialise an ``rvmrnn`` core (or a model's) from RVM's pre-trained core.

    The input is the reference converter's wrapper format (``scripts_support/load_rvm_ckpt.py`` in the paper's code):
    keys ``rvm_core.*`` (other keys, e.g. the RVM encoder's, are ignored) in GatedTransformerCore's layout, or those
    keys without the prefix. The core's ``output_norm`` has no RVM counterpart and keeps its identity
    initialisation. Needs D = 1024 (RVM-L) or 768 (RVM-B).
    """
    core = model_or_core.core if isinstance(model_or_core, VideoModel) else model_or_core
    state_dict = read_reference_checkpoint(path_or_state_dict, trusted=trusted)
    if core.kind != "rvmrnn":
        raise CheckpointError(f"the RVM core initialisation needs an 'rvmrnn' core, got {core.kind!r}")
    if core.input_proj is not None:
        raise CheckpointError("the RVM core initialisation needs a core without input projection")
    if any(k.startswith(RVM_CORE_PREFIX) for k in state_dict):
        sd = {k[len(RVM_CORE_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(RVM_CORE_PREFIX)}
    else:
        sd = dict(state_dict)
    load_strict(core, sd, "the rvmrnn core (RVM initialisation)", ignore=("output_norm.",))
    return core
