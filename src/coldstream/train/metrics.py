"""Metrics: JSON-lines log and the running sums that evaluation reduces across ranks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from coldstream.atomic import atomic_write_text


class MetricsLog:
    """Append-only JSON lines (``metrics.jsonl``), one object per record, each with ``time`` and ``kind``.

    On resume, records past the resumed step are dropped (:meth:`truncate_after`), so the log of a killed-and-resumed
    run reads like the log of an uninterrupted one.
    """

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, **fields) -> dict:
        rec = {"kind": kind, "time": round(time.time(), 3), **fields}
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        return rec

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.exists():
            return
        keep = [r for r in self.read() if r.get("step", -1) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))


def accuracy_sums(logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """``{"correct": ..., "n": ...}`` for logits ``[B, C]`` and integer targets ``[B]``."""
    return {"correct": float((logits.argmax(-1) == target).sum()), "n": float(target.numel())}
