"""Dense tasks: box tracking, point tracking, depth and camera pose, trained from the feature cache on videos with
an annotation file next to each (the formats of :mod:`coldstream.train.tasks.formats`).

Data (``data.root``)
--------------------
Every video under ``data.root`` (extensions of ``VIDEO_EXTENSIONS``) whose annotation file sits next to it, named
after the video without its extension (``clip01.mp4`` -> ``clip01.boxes.json`` / ``.points.npz`` / ``.depth.npz`` /
``.poses.npz``). With ``train/`` and ``val/`` folders under ``data.root`` those are the splits; otherwise a hash of
each video's path holds out ``data.options.val_fraction`` of them (20%). Videos without an annotation file are
skipped and counted; an annotation file that breaks its format is an error naming the file and what is wrong.

Clips
-----
A clip is ``data.frames`` (T) *consecutive annotated frames* (the ``frames`` the annotation lists; for boxes, the
frames of one track): annotate the frames at the rate you want the model to see. Windows of T follow each other
without overlap, plus one aligned to the end when frames are left over; ``data.options.windows`` keeps the first
that many per video (per track for boxes; 0 = all). An annotation shorter than T repeats its last frame.
``data.fps`` is not used.

* **box_tracking**: one clip per window of a track; the model gets the track's box at the clip's first frame
  (``init_box``) and predicts a box per frame.
* **point_tracking**: each point is queried at its ``query_frame`` when that falls in the window, else at its first
  visible frame in the window (TAP-Vid's "first" protocol); points never visible in the window are left out, then
  the first ``data.options.max_points`` are kept and the clip is padded to that many queries with a mask (padding
  counts in neither loss nor metric).
* **depth**: the maps are read from disk when a clip is (not held in memory); they must be the preprocessed frame
  size (``model.frame_size``).
* **camera_pose**: targets are the relative poses t−1 -> t of the clip's frames (frame 0 has none).

Objectives (loss; metrics logged each epoch)
--------------------------------------------
* box tracking: L1 + generalised IoU (5 / 2); ``mean_iou`` = IoU per frame averaged over frames 1..T−1 of each
  clip (frame 0's box is given), then over clips.
* point tracking: Huber on pixel positions + visibility BCE + uncertainty BCE (TAPIR-style); ``average_jaccard``
  (AJ), ``delta_avg`` (fraction of visible points within 1, 2, 4, 8, 16 px, averaged) and ``occlusion_accuracy``,
  at 256×256 px, without the query frame, pooled over a clip's points, averaged over clips.
* depth: L1 on metric depth; ``abs_rel`` and ``delta_1.25`` per frame over pixels with a measurement, averaged over
  frames; no median scaling unless ``data.options.median_scale`` (the head regresses metres).
* camera pose: Kendall–Cipolla weighted L1 translation + geodesic rotation (the two weights are learned);
  ``rpe_translation_mm`` and ``rpe_rotation_deg`` per frame pair, averaged over frames; ``ate_mm``: the RMSE of the
  camera positions composed over the clip after a rigid alignment (no scale), averaged over clips.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from coldstream.errors import ConfigError, DataError, MissingFileError
from coldstream.model.readouts import (
    CameraPoseLoss,
    absolute_trajectory_error,
    box_tracking_loss,
    depth_frame_metrics,
    depth_loss,
    jaccard_terms,
    point_tracking_loss,
    rotation_6d_to_matrix,
    rpe_errors,
    track_iou,
)
from coldstream.train.clips import ClipItem
from coldstream.train.config import TrainConfig
from coldstream.train.tasks.base import TASKS, Objective, Task, TaskData
from coldstream.train.tasks.formats import (
    load_boxes,
    load_depth,
    load_points,
    load_poses,
    relative_pose_targets,
)
from coldstream.train.tasks.video_datasets import VIDEO_EXTENSIONS, _split_of, video_job

# --------------------------------------------------------------------------------------------------- objectives


class BoxTrackingObjective(Objective):
    """Outputs ``[B, T, 4]`` cxcywh; targets ``{"boxes" [B, T, 4], "valid" [B, T]}``."""

    def loss(self, outputs: torch.Tensor, targets: dict) -> torch.Tensor:
        return box_tracking_loss(outputs, targets["boxes"], targets["valid"])

    def metric_sums(self, outputs: torch.Tensor, targets: dict) -> dict[str, float]:
        valid = targets["valid"].bool().clone()
        valid[:, 0] = False  # frame 0's box is the input
        iou, counted = track_iou(outputs.float(), targets["boxes"], valid)
        return {"iou": float(iou[counted].sum()), "n": float(counted.sum())}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        return {"mean_iou": sums["iou"] / max(1.0, sums["n"]), "n": sums["n"]}


class PointTrackingObjective(Objective):
    """Outputs the point readout's dict ``[B, Q, T, ...]``; targets ``{"points" [B, Q, T, 2], "visible" [B, Q, T],
    "query_frames" [B, Q], "valid" [B, Q]}``."""

    def loss(self, outputs: dict, targets: dict) -> torch.Tensor:
        return point_tracking_loss(
            outputs, targets["points"], targets["visible"], targets["query_frames"], valid=targets["valid"]
        )

    def metric_sums(self, outputs: dict, targets: dict) -> dict[str, float]:
        t = jaccard_terms(
            outputs["pred_points"], outputs["pred_visibility"] > 0, targets["points"], targets["visible"],
            targets["query_frames"], valid=targets["valid"],
        )  # fmt: skip
        return {
            "average_jaccard": float(t["average_jaccard"].sum()),
            "delta_avg": float(t["position_accuracy"].sum()),
            "occlusion_accuracy": float(t["occlusion_accuracy"].sum()),
            "mean_error_px": float(t["mean_error_px"].sum()),
            "n": float(t["average_jaccard"].numel()),
        }

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(1.0, sums["n"])
        keys = ("average_jaccard", "delta_avg", "occlusion_accuracy", "mean_error_px")
        return {**{k: sums[k] / n for k in keys}, "n": sums["n"]}


class DepthObjective(Objective):
    """Outputs ``[B, T, H, W]`` metres; targets ``{"depth" [B, T, H, W]}`` (0 = no measurement). ``n`` counts the
    frames with a measurement."""

    def __init__(self, median_scale: bool = False, min_depth: float = 1e-3):
        self.median_scale = median_scale
        self.min_depth = min_depth

    def loss(self, outputs: torch.Tensor, targets: dict) -> torch.Tensor:
        return depth_loss(outputs, targets["depth"], min_depth=self.min_depth)

    def metric_sums(self, outputs: torch.Tensor, targets: dict) -> dict[str, float]:
        m = depth_frame_metrics(outputs, targets["depth"], median_scale=self.median_scale, min_depth=self.min_depth)
        c = m["counted"].to(m["abs_rel"].device)
        return {"abs_rel": float(m["abs_rel"][c].sum()), "delta_1.25": float(m["delta"][c].sum()),
                "n": float(c.sum())}  # fmt: skip

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(1.0, sums["n"])
        return {"abs_rel": sums["abs_rel"] / n, "delta_1.25": sums["delta_1.25"] / n, "n": sums["n"]}


class CameraPoseObjective(nn.Module, Objective):
    """Outputs ``[B, T, 9]``; targets ``{"translation" [B, T, 3], "rotation" [B, T, 3, 3], "valid" [B, T]}`` (the
    relative pose t−1 -> t; frame 0 invalid). A module: the loss weights ``loss_fn.*`` are learned."""

    def __init__(self):
        super().__init__()
        self.loss_fn = CameraPoseLoss()

    def loss(self, outputs: torch.Tensor, targets: dict) -> torch.Tensor:
        return self.loss_fn(outputs, targets["translation"], targets["rotation"], targets["valid"])

    @torch.no_grad()
    def metric_sums(self, outputs: torch.Tensor, targets: dict) -> dict[str, float]:
        valid = targets["valid"].bool().clone()
        valid[:, 0] = False
        m = valid.float()
        trans, rot = rpe_errors(outputs, targets["translation"], targets["rotation"])
        ate = absolute_trajectory_error(outputs, targets["translation"], targets["rotation"])
        return {"rpe_translation_mm": 1000.0 * float((trans * m).sum()), "rpe_rotation_deg": float((rot * m).sum()),
                "frames": float(m.sum()), "ate_mm": 1000.0 * float(ate.sum()), "n": float(ate.numel())}  # fmt: skip

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        f, n = max(1.0, sums["frames"]), max(1.0, sums["n"])
        return {"rpe_translation_mm": sums["rpe_translation_mm"] / f, "rpe_rotation_deg": sums["rpe_rotation_deg"] / f,
                "ate_mm": sums["ate_mm"] / n, "n": sums["n"]}  # fmt: skip


# ------------------------------------------------------------------------------------------------------- data


def windows(n: int, length: int, limit: int = 0) -> list[list[int]]:
    """Column windows of ``length`` over ``n`` annotated frames: consecutive without overlap, plus one aligned to the
    end when frames are left over; a short annotation repeats its last frame. ``limit`` > 0 keeps the first few."""
    if n < length:
        out = [list(range(n)) + [n - 1] * (length - n)]
    else:
        starts = list(range(0, n - length + 1, length))
        if starts[-1] + length < n:
            starts.append(n - length)
        out = [list(range(s, s + length)) for s in starts]
    return out[:limit] if limit > 0 else out


@dataclass(frozen=True)
class AnnotatedVideo:
    video: Path
    annotation: Path
    split: str  # "train" or "val"


def find_annotated(root: str | os.PathLike, suffix: str, val_fraction: float = 0.2):
    """``(annotated videos, videos without an annotation)`` under ``root`` (see the module docstring)."""
    if not root:
        raise ConfigError("set data.root to the folder of videos with their annotation files")
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"data.root={str(root)!r} is not a folder of videos with their annotation files")
    folders = [(root / "train", "train"), (root / "val", "val")]
    if not all(f.is_dir() for f, _ in folders):
        folders = [(root, "")]
    found, bare = [], []
    for folder, split in folders:
        for v in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()):
            ann = v.with_suffix(suffix)
            if not ann.exists():
                bare.append(str(v))
                continue
            rel = str(v.relative_to(root))
            found.append(AnnotatedVideo(v, ann, split or _split_of(rel, val_fraction)))
    return found, bare


@dataclass(frozen=True)
class DenseOptions:
    """``data.options`` of the dense tasks."""

    windows: int = 0  # clips per video (per track for boxes): the first this many windows of T frames; 0 = all
    val_fraction: float = 0.2  # without train/ and val/ folders: the share of videos held out (by a path hash)


class DenseTask(Task):
    """Base of the dense tasks: find the annotated videos, cut windows, encode their frames."""

    suffix = ""  # the annotation file's suffix
    Options = DenseOptions

    def items(self, av: AnnotatedVideo, vkey: str) -> list[ClipItem]:
        """The clips of one annotated video."""
        raise NotImplementedError

    def annotated_frames(self, av: AnnotatedVideo) -> list[int]:
        raise NotImplementedError

    def data(self, encoder) -> TaskData:
        found, bare = find_annotated(self.data_cfg.root, self.suffix, self.options.val_fraction)
        if not found:
            example = f" (e.g. {bare[0]} has no {Path(bare[0]).stem}{self.suffix})" if bare else ""
            raise DataError(f"no video under {self.data_cfg.root} has its {self.suffix} annotation file{example}")
        jobs, train, val = [], [], []
        for av in found:
            items = self.items(av, "")
            if not items:
                continue
            frames = sorted({f for it in items for f in it.frames})
            job = video_job(av.video, frames, self.frame_size, encoder)
            jobs.append(job)
            items = [ClipItem(job.vkey, it.frames, it.label, it.source, it.inputs) for it in items]
            (train if av.split == "train" else val).extend(items)
        n_train = sum(av.split == "train" for av in found)
        note = (f"{self.data_cfg.task}: {len(found)} annotated videos ({n_train} train / {len(found) - n_train} val), "
                f"{len(train)} training clips / {len(val)} evaluation clips")  # fmt: skip
        if bare:
            note += f"; {len(bare)} videos without a {self.suffix} file skipped (e.g. {bare[0]})"
        notes = [note]
        if not val:
            notes.append(f"{self.data_cfg.task}: no evaluation clips (put videos in {self.data_cfg.root}/val)")
        return TaskData(jobs, train, val, [], notes=notes)


@TASKS.register("box_tracking")
class BoxTrackingTask(DenseTask):
    """Box tracks (``<video>.boxes.json``): from a track's first box, a box per frame."""

    suffix = ".boxes.json"
    readout = "waymo"

    def items(self, av: AnnotatedVideo, vkey: str) -> list[ClipItem]:
        out = []
        for tid, (frames, boxes) in sorted(load_boxes(av.annotation).items()):
            for cols in windows(len(frames), self.data_cfg.frames, self.options.windows):
                c = torch.tensor(cols)
                b = boxes[c]
                label = {"boxes": b, "valid": torch.ones(len(cols), dtype=torch.bool)}
                out.append(ClipItem(vkey, tuple(frames[c].tolist()), label, f"{av.video}#{tid}", {"init_box": b[0]}))
        return out

    def objective(self, class_names: list[str], train: TrainConfig) -> Objective:
        return BoxTrackingObjective()


