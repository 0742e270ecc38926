"""Clip classification: cross-entropy on the last frame's logits (SPEC §5.1: the video answer is the prediction at
t = T), top-1 accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coldstream.train.metrics import accuracy_sums


class ClassificationTask:
    """Loss and metrics for clip labels; ``outputs`` are logits ``[B, C]`` (or ``[B, T, C]``: the last frame counts)."""

    def __init__(self, num_classes: int, class_names: list[str] | None = None, label_smoothing: float = 0.0):
        self.num_classes = num_classes
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.label_smoothing = label_smoothing

    @staticmethod
    def _last(outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, -1] if outputs.dim() == 3 else outputs

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self._last(outputs).float(), targets, label_smoothing=self.label_smoothing)

    def metric_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return accuracy_sums(self._last(outputs).float(), targets)

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        return {"accuracy": sums["correct"] / max(1.0, sums["n"]), "n": sums["n"]}
