"""Capture a fixed-shape callable once in a CUDA graph and replay it (for the frozen encoder and streaming steps).

Inputs are copied into static buffers before each replay; the returned outputs are the graph's static buffers and are
overwritten by the next replay (clone them to keep them). Anything that synchronises with the host (a NaN check, a
``.item()``) must not run inside the captured callable; the frozen encoders skip their input check while capturing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from coldstream.errors import InputError


class CUDAGraphRunner:
    """``runner = CUDAGraphRunner(fn, *example_inputs)``, then ``out = runner(*inputs)`` replays ``fn``.

    ``pool``: the memory pool of another capture (``other.pool``) to share: graphs that are never replayed
    concurrently (e.g. one per batch-size bucket, replayed one after the other on one stream) then share their
    intermediate buffers instead of each holding its own. A shared pool lets one graph's replay overwrite another's
    outputs: read them before replaying the next.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], *example_inputs: torch.Tensor, warmup: int = 3, pool=None):
        if not all(isinstance(x, torch.Tensor) and x.is_cuda for x in example_inputs):
            raise InputError("CUDAGraphRunner needs CUDA tensors as example inputs")
        self.fn = fn
        self.static_inputs = tuple(x.clone() for x in example_inputs)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):  # warm-up on a side stream: allocator pools, cuBLAS handles, autotuning
                fn(*self.static_inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.static_output = fn(*self.static_inputs)
        self.pool = self.graph.pool()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.static_inputs):
            raise InputError(f"expected {len(self.static_inputs)} inputs, got {len(inputs)}")
        for static, x in zip(self.static_inputs, inputs, strict=True):
            if x.shape != static.shape or x.dtype != static.dtype:
                raise InputError(
                    f"a captured graph replays one shape: expected {tuple(static.shape)} {static.dtype}, "
                    f"got {tuple(x.shape)} {x.dtype}"
                )
            if x.data_ptr() != static.data_ptr():
                static.copy_(x)
        self.graph.replay()
        return self.static_output
