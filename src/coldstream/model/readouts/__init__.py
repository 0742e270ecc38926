"""Task readouts under the streaming protocol (frame t reads only the core's output for frame t), with their losses
and metrics, and the offline (whole-clip) readouts of the 4DS protocol (``offline.py``). ``build_readout(name, dim,
**options)`` builds one by name from the :data:`READOUTS` registry."""

from __future__ import annotations

from coldstream.model.readouts import (  # noqa: F401
    box_tracking,
    camera_pose,
    classification,
    depth,
    offline,
    point_tracking,
)
from coldstream.model.readouts.base import READOUTS, Readout, ReadoutState, StatelessReadout
from coldstream.model.readouts.box_tracking import (
    BoxTrackingReadout,
    box_iou,
    box_tracking_loss,
    mean_iou,
    track_iou,
)
from coldstream.model.readouts.camera_pose import (
    CameraPoseLoss,
    CameraPoseReadout,
    absolute_trajectory_error,
    compose_relative,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
    rotation_angle,
    rpe_errors,
    rpe_translation,
)
from coldstream.model.readouts.classification import (
    ClassificationReadout,
    LinearReadout,
    classification_loss,
    top1_accuracy,
)
from coldstream.model.readouts.depth import DepthReadout, abs_rel, delta_accuracy, depth_frame_metrics, depth_loss
from coldstream.model.readouts.offline import (
    OfflineBoxTrackingReadout,
    OfflineClassificationReadout,
    OfflineDepthReadout,
    OfflinePointTrackingReadout,
    OfflineReadout,
)
from coldstream.model.readouts.point_tracking import (
    PointTrackingReadout,
    average_jaccard,
    jaccard_terms,
    point_tracking_loss,
)


def build_readout(name: str, dim: int, **options) -> Readout:
    """The streaming readout ``name`` for core width ``dim``, with the paper's widths.

    Names: ``ssv2`` (the attentive classification probe; alias ``classification``), ``linear`` (a linear
    classification head; alias ``linear_probe``), ``waymo`` (box tracking), ``pt`` (point tracking), ``scannet``
    (depth), ``nuscenes`` (camera pose), and the aliases ``box_tracking``, ``point_tracking``, ``depth``, ``pose``.
    Offline (whole-clip, not streamable) versions: ``ssv2_offline``, ``waymo_offline``, ``pt_offline``,
    ``scannet_offline`` (aliases ``classification_offline``, ``box_tracking_offline``, ``point_tracking_offline``,
    ``depth_offline``). ``options`` override the defaults (e.g. ``num_classes``, ``width``, ``image_size``,
    ``attention``, ``num_frames``); an unknown option is refused with the accepted ones.
    """
    return READOUTS.create(name, dim, **options)


__all__ = [
    "READOUTS",
    "BoxTrackingReadout",
    "CameraPoseLoss",
    "CameraPoseReadout",
    "ClassificationReadout",
    "DepthReadout",
    "LinearReadout",
    "OfflineBoxTrackingReadout",
    "OfflineClassificationReadout",
    "OfflineDepthReadout",
    "OfflinePointTrackingReadout",
    "OfflineReadout",
    "PointTrackingReadout",
    "Readout",
    "ReadoutState",
    "StatelessReadout",
    "abs_rel",
    "absolute_trajectory_error",
    "average_jaccard",
    "box_iou",
    "box_tracking_loss",
    "build_readout",
    "classification_loss",
    "compose_relative",
    "delta_accuracy",
    "depth_frame_metrics",
    "depth_loss",
    "jaccard_terms",
    "matrix_to_rotation_6d",
    "mean_iou",
    "point_tracking_loss",
    "rotation_6d_to_matrix",
    "rotation_angle",
    "rpe_errors",
    "rpe_translation",
    "top1_accuracy",
    "track_iou",
]
