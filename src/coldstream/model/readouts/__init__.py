"""Task readouts under the streaming protocol (SPEC §5.1–5.5), with their losses and metrics."""

from __future__ import annotations

from coldstream.model.readouts.attention_readout import AttentionReadout
from coldstream.model.readouts.base import Readout, ReadoutState, StatelessReadout
from coldstream.model.readouts.box_tracking import (
    BoxTrackingReadout,
    box_iou,
    box_tracking_loss,
    mean_iou,
)
from coldstream.model.readouts.camera_pose import (
    CameraPoseLoss,
    CameraPoseReadout,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
    rotation_angle,
    rpe_translation,
)
from coldstream.model.readouts.classification import ClassificationReadout, classification_loss, top1_accuracy
from coldstream.model.readouts.depth import DepthReadout, abs_rel, depth_loss
from coldstream.model.readouts.point_tracking import (
    PointTrackingReadout,
    average_jaccard,
    jaccard_terms,
    point_tracking_loss,
)

READOUTS: dict[str, type[Readout]] = {
    "ssv2": ClassificationReadout,
    "waymo": BoxTrackingReadout,
    "pt": PointTrackingReadout,
    "scannet": DepthReadout,
    "nuscenes": CameraPoseReadout,
}
READOUT_ALIASES = {
    "classification": "ssv2",
    "box_tracking": "waymo",
    "tracking": "waymo",
    "point_tracking": "pt",
    "perception_test": "pt",
    "depth": "scannet",
    "pose": "nuscenes",
    "camera_pose": "nuscenes",
}


def build_readout(task: str, dim: int, **options) -> Readout:
    """The streaming readout of ``task`` (``ssv2``, ``waymo``, ``pt``, ``scannet``, ``nuscenes`` or the aliases
    ``classification``, ``box_tracking``, ``point_tracking``, ``depth``, ``pose``) for core width ``dim``, with the
    paper's widths; ``options`` override them (e.g. ``num_classes``, ``width``, ``image_size``)."""
    key = READOUT_ALIASES.get(task.lower(), task.lower())
    if key not in READOUTS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(READOUTS)} (or {sorted(READOUT_ALIASES)})")
    return READOUTS[key](dim, **options)


__all__ = [
    "READOUTS",
    "AttentionReadout",
    "BoxTrackingReadout",
    "CameraPoseLoss",
    "CameraPoseReadout",
    "ClassificationReadout",
    "DepthReadout",
    "PointTrackingReadout",
    "Readout",
    "ReadoutState",
    "StatelessReadout",
    "abs_rel",
    "average_jaccard",
    "box_iou",
    "box_tracking_loss",
    "build_readout",
    "classification_loss",
    "depth_loss",
    "jaccard_terms",
    "matrix_to_rotation_6d",
    "mean_iou",
    "point_tracking_loss",
    "rotation_6d_to_matrix",
    "rotation_angle",
    "rpe_translation",
    "top1_accuracy",
]
