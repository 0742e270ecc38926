"""The contract every temporal core follows: clip forward, preallocated state, in-place single-frame step."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from coldstream.errors import InputError, InputTypeError
from coldstream.model.cores.state import STATE_DTYPES, CoreState
from coldstream.model.layers.attention import check_backend
from coldstream.registry import Registry

CORES = Registry("core")


class TemporalCore(nn.Module):
    """Base of the temporal cores: ``[B, T, N, D_in] -> [B, T, N, D]``, strictly causal in t, zero initial state.

    Subclasses implement ``_state_shapes``, ``_forward_clip`` and ``_step``; this class owns the input checks, the
    optional input projection and the state bookkeeping, so every core fails the same way on bad input.

    Args:
        dim: core width D.
        in_dim: width of the incoming tokens; when it differs from ``dim`` a trainable ``input_proj``
            ``Linear(in_dim -> dim)`` is applied first (e.g. EfficientNet-Lite0's 1280 -> 256). The paper's cores
            never have one (their width is the encoder's).
        attention: the backend of the core's attention layers (``"sdpa"``, ``"xformers"``, ``"math"``; see
            ``coldstream.model.layers.attention``); cores without attention check it and keep it.
    """

    kind: ClassVar[str] = "base"
    supports_slots: ClassVar[bool] = False  # has step_slots: steps a pool of per-stream states in place by slot

    def __init__(self, dim: int, in_dim: int | None = None, attention: str = "sdpa"):
        super().__init__()
        if dim <= 0:
            raise InputError(f"core width must be positive, got {dim}")
        self.dim = dim
        self.attention = check_backend(attention)
        self.in_dim = in_dim if in_dim is not None else dim
        self.input_proj = nn.Linear(self.in_dim, dim) if self.in_dim != dim else None
        self.kernel_backend = "auto"

    def set_kernel_backend(self, backend: str) -> TemporalCore:
        """Choose the ``coldstream.kernels`` backend (``auto`` | ``triton`` | ``reference``) of every op in the core.

        ``auto`` runs Triton on CUDA tensors and the fp32 references elsewhere; an explicit backend never falls back.
        """
        if backend not in ("auto", "triton", "reference"):
            raise InputError(f"kernel backend must be 'auto', 'triton' or 'reference', got {backend!r}")
        for m in self.modules():
            if hasattr(m, "kernel_backend"):
                m.kernel_backend = backend
        return self

    def _state_shapes(self, batch: int, tokens: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _forward_clip(self, x: torch.Tensor, state: CoreState | None) -> tuple[torch.Tensor, dict | None]:
        raise NotImplementedError

    def _step(self, x_t: torch.Tensor, state: CoreState) -> torch.Tensor:
        raise NotImplementedError

    def init_state(
        self, batch: int, tokens: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> CoreState:
        """Zero state for ``batch`` streams of ``tokens`` tokens, allocated once (fp32 unless fp64 is asked for)."""
        if batch <= 0 or tokens <= 0:
            raise InputError(f"init_state needs batch > 0 and tokens > 0, got batch={batch}, tokens={tokens}")
        if dtype not in STATE_DTYPES:
            raise InputError(f"the recurrent state is kept in float32 (or float64 for checks), got dtype={dtype}")
        if device is None:
            p = next(self.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
        tensors = {
            name: torch.zeros(shape, device=device, dtype=dtype)
            for name, shape in self._state_shapes(batch, tokens).items()
        }
        return CoreState(tensors, batch, tokens, self.kind)

    def _check_input(self, x: torch.Tensor, rank: int, what: str) -> None:
        layout = "[B, T, N, D]" if rank == 4 else "[B, N, D]"
        if not isinstance(x, torch.Tensor):
            raise InputTypeError(f"{self.kind} core {what}: expected a tensor {layout}, got {type(x).__name__}")
        if x.ndim != rank:
            raise InputError(
                f"{self.kind} core {what}: expected a rank-{rank} tensor {layout} with D={self.in_dim}, "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.in_dim:
            raise InputError(
                f"{self.kind} core {what}: expected width D={self.in_dim} in the last dim of {layout}, "
                f"got shape {tuple(x.shape)}"
            )
        if rank == 4 and x.shape[1] == 0:
            raise InputError(f"{self.kind} core {what}: the clip has T=0 frames (shape {tuple(x.shape)}); need T >= 1")
        if x.shape[0] == 0 or x.shape[-2] == 0:
            raise InputError(f"{self.kind} core {what}: empty batch or token axis in shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise InputTypeError(f"{self.kind} core {what}: expected a floating-point tensor, got {x.dtype}")

    def _check_state(self, state: CoreState, x: torch.Tensor) -> None:
        if not isinstance(state, CoreState):
            raise InputTypeError(
                f"{self.kind} core: state must come from core.init_state(...), got {type(state).__name__}"
            )
        if state.kind != self.kind:
            raise InputError(f"{self.kind} core: got a state built by a {state.kind!r} core")
        batch, tokens = x.shape[0], x.shape[-2]
        if state.batch != batch or state.tokens != tokens:
            raise InputError(
                f"{self.kind} core: the state was built for batch={state.batch}, tokens={state.tokens} but the input "
                f"has batch={batch}, tokens={tokens}; call init_state({batch}, {tokens}, ...)"
            )
        expected = self._state_shapes(batch, tokens)
        for name, shape in expected.items():
            t = state.tensors.get(name)
            if t is None or tuple(t.shape) != shape:
                got = None if t is None else tuple(t.shape)
                raise InputError(f"{self.kind} core: state tensor {name!r} should have shape {shape}, got {got}")
        dev = state.device
        if dev is not None and dev != x.device:
            raise InputError(f"{self.kind} core: the state lives on {dev} but the input is on {x.device}")

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_proj is None else self.input_proj(x)

    def forward(self, x: torch.Tensor, state: CoreState | None = None) -> torch.Tensor:
        """Whole clip ``[B, T, N, D_in] -> [B, T, N, D]``.

        With ``state`` the clip continues from it (instead of zeros) and the final state is written back into it in
        place, detached (segments hand over values, not gradients: truncated BPTT at segment borders).
        """
        self._check_input(x, 4, "forward")
        if state is not None:
            self._check_state(state, x)
        y, final = self._forward_clip(self._project(x), state)
        if state is not None and final:
            with torch.no_grad():
                for name, value in final.items():
                    state.tensors[name].copy_(value)
        return y

    def step(
        self, x_t: torch.Tensor, state: CoreState, reset: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, CoreState]:
        """One frame ``[B, N, D_in] -> [B, N, D]``, updating ``state`` in place (same tensors, same addresses).

        ``reset`` ``[B]`` bool: streams whose state is zeroed before this frame (a new video starts there).
        """
        self._check_input(x_t, 3, "step")
        self._check_state(state, x_t)
        if reset is not None:
            state.reset_(reset)
        return self._step(self._project(x_t), state), state

    def _step_slots(self, x_t: torch.Tensor, pool: CoreState, slots: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step_slots(self, x_t: torch.Tensor, pool: CoreState, slots: torch.Tensor) -> torch.Tensor:
        """One frame ``[b, N, D_in] -> [b, N, D]`` of b streams whose states are rows ``slots`` ``[b]`` (int,
        distinct; -1: a padding row, which touches no slot and whose output is meaningless) of ``pool``, a state of
        any batch; the pool is updated in place, without copying the rows out and back (the kernels'
        ``state_batch_indices`` / ``conv_state_indices``). Only cores with ``supports_slots``: M, MMix, GMMix.
        """
        if not self.supports_slots:
            raise InputError(f"the {self.kind} core cannot step a pool of slots; gather its state rows instead")
        self._check_input(x_t, 3, "step_slots")
        if not isinstance(pool, CoreState) or pool.kind != self.kind or pool.tokens != x_t.shape[-2]:
            got = repr(pool) if isinstance(pool, CoreState) else type(pool).__name__
            raise InputError(f"{self.kind} core step_slots: the pool must be this core's state of N={x_t.shape[-2]} "
                             f"tokens, got {got}")  # fmt: skip
        if slots.shape != (x_t.shape[0],) or slots.is_floating_point():
            raise InputError(f"{self.kind} core step_slots: slots must be an integer tensor [{x_t.shape[0]}], got "
                             f"{slots.dtype} {tuple(slots.shape)}")  # fmt: skip
        return self._step_slots(self._project(x_t), pool, slots)
