"""The contract of a task readout under the streaming protocol: frame t reads only the core output of frame t."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from coldstream.errors import InputError
from coldstream.model.layers.attention import check_backend
from coldstream.registry import Registry

READOUTS = Registry("readout")
ReadoutState = dict[str, Any]


def stack_frames(outs: list) -> Any:
    """Stack per-frame outputs (tensors ``[B, ...]`` or dicts of them) along a new time axis 1."""
    if isinstance(outs[0], dict):
        return {k: torch.stack([o[k] for o in outs], dim=1) for k in outs[0]}
    return torch.stack(outs, dim=1)


class Readout(nn.Module):
    """Base of the five task readouts.

    * ``forward(o [B, T, N, D], **inputs)``: whole clip (frames batched where the readout is per-frame).
    * ``init_state(batch, device, **inputs)`` / ``step(o_t [B, N, D], state) -> (out_t, state)``: streaming; the
      state holds the task's per-stream extras (Waymo's previous box, the point query and the frame index) in
      preallocated tensors updated in place. ``reset_state(state, mask, **inputs)`` restarts the streams in ``mask``
      with new task inputs.
    * ``REFERENCE_RENAME``: ``(reference prefix, own prefix)``: a reference checkpoint key (``model.`` stripped)
      ``reference prefix + rest`` is this module's ``own prefix + rest`` (the key lists are in docs/model.md).

    Args:
        dim: the core width D the readout reads.
        attention: the backend of the readout's attention layers (``"sdpa"``, ``"xformers"``, ``"math"``).
    """

    task: ClassVar[str] = "base"
    streaming: ClassVar[bool] = True  # False: an offline readout, whole clips only
    REFERENCE_RENAME: ClassVar[tuple[str, str]] = ("", "")

    def __init__(self, dim: int, attention: str = "sdpa"):
        super().__init__()
        self.dim = dim
        self.attention = check_backend(attention)

    def _check(self, o: torch.Tensor, rank: int) -> None:
        layout = "[B, T, N, D]" if rank == 4 else "[B, N, D]"
        if not isinstance(o, torch.Tensor) or o.ndim != rank or o.shape[-1] != self.dim:
            shape = tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__
            raise InputError(f"{self.task} readout: expected core output {layout} with D={self.dim}, got {shape}")
        if rank == 4 and o.shape[1] == 0:
            raise InputError(f"{self.task} readout: the clip has T=0 frames")

    def stack_steps(self, outs: list, state: ReadoutState) -> Any:
        """Per-frame ``step`` outputs -> the clip layout of ``forward`` (time is axis 1 unless overridden)."""
        return stack_frames(outs)

    def init_state(self, batch: int, device: torch.device | str | None = None, **inputs) -> ReadoutState:
        return {}

    def reset_state(self, state: ReadoutState, mask: torch.Tensor, **inputs) -> ReadoutState:
        return state

    def step(self, o_t: torch.Tensor, state: ReadoutState) -> tuple[Any, ReadoutState]:
        raise NotImplementedError

    def frame(self, o: torch.Tensor) -> Any:
        """Per-frame readout of independent frames ``[F, N, D]`` (stateless readouts only)."""
        raise NotImplementedError

    def forward(self, o: torch.Tensor, **inputs) -> Any:
        """Whole clip: stateless readouts batch all B·T frames through ``frame``; stateful ones override."""
        self._check(o, 4)
        b, t, n, d = o.shape
        out = self.frame(o.reshape(b * t, n, d))
        if isinstance(out, dict):
            return {k: v.reshape(b, t, *v.shape[1:]) for k, v in out.items()}
        return out.reshape(b, t, *out.shape[1:])


class StatelessReadout(Readout):
    """A readout whose frame t depends on nothing but the core output of frame t (SSv2, ScanNet, NuScenes)."""

    def step(self, o_t: torch.Tensor, state: ReadoutState) -> tuple[Any, ReadoutState]:
        self._check(o_t, 3)
        return self.frame(o_t), state
