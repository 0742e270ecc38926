"""Per-stream serving statistics: frames served, frames/s since joining, frame latency percentiles."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

LATENCY_WINDOW = 10_000  # the last frames whose latency the percentiles cover (bounded memory on endless streams)


def percentile(values, q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation (NumPy's default); NaN when empty."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class StreamStats:
    """What one stream went through in a :class:`~coldstream.serve.StreamEngine`.

    ``latency`` of a frame: from its arrival (when its source delivered it, or when it was handed to
    ``engine.step`` without an arrival time) to its output being on the host, in seconds. ``fps``: frames served per
    second of wall time since the stream joined (until it left). ``status``: ``"active"``, ``"left"`` (its source
    ended or it was removed) or ``"dropped"`` (a failure: ``reason`` says which).
    """

    stream_id: str
    slot: int
    name: str = ""
    joined_at: float = field(default_factory=time.perf_counter)
    ended_at: float | None = None
    frames: int = 0
    status: str = "active"
    reason: str = ""
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def record(self, latency: float) -> None:
        self.frames += 1
        self.latencies.append(latency)

    def end(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason
        self.ended_at = time.perf_counter()

    @property
    def seconds(self) -> float:
        end = self.ended_at if self.ended_at is not None else time.perf_counter()
        return max(end - self.joined_at, 1e-9)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def p50_ms(self) -> float:
        return 1e3 * percentile(self.latencies, 50)

    @property
    def p99_ms(self) -> float:
        return 1e3 * percentile(self.latencies, 99)

    def as_dict(self) -> dict:
        return {
            "stream": self.stream_id,
            "name": self.name,
            "slot": self.slot,
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "p50_ms": round(self.p50_ms, 3) if self.latencies else None,
            "p99_ms": round(self.p99_ms, 3) if self.latencies else None,
            "status": self.status,
            "reason": self.reason,
        }

    def line(self) -> str:
        """One row of the live table ``coldstream serve`` prints."""
        lat = f"{self.p50_ms:8.1f} {self.p99_ms:8.1f}" if self.latencies else f"{'-':>8} {'-':>8}"
        tail = f"  {self.status}" + (f": {self.reason}" if self.reason else "")
        return f"{self.stream_id:<8} {self.frames:7d} {self.fps:8.1f} {lat}{tail}"

    @staticmethod
    def header() -> str:
        return f"{'stream':<8} {'frames':>7} {'fps':>8} {'p50 ms':>8} {'p99 ms':>8}  status"
