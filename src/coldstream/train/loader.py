"""Batches for the training loop, prepared ahead of the step that needs them.

A background thread reads and collates the next ``depth`` batches (the feature cache is a memory map, so the reads
release the GIL) and, for a CUDA device, pins them, while the GPU runs the current step; the main thread then
copies a batch with ``non_blocking=True`` and casts it on the device. The order of batches is the caller's, so
training stays a function of (seed, epoch) and resumes exactly.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import default_collate

_DONE = object()


def to_device(x, device: torch.device, dtype: torch.dtype | None = None):
    """``x`` (a tensor, or a dict / list / tuple of them) on ``device``; floating tensors cast to ``dtype`` there,
    after the copy (a bf16 cache row crosses PCIe at half the bytes of its fp32 cast)."""
    if isinstance(x, torch.Tensor):
        x = x.to(device, non_blocking=True)
        return x.to(dtype) if dtype is not None and x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: to_device(v, device, dtype) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(to_device(v, device, dtype) for v in x)
    return x


def _pin(x):
    if isinstance(x, torch.Tensor):
        return x.pin_memory()
    if isinstance(x, dict):
        return {k: _pin(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_pin(v) for v in x)
    return x


class Prefetcher:
    """Iterate ``default_collate([dataset[i] for i in batch])`` for each index list of ``batches``, ``depth`` batches
    ahead on a background thread (pinned for a CUDA ``device``). ``depth=0`` reads each batch when it is asked for.
    An error in the thread is raised in the caller at the batch that failed; ``close()`` stops the thread."""

    def __init__(self, dataset, batches: Sequence[Sequence[int]], device: torch.device, depth: int = 2):
        self.dataset, self.batches = dataset, list(batches)
        self.pin = device.type == "cuda" and torch.cuda.is_available()
        self.depth = depth
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _make(self, indices: Sequence[int]):
        batch = default_collate([self.dataset[i] for i in indices])
        return _pin(batch) if self.pin else batch

    def _work(self) -> None:
        try:
            for indices in self.batches:
                item = self._make(indices)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as e:  # handed to the consumer, raised there
            self._queue.put(e)
            return
        self._queue.put(_DONE)

    def __iter__(self) -> Iterator:
        if self.depth == 0:
            for indices in self.batches:
                yield self._make(indices)
            return
        self._thread = threading.Thread(target=self._work, name="coldstream-prefetch", daemon=True)
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)
            self._thread = None
