"""Feeding a :class:`StreamEngine` from sources: one decoder thread per stream, one engine step per tick.

A source is a video path (opened with ``coldstream.io.open_video``; an address with ``://`` with ``open_stream``, as a
live source), an open ``coldstream.io`` source (``open_video`` / ``open_stream``: files, URLs, capture devices, pipes)
or any iterable of frames: uint8 ``[H, W, 3]`` as decoders give them, or preprocessed float ``[3, S, S]``. Each
stream's thread decodes into a small queue and stamps every frame's arrival time; the loop takes the oldest waiting
frame of every stream, preprocesses it on the engine's device, steps the engine once, and hands the outputs to a
callback. A source that ends leaves (a normal end); one that raises (a decode error) is dropped with the error as the
reason; neither disturbs the other streams.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from coldstream.errors import ColdstreamError
from coldstream.io.preprocess import preprocess_frames
from coldstream.serve.engine import StreamEngine

_END = object()


@dataclass
class _Failure:
    error: BaseException


class _Feed:
    """A daemon thread that reads one source into a bounded queue of ``(frame, arrival time)``."""

    def __init__(self, frames: Iterator[torch.Tensor], depth: int, fps: float, arrived: threading.Event, close=None):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self._frames = frames
        self._fps = fps
        self._arrived = arrived
        self._close = close
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                self._arrived.set()
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            for i, frame in enumerate(self._frames):
                if self._fps > 0:  # paced like a live camera: frame i is not available before t0 + i / fps
                    delay = t0 + i / self._fps - time.perf_counter()
                    if delay > 0:
                        self.stop.wait(delay)
                if self.stop.is_set() or not self._put((frame, time.perf_counter())):
                    return
            self._put(_END)
        except Exception as e:  # a decode error: the stream is dropped, the others go on
            self._put(_Failure(e))
        finally:
            if self._close is not None:
                try:
                    self._close()
                except Exception:
                    pass


def _frames_of(source, engine: StreamEngine) -> tuple[Iterator[torch.Tensor], str, Callable | None]:
    """(frames ``[3, S, S]``, a name, a close function) of a path, a ``coldstream.io`` source or an iterable."""
    from coldstream.io import StreamSource, open_stream, open_video

    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        opener = open_stream if "://" in path else open_video  # a URL is a live source, read once front to back

        def frames():  # opened in the feeder thread: a source that fails to open is dropped like a decode error
            with opener(path) as src:  # uint8: the loop preprocesses (no torch ops in the decoder threads)
                for chunk in src.stream(chunk_size=1):
                    yield chunk.data[0]

        return frames(), path, None
    if isinstance(source, StreamSource):
        return (c.data[0] for c in source.stream(chunk_size=1)), source.path, source.close
    if isinstance(source, Iterable):
        return iter(source), type(source).__name__, None
    from coldstream.errors import InputTypeError

    raise InputTypeError(f"a source is a video path, a coldstream.io source or an iterable of frames, got {source!r}")


class StreamServer:
    """Serve sources through one engine: ``server.add(source)`` (any time, also from a callback), ``server.run()``.

    Args:
        engine: the :class:`StreamEngine`.
        depth: frames each stream's thread may decode ahead (a file waits when its queue is full).
        fps: > 0 paces every source at this rate, like a live camera (for files: what a real-time feed would be);
            0 reads files as fast as they decode.
    """

    def __init__(self, engine: StreamEngine, *, depth: int = 2, fps: float = 0.0):
        self.engine = engine
        self.depth = depth
        self.fps = fps
        self._arrived = threading.Event()
        self._feeds: dict[str, _Feed] = {}
        self._pending: list[tuple[float, Any, str | None, dict]] = []
        self._lock = threading.Lock()

    def add(self, source, stream_id: str | None = None, *, delay: float = 0.0, **task_inputs) -> None:
        """Queue a source to join at the first tick, ``delay`` seconds from now or later, with a free slot."""
        with self._lock:
            self._pending.append((time.perf_counter() + delay, source, stream_id, task_inputs))
        self._arrived.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _admit(self) -> None:
        with self._lock:
            now = time.perf_counter()
            for item in list(self._pending):
                if not self.engine.free_slots:
                    break
                due, source, sid, inputs = item
                if due > now:
                    continue
                self._pending.remove(item)
                frames, name, close = _frames_of(source, self.engine)
                sid = self.engine.join(sid, name=name, **inputs)
                self._feeds[sid] = _Feed(frames, self.depth, self.fps, self._arrived, close)

    def _end(self, sid: str) -> None:
        feed = self._feeds.pop(sid)
        feed.stop.set()

    def close(self) -> None:
        """Stop every feeder thread and leave every stream."""
        for sid in list(self._feeds):
            self._end(sid)
            self.engine.leave(sid, "server closed")

    def _prepare(self, frame: torch.Tensor) -> torch.Tensor:
        """A decoder's uint8 ``[H, W, 3]`` frame -> the model's float ``[3, S, S]``, preprocessed on the engine's
        device; float frames pass as they are (the engine checks them)."""
        if frame.dtype != torch.uint8:
            return frame
        enc = self.engine.model.encoder
        x = frame[None].to(self.engine.device, non_blocking=True)
        return preprocess_frames(x, self.engine.model.frame_size, enc.mean, enc.std)[0]

    def tick(self, on_output: Callable[[str, Any], None] | None = None, timeout: float = 0.1) -> int:
        """Admit waiting sources, take one frame of every stream that has one, step once; returns the frames
        served (0 when none arrived within ``timeout`` seconds)."""
        self._arrived.clear()
        self._admit()
        frames, arrivals = {}, {}
        for sid, feed in list(self._feeds.items()):
            try:
                item = feed.queue.get_nowait()
            except queue.Empty:
                continue
            if item is _END:
                self._end(sid)
                self.engine.leave(sid, "end of stream")
            elif isinstance(item, _Failure):
                self._end(sid)
                self.engine.drop(sid, f"source failed: {type(item.error).__name__}: {item.error}")
            else:
                frame, arrivals[sid] = item
                try:
                    frames[sid] = self._prepare(frame)
                except ColdstreamError as e:  # a frame preprocessing refuses (wrong layout, NaN): only this stream
                    self._end(sid)
                    self.engine.drop(sid, f"bad frame {self.engine.stats[sid].frames}: {e}")
                    arrivals.pop(sid)
        if not frames:
            if self._feeds or self._pending:
                self._arrived.wait(timeout)
            return 0
        outs = self.engine.step(frames, arrivals)
        for sid in frames:
            if sid in self._feeds and sid not in self.engine.active:  # dropped by the engine (a bad frame)
                self._end(sid)
        if on_output is not None:
            for sid, out in outs.items():
                on_output(sid, out)
        return len(outs)

    def run(
        self,
        *,
        on_output: Callable[[str, Any], None] | None = None,
        on_tick: Callable[[StreamServer], None] | None = None,
        max_seconds: float | None = None,
    ) -> dict:
        """Tick until every source has ended (or ``max_seconds``); returns each stream's stats as a dict."""
        t0 = time.perf_counter()
        try:
            while self._feeds or self._pending:
                self.tick(on_output)
                if on_tick is not None:
                    on_tick(self)
                if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                    break
        finally:
            self.close()
        return {sid: st.as_dict() for sid, st in self.engine.stats.items()}
