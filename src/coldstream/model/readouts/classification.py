"""Clip classification: a per-frame readout whose last frame gives the video's answer, with its loss and metric.

Two readouts: ``ssv2`` (alias ``classification``), the paper's attentive probe, and ``linear`` (alias
``linear_probe``), a LayerNorm + token mean + Linear head (the main job's cheap CPU head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coldstream.errors import InputError
from coldstream.model.layers.attention_readout import AttentionReadout
from coldstream.model.readouts.base import READOUTS, StatelessReadout


@READOUTS.register("ssv2", aliases=("classification",))
class ClassificationReadout(StatelessReadout):
    """Per frame: one learned query over the frame's N tokens (768-d, 12 heads, no temporal embedding) -> logits.

    Clip output ``[B, T, num_classes]``; the video prediction is ``logits[:, -1]``. Keys ``readout.*`` in the
    reference checkpoints are ``probe.*`` here (``REFERENCE_RENAME``).
    """

    task = "ssv2"
    REFERENCE_RENAME = ("readout.", "probe.")

    def __init__(
        self,
        dim: int,
        num_classes: int = 174,
        width: int = 768,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        attention: str = "sdpa",
    ):
        super().__init__(dim, attention)
        self.num_classes = num_classes
        self.probe = AttentionReadout(dim, width, num_classes, 1, num_heads, mlp_ratio, attention=attention)

    def frame(self, o: torch.Tensor) -> torch.Tensor:
        """``[F, N, D] -> [F, num_classes]``."""
        return self.probe(o)[:, 0]


@READOUTS.register("linear", aliases=("linear_probe",))
class LinearReadout(StatelessReadout):
    """Per frame: LayerNorm, mean over the N tokens, dropout, Linear -> logits ``[B, T, num_classes]``."""

    task = "linear"

    def __init__(self, dim: int, num_classes: int = 174, dropout: float = 0.0, attention: str = "sdpa"):
        super().__init__(dim, attention)
        self.num_classes = num_classes
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def frame(self, o: torch.Tensor) -> torch.Tensor:
        """``[F, N, D] -> [F, num_classes]``."""
        return self.fc(self.drop(self.norm(o).mean(dim=-2)))


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, loss_frames: int = 1, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy on the video label, averaged over each of the last ``loss_frames`` frames (capped at T).

    The paper does not publish its loss; our default is the last frame only (the frame that gives the video answer).
    Every frame's prediction is a streaming answer so far, and training several of the last ones gives a core more
    signal per clip (the main job trains the last 12).

    Args:
        logits: ``[B, T, C]`` (or ``[B, C]``: one frame). labels: ``[B]`` class indices.
    """
    if logits.ndim == 2:
        logits = logits[:, None]
    if logits.ndim != 3 or labels.shape != logits.shape[:1]:
        raise InputError(f"expected logits [B, T, C] and labels [B], got {tuple(logits.shape)}, {tuple(labels.shape)}")
    if loss_frames < 1:
        raise InputError(f"loss_frames must be >= 1 (1 = the last frame only), got {loss_frames}")
    k = min(loss_frames, logits.shape[1])
    last = logits[:, -k:].float().flatten(0, 1)
    return F.cross_entropy(last, labels.repeat_interleave(k), label_smoothing=label_smoothing)


def top1_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy of the video answer (last frame). ``logits`` ``[B, T, C]`` or ``[B, C]``; ``labels`` ``[B]``."""
    last = logits[:, -1] if logits.ndim == 3 else logits
    return (last.argmax(dim=-1) == labels).float().mean()