@dataclass(frozen=True)
class PointOptions(DenseOptions):
    """``data.options`` of point tracking."""

    max_points: int = 32  # queries per clip (the first this many points; fewer are padded and masked)


@TASKS.register("point_tracking")
class PointTrackingTask(DenseTask):
    """Point tracks (``<video>.points.npz``): from a query point, its position and visibility in every frame."""

    suffix = ".points.npz"
    readout = "pt"
    Options = PointOptions

    def items(self, av: AnnotatedVideo, vkey: str) -> list[ClipItem]:
        ann = load_points(av.annotation)
        pts, vis, qcol, frames = ann["points"], ann["visible"], ann["query_frame"], ann["frames"]
        p_max, out = self.options.max_points, []
        for cols in windows(len(frames), self.data_cfg.frames, self.options.windows):
            c = torch.tensor(cols)
            v = vis[:, c]  # [Q, T]
            keep, qf = [], []
            for q in range(pts.shape[0]):
                at = (c == qcol[q]).nonzero()
                if len(at):
                    keep.append(q)
                    qf.append(int(at[0]))
                elif v[q].any():
                    keep.append(q)
                    qf.append(int(v[q].nonzero()[0]))
            keep, qf = keep[:p_max], qf[:p_max]
            if not keep:
                continue
            k, t = len(keep), len(cols)
            p_w = torch.where(v[keep, :, None], pts[keep][:, c], torch.zeros(()))  # occluded positions are unused
            label = {
                "points": torch.zeros(p_max, t, 2),
                "visible": torch.zeros(p_max, t, dtype=torch.bool),
                "query_frames": torch.zeros(p_max, dtype=torch.long),
                "valid": torch.zeros(p_max, dtype=torch.bool),
            }
            label["points"][:k], label["visible"][:k] = p_w, v[keep]
            label["query_frames"][:k], label["valid"][:k] = torch.tensor(qf), True
            query = torch.full((p_max, 2), 0.5)
            query[:k] = p_w[torch.arange(k), torch.tensor(qf)]
            inputs = {"query_points": query, "query_frames": label["query_frames"]}
            out.append(ClipItem(vkey, tuple(frames[c].tolist()), label, str(av.video), inputs))
        return out

    def objective(self, class_names: list[str], train: TrainConfig) -> Objective:
        return PointTrackingObjective()


