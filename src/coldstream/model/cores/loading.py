"""Load the reference repository's core weights (SPEC §3.9) into a core, strictly, with errors that say why."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from coldstream.model.cores.base import TemporalCore

REFERENCE_PREFIX = "sequential_core."
RVM_CORE_PREFIX = "rvm_core."


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


def _strip(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _short(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _load_strict(core: TemporalCore, sd: dict[str, torch.Tensor], ignore: tuple[str, ...] = ()) -> None:
    own = {k: v for k, v in core.state_dict().items() if not k.startswith(ignore)}
    missing = own.keys() - sd.keys()
    unexpected = sd.keys() - own.keys()
    if missing or unexpected:
        found = guess_core_kind(sd.keys())
        hint = ""
        if found is not None and found != core.kind:
            hint = f"this state dict is for a {found!r} core but the core is {core.kind!r}; "
        raise KeyError(
            f"{hint}reference state dict does not match the {core.kind!r} core: "
            f"missing {len(missing)} key(s) [{_short(missing)}], unexpected {len(unexpected)} key(s) "
            f"[{_short(unexpected)}]"
        )
    for k, v in sd.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(
                f"reference key {k!r} has shape {tuple(v.shape)} but the {core.kind!r} core (D={core.dim}) expects "
                f"{tuple(own[k].shape)}; was it built with another width or option?"
            )
    core.load_state_dict(sd, strict=not ignore)


def load_reference_state_dict(core: TemporalCore, state_dict: Mapping[str, torch.Tensor]) -> TemporalCore:
    """Load a reference core state dict (SPEC §3.9 keys, ``sequential_core.`` stripped, or all still carrying it).

    Strict: every key of the core must be present and every given key must belong to it, with equal shapes;
    otherwise a ``KeyError`` / ``ValueError`` lists the offending keys and, when the keys are recognisably from
    another core kind, names it. A core with an ``input_proj`` (not a reference layout) is refused.
    """
    if not isinstance(core, TemporalCore):
        raise TypeError(f"expected a core from build_core(...), got {type(core).__name__}")
    if core.input_proj is not None:
        raise ValueError(
            f"the {core.kind!r} core has an input projection ({core.in_dim} -> {core.dim}), which no reference "
            "checkpoint contains; build it without in_dim to load reference weights"
        )
    _load_strict(core, _strip(state_dict, REFERENCE_PREFIX))
    return core


def load_rvm_core_init(core: TemporalCore, state_dict: Mapping[str, torch.Tensor]) -> TemporalCore:
    """Initialise an ``rvmrnn`` core from RVM's pre-trained core (the RVM-init ablation, SPEC §8.3).

    ``state_dict`` is the reference converter's wrapper format (``scripts_support/load_rvm_ckpt.py``): keys
    ``rvm_core.*`` (other keys, e.g. the RVM encoder's, are ignored) in GatedTransformerCore's layout. The core's
    ``output_norm`` has no RVM counterpart and keeps its identity initialisation. Needs D = 1024 (RVM-L) or 768.
    """
    if core.kind != "rvmrnn":
        raise ValueError(f"the RVM core initialisation needs an 'rvmrnn' core, got {core.kind!r}")
    if any(k.startswith(RVM_CORE_PREFIX) for k in state_dict):
        sd = {k[len(RVM_CORE_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(RVM_CORE_PREFIX)}
    else:
        sd = dict(state_dict)
    if core.input_proj is not None:
        raise ValueError("the RVM core initialisation needs a core without input projection")
    _load_strict(core, sd, ignore=("output_norm.",))
    return core
