"""Point tracking on real photographs with exact labels: the direction task's moving crop windows, tracked.

A crop window slides across a real photo (:mod:`coldstream.train.tasks.direction`: the same trajectories, views,
split by photo, and the same cached frames). Where every photo pixel sits in every crop is known exactly, so each
clip gets ``points`` query points drawn uniformly in its first frame and their true tracks: position in crop
coordinates ([0, 1]², x right, y down) in every frame, visible while inside the crop, occluded once the window has
moved past them (and visible again if it comes back, as a reversed clip can). A clip and its reverse are both used,
as in direction.

The model gets the query points (at frame 0) and must say where each one is in every later frame: the content
moved by the window's motion since frame 0, which no single frame shows. Trained with the point-tracking readout
(``pt``) and judged as TAP-Vid is (average Jaccard, delta_avg, occlusion accuracy; ``PointTrackingObjective``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from coldstream.train.clips import ClipItem
from coldstream.train.config import TrainConfig
from coldstream.train.tasks.base import TASKS, Objective
from coldstream.train.tasks.dense import PointTrackingObjective
from coldstream.train.tasks.direction import DirectionOptions, DirectionTask, Trajectory, trajectory_key


@dataclass(frozen=True)
class CropTracksOptions(DirectionOptions):
    """``data.options``: the direction task's (they place the crops and share its cache), plus the queries."""

    points: int = 8  # query points per clip, drawn uniformly in the first frame (margin 5% of the side)


def track_items(
    trajs: list[Trajectory], size: int, traj_frames: int, clip_frames: int, step: int, points: int, seed: int = 0
) -> list[ClipItem]:
    """Every ``clip_frames`` window (started every ``step`` frames) of every trajectory, forward and reversed, with
    ``points`` queries at its frame 0 and their exact tracks (see the module docstring)."""
    items = []
    for t in trajs:
        key = trajectory_key(t, size, traj_frames)
        corner = np.asarray(t.positions(traj_frames), dtype=np.float64)  # [F, 2] crop top-left (x, y), pixels
        for a in range(0, traj_frames - clip_frames + 1, step):
            fwd = list(range(a, a + clip_frames))
            for frames in (fwd, fwd[::-1]):
                tag = f"{seed}:{key}:{frames[0]}:{frames[-1]}".encode()
                rng = np.random.default_rng(int(hashlib.sha256(tag).hexdigest()[:16], 16))
                query = rng.uniform(0.05, 0.95, size=(points, 2))  # (x, y) in the first crop, [0, 1]
                in_photo = corner[frames[0]] + query * size  # [P, 2] photo pixels
                tracks = (in_photo[:, None, :] - corner[frames][None]) / size  # [P, T, 2]
                visible = ((tracks >= 0) & (tracks < 1)).all(-1)  # [P, T]
                tracks = np.where(visible[..., None], tracks, 0.0)  # occluded positions are not scored
                label = {
                    "points": torch.tensor(tracks, dtype=torch.float32),
                    "visible": torch.from_numpy(visible),
                    "query_frames": torch.zeros(points, dtype=torch.long),
                    "valid": torch.ones(points, dtype=torch.bool),
                }
                inputs = {
                    "query_points": torch.tensor(query, dtype=torch.float32),
                    "query_frames": label["query_frames"],
                }
                items.append(ClipItem(key, tuple(frames), label, t.source, inputs))
    return items


@TASKS.register("crop_tracks")
class CropTracksTask(DirectionTask):
    """Point tracking on moving crops of real photos (see the module docstring); split by photo."""

    Options = CropTracksOptions
    readout = "pt"

    def clips(self, trajs: list[Trajectory]) -> list[ClipItem]:
        o = self.options
        return track_items(
            trajs, self.frame_size, self.traj_frames, self.data_cfg.frames, o.window_step, o.points, self.seed
        )

    def class_names(self) -> list[str]:
        return []

    def objective(self, class_names: list[str], train: TrainConfig) -> Objective:
        return PointTrackingObjective()
