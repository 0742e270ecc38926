"""Reading weights files (``.pth`` / ``.pt`` / ``.safetensors``) and strict loading with errors that name every key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn


class WeightsError(ValueError):
    """A weights file is missing, unreadable, or does not match the architecture."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain state dict from a ``.pth``/``.pt`` (torch.save) or ``.safetensors`` file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        size = path.stat().st_size
        raise WeightsError(
            f"cannot read weights file {path} ({size} bytes): it looks truncated or corrupt "
            f"(expected a torch.save'd state dict or a safetensors file; {type(e).__name__}: {e})"
        ) from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path} does not hold a plain state dict of tensors (got {type(sd).__name__})")
    return sd


def load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)``, but the error lists every missing, unexpected and
    mis-shaped key at once, with the expected shapes."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(state_dict[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or misshaped:
        lines = [f"weights do not match {what} ({len(expected)} tensors expected, {len(state_dict)} given):"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                lines.append(f"  {len(keys)} {title}: " + ", ".join(keys))
        raise WeightsError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)


def state_dict_digest(module: nn.Module) -> str:
    """A content hash of a module's weights (16 hex digits): identifies the weights in cache keys."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(str(v.dtype).encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
