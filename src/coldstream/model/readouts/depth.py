"""ScanNet depth: 784 learned queries, one per 8×8 patch of the 224×224 frame."""

from __future__ import annotations

import math

import torch

from coldstream.errors import InputError
from coldstream.model.layers.attention_readout import AttentionReadout
from coldstream.model.readouts.base import READOUTS, StatelessReadout


@READOUTS.register("scannet", aliases=("depth",))
class DepthReadout(StatelessReadout):
    """Per frame an attentive probe (1024-d, 16 heads, learned one-frame temporal bias) with one query per output
    patch; each query regresses its 8×8 patch, reassembled row-major to ``[H, W]``. No output activation.

    Clip: ``[B, T, N, D] -> pred_depth [B, T, H, W]``. Reference keys ``readout.readout.*`` are ``probe.*`` here.
    """

    task = "scannet"
    REFERENCE_RENAME = ("readout.readout.", "probe.")

    def __init__(
        self,
        dim: int,
        width: int = 1024,
        num_heads: int = 16,
        image_size: int = 224,
        patch: int = 8,
        attention: str = "sdpa",
    ):
        super().__init__(dim, attention)
        if image_size % patch:
            raise InputError(f"depth readout: image size {image_size} is not a multiple of the patch {patch}")
        self.image_size, self.patch = image_size, patch
        self.grid = image_size // patch
        self.probe = AttentionReadout(
            dim, width, patch * patch, self.grid * self.grid, num_heads, temporal_posenc=True, attention=attention
        )

    def frame(self, o: torch.Tensor) -> torch.Tensor:
        """``[F, N, D] -> [F, H, W]``."""
        f = o.shape[0]
        g, p = self.grid, self.patch
        out = self.probe(o).view(f, g, g, p, p).permute(0, 1, 3, 2, 4)
        return out.reshape(f, g * p, g * p)


def _depth_valid(target: torch.Tensor, valid: torch.Tensor | None, min_depth: float) -> torch.Tensor:
    m = target > min_depth
    return m if valid is None else m & valid.bool()


def depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, min_depth: float = 1e-3):
    """L1 on metric depth over valid pixels (the paper does not publish its loss; our choice: the head has no output
    activation and AbsRel is read without rescaling, so a scale-fixing loss). ``[B, T, H, W]``."""
    if pred.shape != target.shape:
        raise InputError(f"pred_depth {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    m = _depth_valid(target, valid, min_depth).float()
    return ((pred.float() - target.float()).abs() * m).sum() / m.sum().clamp(min=1)


def _frame_mean(m: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """The mean of ``m[key]`` over the frames :func:`depth_frame_metrics` counted (NaN if none)."""
    vals = m[key][m["counted"].to(m[key].device)]
    return vals.mean() if len(vals) else m[key].new_tensor(float("nan"), dtype=torch.float32)


def depth_frame_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    median_scale: bool = False,
    min_depth: float = 1e-3,
    threshold: float = 1.25,
) -> dict[str, torch.Tensor]:
    """Per-frame depth metrics over valid pixels (d > ``min_depth``), frames flattened from ``[..., H, W]``:

    * ``abs_rel`` = mean |d̂ − d| / d;
    * ``delta`` = the fraction of pixels with max(d̂ / d, d / d̂) < ``threshold`` (δ < 1.25; a prediction <= 0
      counts as wrong);
    * ``counted``: whether the frame has a valid pixel (the others are 0 in both and must be left out).

    ``median_scale=True`` first rescales each frame's prediction by median(d) / median(d̂) (the monocular protocol;
    off by default since the readout regresses metric depth).
    """
    p = pred.float().flatten(0, -3).flatten(1)
    g = target.float().flatten(0, -3).flatten(1)
    m = _depth_valid(target, valid, min_depth).flatten(0, -3).flatten(1)
    rel, delta, counted = [], [], []
    for pi, gi, mi in zip(p, g, m, strict=True):
        if not mi.any():
            rel.append(p.new_zeros(()))
            delta.append(p.new_zeros(()))
            counted.append(False)
            continue
        pv, gv = pi[mi], gi[mi]
        if median_scale:
            pv = pv * (gv.median() / pv.median())
        rel.append(((pv - gv).abs() / gv).mean())
        ratio = torch.where(pv > 0, torch.maximum(pv / gv, gv / pv.clamp(min=1e-12)), torch.full_like(pv, math.inf))
        delta.append((ratio < threshold).float().mean())
        counted.append(True)
    if not rel:
        return {k: p.new_zeros(0) for k in ("abs_rel", "delta")} | {"counted": torch.zeros(0, dtype=torch.bool)}
    return {"abs_rel": torch.stack(rel), "delta": torch.stack(delta), "counted": torch.tensor(counted)}


def abs_rel(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    median_scale: bool = False,
    min_depth: float = 1e-3,
) -> torch.Tensor:
    """AbsRel = mean |d̂ − d| / d over valid pixels (d > ``min_depth``), per frame, then averaged over frames.

    ``median_scale=True`` first rescales each frame's prediction by median(d) / median(d̂) (the monocular protocol;
    off by default since the readout regresses metric depth). ``[..., H, W]``.
    """
    m = depth_frame_metrics(pred, target, valid, median_scale, min_depth)
    return _frame_mean(m, "abs_rel")


def delta_accuracy(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    median_scale: bool = False,
    min_depth: float = 1e-3,
    threshold: float = 1.25,
) -> torch.Tensor:
    """δ < ``threshold``: the fraction of valid pixels with max(d̂ / d, d / d̂) < threshold, per frame, then averaged
    over frames (see :func:`depth_frame_metrics`)."""
    m = depth_frame_metrics(pred, target, valid, median_scale, min_depth, threshold)
    return _frame_mean(m, "delta")