@dataclass(frozen=True)
class DepthOptions(DenseOptions):
    """``data.options`` of depth."""

    median_scale: bool = False  # metrics: rescale each predicted frame by median(true) / median(predicted) first
    min_depth: float = 1e-3  # depths at or below this (metres) count as no measurement


@functools.lru_cache(maxsize=4)
def _depth_window(path: str, size: int, cols: tuple[int, ...]) -> dict[str, torch.Tensor]:
    return {"depth": load_depth(path, size)["depth"][list(cols)]}


@TASKS.register("depth")
class DepthTask(DenseTask):
    """Depth maps (``<video>.depth.npz``, metres at the preprocessed frame size): a depth map per frame."""

    suffix = ".depth.npz"
    readout = "scannet"
    Options = DepthOptions

    def items(self, av: AnnotatedVideo, vkey: str) -> list[ClipItem]:
        frames = load_depth(av.annotation, self.frame_size)["frames"]  # validated once here, read again per clip
        out = []
        for cols in windows(len(frames), self.data_cfg.frames, self.options.windows):
            load: Callable[[], dict] = functools.partial(
                _depth_window, str(av.annotation), self.frame_size, tuple(cols)
            )
            out.append(ClipItem(vkey, tuple(frames[torch.tensor(cols)].tolist()), load, str(av.video)))
        return out

    def objective(self, class_names: list[str], train: TrainConfig) -> Objective:
        return DepthObjective(self.options.median_scale, self.options.min_depth)


@TASKS.register("camera_pose")
class CameraPoseTask(DenseTask):
    """Camera-to-world poses (``<video>.poses.npz``): the camera's motion from each frame to the next."""

    suffix = ".poses.npz"
    readout = "nuscenes"

    def items(self, av: AnnotatedVideo, vkey: str) -> list[ClipItem]:
        ann = load_poses(av.annotation)
        out = []
        for cols in windows(len(ann["frames"]), self.data_cfg.frames, self.options.windows):
            c = torch.tensor(cols)
            t9, valid = relative_pose_targets(ann["poses"][c])
            rot = rotation_6d_to_matrix(t9[:, 3:])
            rot[0] = torch.eye(3)  # frame 0 has no predecessor (masked)
            label = {"translation": t9[:, :3], "rotation": rot, "valid": valid}
            out.append(ClipItem(vkey, tuple(ann["frames"][c].tolist()), label, str(av.video)))
        return out

    def objective(self, class_names: list[str], train: TrainConfig) -> Objective:
        return CameraPoseObjective()
