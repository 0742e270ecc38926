"""Tasks: where a task's clips and labels come from, and the objective (loss, metrics) that trains and judges a
model on them. Each task is registered in :data:`TASKS` under the name ``data.task`` selects.

A task turns its options into :class:`TaskData`: the frames the frozen encoder must encode into the feature cache
(``FrameJob`` s), the training and evaluation clips (``ClipItem`` s over those frames), the class names, and the
sources it had to skip. ``coldstream.train.pipeline`` runs the extraction and hands the clips to the trainer.

An :class:`Objective` is what the trainer needs of a task: a loss, metric sums that add over batches and ranks, and
the metrics they summarise to. Classification is :class:`ClassificationObjective`; the dense tasks' objectives are
in ``coldstream.train.tasks.dense``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from coldstream.config import from_dict
from coldstream.errors import InputError
from coldstream.model.readouts.classification import classification_loss
from coldstream.registry import Registry
from coldstream.train.clips import ClipItem
from coldstream.train.config import DataConfig, TrainConfig
from coldstream.train.extract import FrameJob
from coldstream.train.metrics import accuracy_sums

TASKS = Registry("task")


@dataclass
class TaskData:
    """What a task gives the pipeline."""

    jobs: list[FrameJob]  # frames to encode into the feature cache
    train: list[ClipItem]  # training clips
    eval: list[ClipItem]  # evaluation clips (held-out sources)
    class_names: list[str]  # class index -> name
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason) of unreadable sources
    notes: list[str] = field(default_factory=list)  # what the pipeline should tell the user (e.g. fetch failures)


class Objective:
    """Loss and metrics of a task.

    * ``loss(outputs, targets)``: a 0-d tensor to minimise (``outputs``: the model's; ``targets``: the collated
      targets of the batch, a tensor or a dict of them);
    * ``metric_sums(outputs, targets)``: a dict of floats that add over batches and ranks, with ``"n"``;
    * ``summarize(sums)``: the metrics (e.g. ``{"accuracy": correct / n, "n": n}``).

    An objective with learned parameters of its own (camera pose's loss weights) is also an ``nn.Module``: the
    trainer optimises its parameters with the model's and keeps its state in the checkpoint.
    """

    def loss(self, outputs, targets) -> torch.Tensor:
        raise NotImplementedError

    def metric_sums(self, outputs, targets) -> dict[str, float]:
        raise NotImplementedError

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError


class ClassificationObjective(Objective):
    """Loss and metrics for clip labels. Outputs are logits ``[B, T, C]`` (or ``[B, C]``); the clip's answer is the
    last frame's (top-1 accuracy); the loss is cross-entropy on each of the last ``loss_frames`` frames."""

    def __init__(
        self,
        num_classes: int,
        class_names: list[str] | None = None,
        label_smoothing: float = 0.0,
        loss_frames: int = 1,
    ):
        if loss_frames < 1:
            raise InputError(f"loss_frames must be >= 1 (1 = the last frame only), got {loss_frames}")
        self.num_classes = num_classes
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.label_smoothing = label_smoothing
        self.loss_frames = loss_frames

    @staticmethod
    def _last(outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, -1] if outputs.dim() == 3 else outputs

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return classification_loss(outputs, targets, self.loss_frames, self.label_smoothing)

    def metric_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return accuracy_sums(self._last(outputs).float(), targets)

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        return {"accuracy": sums["correct"] / max(1.0, sums["n"]), "n": sums["n"]}


class Task:
    """Base of the registered tasks: clip classification from cached frozen features (the dense tasks override
    :meth:`objective` and :attr:`readout`).

    Args:
        data: the job's data section (``data.options`` are checked against the task's ``Options`` dataclass).
        frame_size: the side S frames are preprocessed to (the model's ``frame_size``).
        seed: everything random in the data (trajectories, splits) derives from it.
    """

    readout: str | None = None  # the readout (READOUTS name) the task needs; None: any classification head

    @dataclass(frozen=True)
    class Options:
        """No options."""

    def __init__(self, data: DataConfig, frame_size: int, seed: int = 0):
        self.data_cfg = data
        self.frame_size = frame_size
        self.seed = seed
        defaults = dataclasses.asdict(self.Options())
        self.options = from_dict(self.Options, {**defaults, **data.options}, "data.options")

    def data(self, encoder) -> TaskData:
        """Jobs, clips and classes for features of ``encoder`` (which gives the normalisation)."""
        raise NotImplementedError

    def objective(self, class_names: list[str], train: TrainConfig) -> Objective:
        return ClassificationObjective(len(class_names), class_names, loss_frames=train.loss_frames)
