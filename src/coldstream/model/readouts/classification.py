"""SSv2 action classification: a per-frame attentive probe; the video answer is the last frame's (SPEC §5.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coldstream.model.readouts.attention_readout import AttentionReadout
from coldstream.model.readouts.base import StatelessReadout


class ClassificationReadout(StatelessReadout):
    """Per frame: one learned query over the frame's N tokens (768-d, 12 heads, no temporal embedding) -> logits.

    Clip output ``[B, T, num_classes]``; the video prediction is ``logits[:, -1]``. Keys ``readout.*`` in the
    reference checkpoints are ``probe.*`` here (``REFERENCE_RENAME``).
    """

    task = "ssv2"
    REFERENCE_RENAME = ("readout.", "probe.")

    def __init__(self, dim: int, num_classes: int = 174, width: int = 768, num_heads: int = 12, mlp_ratio: int = 4):
        super().__init__(dim)
        self.num_classes = num_classes
        self.probe = AttentionReadout(dim, width, num_classes, 1, num_heads, mlp_ratio)

    def frame(self, o: torch.Tensor) -> torch.Tensor:
        """``[F, N, D] -> [F, num_classes]``."""
        return self.probe(o)[:, 0]


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, frames: str = "last") -> torch.Tensor:
    """Cross-entropy on the video label. Not published (SPEC §10.2): our choice is the last frame only
    (``frames="last"``, the frame that gives the video answer); ``frames="all"`` averages over every frame.

    Args:
        logits: ``[B, T, C]``. labels: ``[B]`` class indices.
    """
    if logits.ndim != 3 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits [B, T, C] and labels [B], got {tuple(logits.shape)}, {tuple(labels.shape)}")
    if frames == "last":
        return F.cross_entropy(logits[:, -1].float(), labels)
    if frames == "all":
        b, t, c = logits.shape
        return F.cross_entropy(logits.float().reshape(b * t, c), labels.repeat_interleave(t))
    raise ValueError(f"frames must be 'last' or 'all', got {frames!r}")


def top1_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy of the video answer (last frame). ``logits`` ``[B, T, C]`` or ``[B, C]``; ``labels`` ``[B]``."""
    last = logits[:, -1] if logits.ndim == 3 else logits
    return (last.argmax(dim=-1) == labels).float().mean()
