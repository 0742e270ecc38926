"""The one strict state-dict loader: every weights file and checkpoint coldstream loads goes through
:func:`load_strict`, so every mismatch reads the same way and raises :class:`~coldstream.errors.CheckpointError`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from coldstream.errors import CheckpointError


def short_list(keys: Iterable[str], limit: int = 8) -> str:
    """``[a, b, ... and N more]`` of the sorted keys (messages stay readable for big mismatches)."""
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + more + "]"


def mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str | None:
    """``None`` when ``given`` has exactly the keys and shapes of ``expected``, else what differs, in one line."""
    missing = expected.keys() - given.keys()
    unexpected = given.keys() - expected.keys()
    misshaped = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(given[k].shape)}"
        for k in sorted(expected.keys() & given.keys())
        if tuple(expected[k].shape) != tuple(given[k].shape)
    ]
    parts = [
        f"{title} {len(keys)} key(s) {short_list(keys)}"
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if keys
    ]
    return "; ".join(parts) or None


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    what: str,
    *,
    hint: str = "",
    ignore: tuple[str, ...] = (),
) -> None:
    """``module.load_state_dict(state_dict, strict=True)``, but a mismatch raises ``CheckpointError`` naming every
    missing, unexpected and mis-shaped key (with both shapes) at once.

    Args:
        what: what is being loaded, for the message (e.g. ``"dinov3_vits16 (official DINOv3 layout)"``).
        hint: prepended to the message when the keys do not match (e.g. which model the file was made for).
        ignore: prefixes of the module's own keys that the state dict need not (and must not) provide.
    """
    expected = {k: v for k, v in module.state_dict().items() if not k.startswith(ignore)}
    problem = mismatch(expected, state_dict)
    if problem is not None:
        raise CheckpointError(f"{hint}{what}: the weights do not match ({problem})")
    module.load_state_dict(dict(state_dict), strict=not ignore)
