"""The stream engine: a fixed pool of S stream slots served by one ``VideoModel``, one batched step per tick.

Streams join and leave at any frame. Every :meth:`StreamEngine.step` takes the frames that arrived (at most one per
stream), pads them to the smallest batch-size bucket that holds them, and runs encoder + enrichment + core step +
readout once for all of them: the per-slot recurrent state is gathered from the pool into a bucket-sized working
state, stepped, and scattered back. On CUDA each bucket is one captured CUDA graph (``CUDAGraphRunner``, the graphs
sharing one memory pool); on the CPU the same function runs eagerly. Design and limits: ``docs/serve.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Mapping
from typing import Any

import torch

from coldstream.errors import InputError
from coldstream.model.cores.state import CoreState
from coldstream.model.cuda_graph import CUDAGraphRunner
from coldstream.model.streaming import run_options
from coldstream.model.video_model import StreamState, VideoModel
from coldstream.serve.stats import StreamStats

log = logging.getLogger("coldstream.serve")


class EngineFullError(InputError):
    """Every slot of the engine holds a stream."""


def default_buckets(slots: int) -> tuple[int, ...]:
    """Powers of two below ``slots``, then ``slots`` itself: 1, 2, 4, ..., S."""
    if slots < 1:
        raise InputError(f"an engine needs at least one slot, got slots={slots}")
    out = [1 << k for k in range(slots.bit_length()) if 1 << k < slots]
    return (*out, slots)


def _rows(out: Any, n: int) -> list:
    """Split a batched output (a tensor ``[B, ...]`` or a dict of them) into its first ``n`` rows."""
    if isinstance(out, dict):
        return [{k: v[i] for k, v in out.items()} for i in range(n)]
    return [out[i] for i in range(n)]


def _finite_rows(out: Any, n: int) -> torch.Tensor:
    """``[n]`` bool: the rows of an output whose every value is finite."""
    parts = out.values() if isinstance(out, dict) else [out]
    ok = torch.ones(n, dtype=torch.bool, device=next(iter(parts)).device)
    for v in parts:
        if v.is_floating_point():
            ok &= torch.isfinite(v[:n].reshape(n, -1)).all(1)
    return ok


class StreamEngine:
    """``engine.join()`` -> a stream id; ``outs = engine.step({id: frame, ...})``; ``engine.leave(id)``.

    Args:
        model: the model, in eval mode; ``model.frame_size`` set (frames are ``[3, S, S]``, preprocessed as the
            encoder expects: ``coldstream.io`` sources with ``output="float"`` give them).
        slots: S, the most streams served at once.
        device: where the model runs (default: the model's).
        buckets: the batch sizes a step may run at (default 1, 2, 4, ..., S); a step of n frames runs at the
            smallest bucket >= n, the rows beyond n being padding that touches no stream's state.
        cuda_graph: capture one CUDA graph per bucket (default: on CUDA devices).
        autocast: bf16 autocast (default: on CUDA).
        slot_kernels: step the core's state in the pool through the kernels' slot indices instead of gathering and
            scattering it (``core.step_slots``; default: on CUDA for the cores that have it, M, MMix and GMMix). On
            the CPU the kernels' reference path for slots is for tests only: it is slow, and its scatter lets a
            NaN in one slot's state spread to the others.
        task_inputs: default task inputs of one stream (batch 1: ``init_box`` ``[1, 4]``, ...), used where ``join``
            gets none.

    The state of every slot lives in one pool ``[S + 1, ...]`` (row S is a scratch row the padding rows read and
    write); ``step`` returns each stream's output row on the host (the outputs of a step are copied there
    together, which is also what makes latencies honest on a GPU). A stream whose frame is non-finite, has the wrong
    shape, or whose output is non-finite is dropped (``stats[id].status == "dropped"``, with the reason, logged);
    the other streams' rows never see its values.
    """

    def __init__(
        self,
        model: VideoModel,
        slots: int = 8,
        *,
        device: torch.device | str | None = None,
        buckets: tuple[int, ...] | None = None,
        cuda_graph: bool | None = None,
        autocast: bool | None = None,
        slot_kernels: bool | None = None,
        **task_inputs,
    ):
        self.model = model.eval()
        self.device, self.cuda_graph, self.autocast = run_options(model, device, cuda_graph, autocast, "serve")
        self.slots = slots
        self.buckets = tuple(sorted(set(buckets))) if buckets else default_buckets(slots)
        if self.buckets[0] < 1 or self.buckets[-1] != slots:
            raise InputError(f"buckets must be positive and end at slots={slots}, got {self.buckets}")
        cuda = self.device.type == "cuda"
        supports = model.core.supports_slots
        self.slot_kernels = (cuda and supports) if slot_kernels is None else slot_kernels
        if self.slot_kernels and not supports:
            raise InputError(f"slot_kernels=True needs a core with step_slots (M, MMix, GMMix), not {model.core.kind}")
        self.padding = -1 if self.slot_kernels else slots  # the slot index of a padding row
        s = model.frame_size
        self.frame_shape = (3, s, s)
        self.task_inputs = task_inputs
        self.scratch = slots  # the pool row padding rows use
        self.pool = model.init_state(slots + 1, device=self.device, **self._expand(task_inputs, slots + 1))
        # the working state of a tick (the readout's extras, and the core's unless the kernels step it in the pool)
        core = {} if self.slot_kernels else {k: torch.zeros_like(v[:slots]) for k, v in self.pool.core.tensors.items()}
        readout = model.readout.init_state(slots, self.device, **self._expand(task_inputs, slots))
        work = StreamState(CoreState(core, slots, self.pool.core.tokens, self.pool.core.kind), readout)
        self._views = {b: self._view(work, b) for b in self.buckets}
        self._pairs = {b: self._gathered(self._views[b]) for b in self.buckets}
        self._graphs: dict[int, CUDAGraphRunner] = {}
        self._graph_pool = None
        self._free = list(range(slots))
        self._slot: dict[str, int] = {}  # active stream id -> slot
        self.stats: dict[str, StreamStats] = {}  # every stream seen, active or not
        self._ids = itertools.count()
        self.steps = 0
        self.bucket_counts: dict[int, int] = dict.fromkeys(self.buckets, 0)

    # ------------------------------------------------------------------------------------------------- state
    @staticmethod
    def _expand(task_inputs: Mapping[str, Any], batch: int) -> dict:
        """One stream's task inputs (batch 1) as ``batch`` identical rows."""
        out = {}
        for k, v in task_inputs.items():
            if isinstance(v, torch.Tensor):
                if v.ndim == 0 or v.shape[0] != 1:
                    raise InputError(f"task input {k!r} must be one stream's, batch 1 first; got {tuple(v.shape)}")
                v = v.expand(batch, *v.shape[1:])
            out[k] = v
        return out

    def _gathered(self, view: StreamState) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(pool tensor, working rows) of everything a tick gathers and scatters back."""
        pairs = [(self.pool.core.tensors[k], v) for k, v in view.core.tensors.items()]
        pairs += [(self.pool.readout[k], v) for k, v in view.readout.items() if isinstance(v, torch.Tensor)]
        return pairs

    @staticmethod
    def _view(work: StreamState, b: int) -> StreamState:
        """The first ``b`` rows of the working state (views: fixed addresses for a captured graph)."""
        core = CoreState({k: v[:b] for k, v in work.core.tensors.items()}, b, work.core.tokens, work.core.kind)
        readout = {k: v[:b] if isinstance(v, torch.Tensor) else v for k, v in work.readout.items()}
        return StreamState(core, readout)

    def _reset_slot(self, slot: int, task_inputs: Mapping[str, Any]) -> None:
        for t in self.pool.core.tensors.values():
            t[slot].zero_()  # not reset_'s multiply by a keep mask: a dropped stream may have left NaN there
        mask = torch.zeros(self.slots + 1, dtype=torch.bool, device=self.device)
        mask[slot] = True
        inputs = self._expand(task_inputs or self.task_inputs, self.slots + 1)
        self.model.readout.reset_state(self.pool.readout, mask, **inputs)

    # ------------------------------------------------------------------------------------------------- streams
    @property
    def active(self) -> list[str]:
        """The ids of the streams being served, in the order they joined."""
        return list(self._slot)

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def join(self, stream_id: str | None = None, *, name: str = "", **task_inputs) -> str:
        """Give a new stream a slot (its recurrent state zeroed, its readout state from ``task_inputs``); returns its
        id. Raises ``EngineFullError`` when every slot is taken."""
        if not self._free:
            raise EngineFullError(f"all {self.slots} slots hold a stream; wait for one to leave")
        if stream_id is None:
            stream_id = f"s{next(self._ids)}"
            while stream_id in self.stats:
                stream_id = f"s{next(self._ids)}"
        stream_id = str(stream_id)
        if stream_id in self._slot:
            raise InputError(f"stream {stream_id!r} is already being served")
        slot = self._free.pop(0)
        self._reset_slot(slot, task_inputs)
        self._slot[stream_id] = slot
        self.stats[stream_id] = StreamStats(stream_id, slot, name=name)
        log.info("stream %s joined slot %d%s", stream_id, slot, f" ({name})" if name else "")
        return stream_id

    def leave(self, stream_id: str, reason: str = "left") -> StreamStats:
        """Free the stream's slot (a normal end: ``status == "left"``)."""
        return self._remove(stream_id, "left", reason)

    def drop(self, stream_id: str, reason: str) -> StreamStats:
        """Remove a failed stream: ``status == "dropped"``, the reason logged as a warning."""
        return self._remove(stream_id, "dropped", reason)

    def _remove(self, stream_id: str, status: str, reason: str) -> StreamStats:
        if stream_id not in self._slot:
            raise InputError(f"stream {stream_id!r} is not being served (active: {self.active})")
        slot = self._slot.pop(stream_id)
        self._free.append(slot)
        self._free.sort()
        st = self.stats[stream_id]
        st.end(status, reason)
        if status == "dropped":
            log.warning("stream %s dropped after %d frames: %s", stream_id, st.frames, reason)
        else:
            log.info("stream %s left after %d frames: %s", stream_id, st.frames, reason)
        return st

    # ------------------------------------------------------------------------------------------------- stepping
    def bucket(self, n: int) -> int:
        """The batch size a step of ``n`` frames runs at: the smallest bucket >= n."""
        for b in self.buckets:
            if b >= n:
                return b
        raise InputError(f"{n} frames in one step but the engine has {self.slots} slots")

    def _context(self):
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)

    def _run(self, frames: torch.Tensor, idx: torch.Tensor) -> Any:
        """Gather the slots ``idx`` into the working state, step them, scatter them back; the captured function.
        With ``slot_kernels`` the core steps its rows in the pool instead (padding rows: -1)."""
        b = frames.shape[0]
        state, pairs = self._views[b], self._pairs[b]
        rows = torch.where(idx < 0, self.scratch, idx) if self.slot_kernels else idx
        for pool, work in pairs:
            pool[self.scratch].zero_()  # padding rows start from zeros every tick: nothing accumulates there
            torch.index_select(pool, 0, rows, out=work)
        with torch.no_grad(), self._context():
            if self.slot_kernels:
                o = self.model.core.step_slots(self.model.frame_tokens(frames), self.pool.core, idx)
                out, _ = self.model.readout.step(o, state.readout)
            else:
                out, _ = self.model.step(frames, state)
        for pool, work in pairs:
            pool.index_copy_(0, rows, work)
        return out

    def _runner(self, b: int):
        if not self.cuda_graph:
            return self._run
        if b not in self._graphs:
            frames = torch.zeros(b, *self.frame_shape, device=self.device)
            idx = torch.full((b,), self.padding, dtype=torch.long, device=self.device)  # capture touches no stream
            g = CUDAGraphRunner(self._run, frames, idx, pool=self._graph_pool)
            self._graph_pool = g.pool
            self._graphs[b] = g
        return self._graphs[b]

    def warmup(self) -> None:
        """Capture every bucket's CUDA graph now (else each is captured the first time a step needs it)."""
        for b in self.buckets:
            self._runner(b)

    def step(self, frames: Mapping[str, torch.Tensor], arrivals: Mapping[str, float] | None = None) -> dict[str, Any]:
        """One tick: ``frames`` maps active stream ids to their next frame ``[3, S, S]`` (or ``[1, 3, S, S]``);
        streams without a frame this tick keep their state. Returns each served stream's output row (on the host).

        ``arrivals``: ``time.perf_counter()`` at which each frame arrived (default: now), for the latency stats.
        """
        now = time.perf_counter()
        arrivals = arrivals or {}
        ids, rows = [], []
        for sid, f in frames.items():
            if sid not in self._slot:
                raise InputError(f"stream {sid!r} is not being served (active: {self.active})")
            if isinstance(f, torch.Tensor) and f.ndim == 4 and f.shape[0] == 1:
                f = f[0]
            if not isinstance(f, torch.Tensor) or tuple(f.shape) != self.frame_shape or not f.is_floating_point():
                what = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                self.drop(sid, f"frame {self.stats[sid].frames}: expected a float frame {self.frame_shape}, got {what}")
                continue
            ids.append(sid)
            rows.append(f)
        if not ids:
            return {}
        batch = torch.stack([f.to(self.device, torch.float32, non_blocking=True) for f in rows])
        finite = torch.isfinite(batch).flatten(1).all(1).tolist()  # one host sync per tick
        if not all(finite):
            for sid, ok in zip(ids, finite, strict=True):
                if not ok:
                    self.drop(sid, f"frame {self.stats[sid].frames} has NaN or Inf values")
            keep = [i for i, ok in enumerate(finite) if ok]
            ids, batch = [ids[i] for i in keep], batch[keep]
            if not ids:
                return {}
        n = len(ids)
        b = self.bucket(n)
        slots = [self._slot[sid] for sid in ids] + [self.padding] * (b - n)
        idx = torch.tensor(slots, dtype=torch.long).to(self.device, non_blocking=True)
        if b > n:
            batch = torch.cat([batch, batch.new_zeros(b - n, *self.frame_shape)])
        out = self._runner(b)(batch, idx)
        ok = _finite_rows(out, n)
        host = {k: v[:n].float().cpu() for k, v in out.items()} if isinstance(out, dict) else out[:n].float().cpu()
        ok = ok.cpu().tolist()
        done = time.perf_counter()
        self.steps += 1
        self.bucket_counts[b] += 1
        result = {}
        for sid, row, good in zip(ids, _rows(host, n), ok, strict=True):
            if not good:
                self.drop(sid, f"frame {self.stats[sid].frames}: the output is not finite (state diverged)")
                continue
            self.stats[sid].record(done - arrivals.get(sid, now))
            result[sid] = row
        return result
