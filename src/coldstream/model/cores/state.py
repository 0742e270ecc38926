"""The recurrent state of a temporal core: preallocated fp32 tensors, updated in place at fixed addresses."""

from __future__ import annotations

import torch

from coldstream.errors import InputError

STATE_DTYPES = (torch.float32, torch.float64)


class CoreState:
    """Caller-owned recurrent state of one core for ``batch`` streams of ``tokens`` tokens each.

    Every tensor is batch-first (``[B, ...]``) and kept in fp32 (fp64 is allowed for gradient checks) whatever the
    compute dtype, so ``bf16`` autocast never rounds the memory. ``core.step`` and ``core(x, state)`` write into these
    tensors in place (``copy_`` / in-place kernels), so their addresses never change and a step can be captured in a
    CUDA graph. Streams are independent: ``reset_(mask)`` zeroes the streams where ``mask`` is True.

    Args:
        tensors: name -> tensor ``[B, ...]``.
        batch: B, the number of streams.
        tokens: N, the tokens per frame the state was built for.
        kind: the core kind that built it (checked by ``step``).
    """

    def __init__(self, tensors: dict[str, torch.Tensor], batch: int, tokens: int, kind: str):
        for name, t in tensors.items():
            if t.dtype not in STATE_DTYPES:
                raise InputError(f"state tensor {name!r} must be float32 (or float64), got {t.dtype}")
            if t.shape[0] != batch:
                raise InputError(f"state tensor {name!r} must have batch {batch} first, got shape {tuple(t.shape)}")
        self.tensors = tensors
        self.batch = batch
        self.tokens = tokens
        self.kind = kind

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.tensors.items())
        return f"CoreState(kind={self.kind!r}, batch={self.batch}, tokens={self.tokens}, {shapes})"

    @property
    def device(self) -> torch.device | None:
        for t in self.tensors.values():
            return t.device
        return None

    @property
    def dtype(self) -> torch.dtype:
        for t in self.tensors.values():
            return t.dtype
        return torch.float32

    def nbytes(self) -> int:
        """Bytes held by the state (all streams)."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    @torch.no_grad()
    def reset_(self, mask: torch.Tensor | None = None) -> CoreState:
        """Zero the state of the streams where ``mask`` ``[B]`` (bool) is True; all streams when ``mask`` is None.

        In place and branch-free (a multiply by the keep mask), so it can live inside a captured CUDA graph.
        """
        if mask is None:
            for t in self.tensors.values():
                t.zero_()
            return self
        if mask.shape != (self.batch,):
            raise InputError(
                f"reset mask must have shape [{self.batch}] (one flag per stream), got {tuple(mask.shape)}"
            )
        for t in self.tensors.values():
            keep = (~mask.to(device=t.device, dtype=torch.bool)).to(t.dtype)
            t.mul_(keep.view(self.batch, *([1] * (t.ndim - 1))))
        return self

    @torch.no_grad()
    def copy_(self, other: CoreState) -> CoreState:
        """Copy ``other``'s values into this state's tensors (addresses unchanged)."""
        if other.tensors.keys() != self.tensors.keys():
            raise InputError(f"cannot copy a state with tensors {sorted(other.tensors)} into {sorted(self.tensors)}")
        for k, t in self.tensors.items():
            t.copy_(other.tensors[k])
        return self

    def clone(self) -> CoreState:
        """A deep copy with fresh tensors."""
        return CoreState({k: v.clone() for k, v in self.tensors.items()}, self.batch, self.tokens, self.kind)
