"""Fill a :class:`~coldstream.train.cache.FeatureCache` by running the frozen encoder over decoded frames once.

Work is given as :class:`FrameJob` s (a video key, the frame indices wanted, and a loader for those frames). Jobs are
split across ranks (``jobs[rank::world]``), frames already in the cache are skipped (so extraction resumes where it
stopped), and a job whose loader fails (unreadable video) is skipped and counted, never fatal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from coldstream.errors import DataError
from coldstream.train.cache import FeatureCache
from coldstream.train.progress import progress


@dataclass
class FrameJob:
    """Frames of one video to encode: ``load(indices)`` returns normalised float ``[T, 3, S, S]`` for them."""

    vkey: str  # cache key of the video under its sampling (cache.video_key)
    frames: list[int]  # frame indices wanted
    load: Callable[[list[int]], torch.Tensor]  # decoder + preprocessing
    name: str = ""  # for messages (the file path)


@dataclass
class ExtractReport:
    """What one extraction pass did."""

    encoded_frames: int = 0  # frames run through the encoder in this pass
    cached_frames: int = 0  # frames found already stored
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (video, reason) for unreadable videos
    seconds: float = 0.0  # wall time of the pass

    @property
    def frames_per_s(self) -> float:
        return self.encoded_frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        s = f"encoded {self.encoded_frames} frames ({self.frames_per_s:.1f} frames/s), {self.cached_frames} cached"
        if self.skipped:
            s += f"; skipped {len(self.skipped)} unreadable video(s): " + ", ".join(n for n, _ in self.skipped[:5])
            if len(self.skipped) > 5:
                s += ", ..."
        return s


@torch.no_grad()
def extract_features(
    cache: FeatureCache,
    jobs: Sequence[FrameJob],
    encoder: torch.nn.Module,
    *,
    batch_size: int = 64,
    rank: int = 0,
    world: int = 1,
    device: str | torch.device = "cpu",
    show_progress: bool = True,
    desc: str = "extract",
) -> ExtractReport:
    """Encode the frames of ``jobs[rank::world]`` missing from ``cache`` and store them (bf16).

    The encoder must provide ``features(x [B, 3, S, S]) -> [K, B, N, D]`` (frozen outputs).
    """
    report = ExtractReport()
    t0 = time.perf_counter()
    mine = list(jobs)[rank::world]
    todo: list[tuple[FrameJob, list[int]]] = []
    for job in mine:
        miss = cache.missing(job.vkey, job.frames)
        report.cached_frames += len(set(job.frames)) - len(miss)
        if miss:
            todo.append((job, miss))
    total = sum(len(m) for _, m in todo)
    bar = progress(total=total, desc=desc, unit="frame", enabled=show_progress and total > 0)
    buf_x: list[torch.Tensor] = []
    buf_id: list[tuple[str, int]] = []

    def run_batch() -> None:
        x = torch.cat(buf_x).to(device)
        feats = encoder.features(x)  # [K, B, N, D]
        feats = feats.permute(1, 0, 2, 3).to(torch.bfloat16).cpu()  # [B, K, N, D]
        i = 0
        while i < len(buf_id):
            j = i
            while j < len(buf_id) and buf_id[j][0] == buf_id[i][0]:
                j += 1
            cache.put(buf_id[i][0], [f for _, f in buf_id[i:j]], feats[i:j])
            i = j
        report.encoded_frames += len(buf_id)
        bar.update(len(buf_id))
        buf_x.clear()
        buf_id.clear()

    for job, miss in todo:
        try:
            x = job.load(miss)
            if x.shape[0] != len(miss):
                raise DataError(f"loader returned {x.shape[0]} frames for {len(miss)} requested")
        except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable", counted and reported
            report.skipped.append((job.name or job.vkey, f"{type(e).__name__}: {e}"))
            continue
        for k in range(0, len(miss), batch_size):
            buf_x.append(x[k : k + batch_size])
            buf_id.extend((job.vkey, f) for f in miss[k : k + batch_size])
            if len(buf_id) >= batch_size:
                run_batch()
    if buf_id:
        run_batch()
    cache.flush()
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report
