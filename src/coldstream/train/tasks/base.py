"""Clip classification: top-1 accuracy of the last frame's logits (SPEC §5.1: the video answer is the prediction at
t = T); cross-entropy on the last frame, or on each of the last ``loss_frames`` frames (the paper does not say which,
SPEC §10.2; every frame's prediction is a streaming answer so far, and training them all gives a core more signal
per clip)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coldstream.train.metrics import accuracy_sums


class ClassificationTask:
    """Loss and metrics for clip labels; ``outputs`` are logits ``[B, C]`` (or ``[B, T, C]``: the last frame counts)."""

    def __init__(
        self,
        num_classes: int,
        class_names: list[str] | None = None,
        label_smoothing: float = 0.0,
        loss_frames: int = 1,
    ):
        if loss_frames < 1:
            raise ValueError(f"loss_frames must be >= 1 (1 = the last frame only), got {loss_frames}")
        self.num_classes = num_classes
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.label_smoothing = label_smoothing
        self.loss_frames = loss_frames

    @staticmethod
    def _last(outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, -1] if outputs.dim() == 3 else outputs

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the last ``loss_frames`` frames of ``[B, T, C]`` logits (``[B, C]``: that one)."""
        if outputs.dim() == 2 or self.loss_frames == 1:
            logits, labels = self._last(outputs), targets
        else:
            k = min(self.loss_frames, outputs.shape[1])
            logits, labels = outputs[:, -k:].flatten(0, 1), targets.repeat_interleave(k)
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def metric_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return accuracy_sums(self._last(outputs).float(), targets)

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        return {"accuracy": sums["correct"] / max(1.0, sums["n"]), "n": sums["n"]}
