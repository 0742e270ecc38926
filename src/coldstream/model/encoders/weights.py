"""Reading weights files (``.pth`` / ``.pt`` / ``.safetensors``) and identifying weights by their content."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from coldstream.errors import CheckpointError, MissingFileError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain state dict from a ``.pth``/``.pt`` (torch.save) or ``.safetensors`` file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        size = path.stat().st_size
        raise CheckpointError(
            f"cannot read weights file {path} ({size} bytes): it looks truncated or corrupt "
            f"(expected a torch.save'd state dict or a safetensors file; {type(e).__name__}: {e})"
        ) from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} does not hold a plain state dict of tensors (got {type(sd).__name__})")
    return sd


def state_dict_digest(module: nn.Module) -> str:
    """A content hash of a module's weights (16 hex digits): identifies the weights in cache keys."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(str(v.dtype).encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
