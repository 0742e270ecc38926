"""Tasks: where a task's clips and labels come from and the objective that trains and judges a model on them.

``TASKS.create(name, data_config, frame_size, seed)`` builds the task ``data.task`` names: ``direction`` (direction of
motion on real photos), ``crop_tracks`` (point tracking on the same moving crops, exact labels), ``arrow`` (arrow of
time on real videos), ``csv`` and ``ssv2`` (labelled video datasets), and the dense tasks ``box_tracking``,
``point_tracking``, ``depth`` and ``camera_pose`` (videos with annotation files).
"""

from coldstream.train.tasks import arrow, crop_tracks, dense, direction, video_datasets  # noqa: F401  (registration)
from coldstream.train.tasks.base import TASKS, ClassificationObjective, Objective, Task, TaskData

__all__ = ["TASKS", "ClassificationObjective", "Objective", "Task", "TaskData"]
