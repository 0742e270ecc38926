"""Running a ``VideoModel`` over live streams frame by frame, on CUDA through one captured graph."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from coldstream.errors import InputError
from coldstream.model.cuda_graph import CUDAGraphRunner
from coldstream.model.video_model import VideoModel


def run_options(model: VideoModel, device, cuda_graph: bool | None, autocast: bool | None, what: str):
    """``(device, cuda_graph, autocast)`` for running ``model`` frame by frame: the model's device unless given; a
    CUDA graph and bf16 autocast on CUDA unless said otherwise. Refuses a model without ``frame_size`` and a graph
    off CUDA."""
    if model.frame_size is None:
        raise InputError(f"the model has no frame_size: build it with one to {what} frames")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    cuda = device.type == "cuda"
    cuda_graph = cuda if cuda_graph is None else cuda_graph
    if cuda_graph and not cuda:
        raise InputError(f"cuda_graph=True needs a CUDA device, got {device}")
    return device, cuda_graph, cuda if autocast is None else autocast


class StreamRunner:
    """``out = runner(frames [B, 3, S, S])``: one ``model.step`` for B streams, the state carried inside.

    On a CUDA device (``cuda_graph=None`` means: there) the whole step (encoder, enrichment, core step, readout) is
    captured once in a CUDA graph and replayed for every frame; the state lives at fixed addresses, so each replay
    continues it. The outputs are then the graph's static buffers, overwritten by the next call: clone what you keep.
    Inside a graph nothing may synchronise with the host, so the encoder's NaN check is off there.

    Args:
        model: the model, in eval mode on ``device``.
        batch: B, the number of streams.
        autocast: bf16 autocast (default: on CUDA).
        task_inputs: the streams' task inputs (``init_box``, ``query_points``, ...), as for ``model.init_state``.
    """

    def __init__(
        self,
        model: VideoModel,
        batch: int = 1,
        *,
        device: torch.device | str | None = None,
        cuda_graph: bool | None = None,
        autocast: bool | None = None,
        **task_inputs,
    ):
        self.model = model.eval()
        self.device, self.cuda_graph, self.autocast = run_options(model, device, cuda_graph, autocast, "stream")
        self.task_inputs = task_inputs
        self.state = model.init_state(batch, device=self.device, **task_inputs)
        s = model.frame_size
        self.frame_shape = (batch, 3, s, s)
        self._graph: CUDAGraphRunner | None = None

    def _context(self):
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)

    def _step(self, frames: torch.Tensor) -> Any:
        with torch.no_grad(), self._context():
            return self.model.step(frames, self.state)[0]

    def __call__(self, frames: torch.Tensor) -> Any:
        if tuple(frames.shape) != self.frame_shape:
            raise InputError(f"expected frames {self.frame_shape} (the model's frame size), got {tuple(frames.shape)}")
        if not self.cuda_graph:
            return self._step(frames.to(self.device))
        if self._graph is None:
            self._graph = CUDAGraphRunner(self._step, frames.to(self.device))  # warm-up and capture advance the state
            self.reset()
        return self._graph(frames)

    def reset(self, mask: torch.Tensor | None = None, **task_inputs) -> None:
        """Restart the streams in ``mask`` ``[B]`` (all when None) from a zero state, in place (a captured graph
        stays valid); ``task_inputs`` give the restarted streams' new task inputs (default: the first ones)."""
        batch = self.state.batch
        mask = torch.ones(batch, dtype=torch.bool, device=self.device) if mask is None else mask.to(self.device)
        self.state.core.reset_(mask)
        self.model.readout.reset_state(self.state.readout, mask, **(task_inputs or self.task_inputs))
