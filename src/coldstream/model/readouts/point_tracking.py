"""Perception Test point tracking: one fixed point query decoded against each frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coldstream.errors import InputError
from coldstream.model.layers.decoder import QueryDecoder
from coldstream.model.layers.fourier import FourierPositionEncoding
from coldstream.model.readouts.base import READOUTS, Readout, ReadoutState

QUERY_VISIBILITY_LOGIT = 10.0
QUERY_UNCERTAINTY_LOGIT = -10.0


@READOUTS.register("pt", aliases=("point_tracking", "perception_test"))
class PointTrackingReadout(Readout):
    """Query ``(x, y)`` in [0, 1]² -> Fourier(16) -> MLP 64->512->512 -> Linear(512->1024): the same query every
    frame. Per frame: Decoder(query, proj(o_t)) (1 pre-norm layer, 8 heads, ReLU FFN 4096) -> LN -> head
    1024->512->GELU->4 = (x, y, visibility logit, uncertainty logit); positions = sigmoid(x, y). At the query frame
    the outputs are overwritten: position = query point, visibility +10, uncertainty −10. Visible iff logit > 0.

    Inputs: ``query_points`` ``[B, 2]`` or ``[B, Q, 2]`` (Q queries folded into the batch), ``query_frames`` ``[B]`` /
    ``[B, Q]`` (default 0). Outputs ``{"pred_points" [B, (Q,) T, 2], "pred_visibility" [B, (Q,) T],
    "pred_uncertainty" [B, (Q,) T]}``. Streaming state: the queries and the per-stream frame index ``t``.
    """

    task = "pt"

    def __init__(
        self,
        dim: int,
        width: int = 1024,
        num_heads: int = 8,
        num_layers: int = 1,
        hidden: int = 512,
        attention: str = "sdpa",
    ):
        super().__init__(dim, attention)
        self.width = width
        self.proj_to_readout = nn.Linear(dim, width) if dim != width else nn.Identity()
        self.fourier_enc = FourierPositionEncoding(16, input_dim=2)
        self.point_mlp = nn.Sequential(
            nn.Linear(self.fourier_enc.output_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.to_query = nn.Linear(hidden, width)
        self.readout = QueryDecoder(width, num_heads, num_layers, attention=attention)
        self.prediction_head = nn.Sequential(nn.Linear(width, width // 2), nn.GELU(), nn.Linear(width // 2, 4))

    @staticmethod
    def _queries(batch: int, query_points, query_frames, device) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """-> points ``[B, Q, 2]``, frames ``[B, Q]`` (long), whether the caller gave a Q axis."""
        if query_points is None or query_points.ndim not in (2, 3) or query_points.shape[0] != batch:
            got = None if query_points is None else tuple(query_points.shape)
            raise InputError(f"pt readout: needs query_points [B={batch}, 2] or [B, Q, 2] in [0, 1], got {got}")
        multi = query_points.ndim == 3
        pts = query_points if multi else query_points[:, None]
        if pts.shape[-1] != 2:
            raise InputError(
                f"pt readout: query_points must end in 2 coordinates (x, y), got {tuple(query_points.shape)}"
            )
        if query_frames is None:
            frames = torch.zeros(pts.shape[:2], dtype=torch.long, device=pts.device)
        else:
            frames = (query_frames if multi else query_frames[:, None]).long()
            if frames.shape != pts.shape[:2]:
                raise InputError(
                    f"pt readout: query_frames must be {tuple(pts.shape[:2])[: 2 if multi else 1]}, "
                    f"got {tuple(query_frames.shape)}"
                )
        return pts.to(device), frames.to(device), multi

    def _encode_query(self, pts: torch.Tensor) -> torch.Tensor:
        """``[F, 2] -> [F, 1, width]``."""
        return self.to_query(self.point_mlp(self.fourier_enc.encode_for(pts, self.point_mlp[0]))).unsqueeze(1)

    def _predict(self, o: torch.Tensor, pts: torch.Tensor, q_frames: torch.Tensor, t: torch.Tensor) -> dict:
        """``o`` ``[F, N, D]`` for F = B·Q (frame, query) pairs; ``pts`` ``[F, 2]``; ``q_frames``, ``t`` ``[F]``."""
        out = self.readout(self._encode_query(pts), self.proj_to_readout(o))
        pred = self.prediction_head(out[:, 0]).float()
        at_query = (t == q_frames)[:, None]
        points = torch.where(at_query, pts.float(), torch.sigmoid(pred[:, :2]))
        vis = torch.where(at_query[:, 0], pred.new_tensor(QUERY_VISIBILITY_LOGIT), pred[:, 2])
        unc = torch.where(at_query[:, 0], pred.new_tensor(QUERY_UNCERTAINTY_LOGIT), pred[:, 3])
        return {"pred_points": points, "pred_visibility": vis, "pred_uncertainty": unc}

    def forward(self, o: torch.Tensor, query_points=None, query_frames=None, **_) -> dict:
        self._check(o, 4)
        b, t, n, d = o.shape
        pts, qf, multi = self._queries(b, query_points, query_frames, o.device)
        q = pts.shape[1]
        o_f = o[:, None].expand(b, q, t, n, d).reshape(b * q * t, n, d)
        pts_f = pts[:, :, None].expand(b, q, t, 2).reshape(-1, 2)
        qf_f = qf[:, :, None].expand(b, q, t).reshape(-1)
        t_f = torch.arange(t, device=o.device).expand(b, q, t).reshape(-1)
        out = self._predict(o_f, pts_f, qf_f, t_f)
        shape = (b, q, t) if multi else (b, t)
        return {k: v.reshape(*shape, *v.shape[1:]) for k, v in out.items()}

    def init_state(self, batch: int, device=None, query_points=None, query_frames=None, **_) -> ReadoutState:
        pts, qf, multi = self._queries(batch, query_points, query_frames, device or query_points.device)
        return {
            "points": pts.float().clone(),
            "frames": qf.clone(),
            "t": torch.zeros(batch, dtype=torch.long, device=pts.device),
            "multi": multi,
        }

    def reset_state(self, state: ReadoutState, mask: torch.Tensor, query_points=None, query_frames=None, **_):
        pts, qf, _ = self._queries(state["t"].shape[0], query_points, query_frames, state["t"].device)
        m = mask.to(state["t"].device).bool()
        state["points"].copy_(torch.where(m[:, None, None], pts.to(state["points"]), state["points"]))
        state["frames"].copy_(torch.where(m[:, None], qf, state["frames"]))
        state["t"].mul_((~m).long())
        return state

    def stack_steps(self, outs: list, state: ReadoutState) -> dict:
        """Per-frame outputs -> ``[B, (Q,) T, ...]`` (the time axis follows the query axis, as ``forward``)."""
        axis = 2 if state["multi"] else 1
        return {k: torch.stack([o[k] for o in outs], dim=axis) for k in outs[0]}

    def step(self, o_t: torch.Tensor, state: ReadoutState) -> tuple[dict, ReadoutState]:
        self._check(o_t, 3)
        b, n, d = o_t.shape
        pts, qf = state["points"], state["frames"]
        q = pts.shape[1]
        t_f = state["t"][:, None].expand(b, q).reshape(-1)
        out = self._predict(
            o_t[:, None].expand(b, q, n, d).reshape(b * q, n, d), pts.reshape(-1, 2), qf.reshape(-1), t_f
        )
        state["t"].add_(1)
        shape = (b, q) if state["multi"] else (b,)
        return {k: v.reshape(*shape, *v.shape[1:]) for k, v in out.items()}, state


def point_tracking_loss(
    out: dict,
    target_points: torch.Tensor,
    target_visible: torch.Tensor,
    query_frames: torch.Tensor | None = None,
    image_size: int = 224,
    huber_delta: float = 4.0,
    uncertainty_threshold: float = 8.0,
    weights: tuple[float, float, float] = (0.05, 1.0, 1.0),
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """TAPIR-style loss (the paper does not publish its loss; our choice): Huber on pixel positions (δ = 4 px, visible
    frames), BCE on visibility (all frames), BCE on uncertainty with target "position error > 8 px" (visible frames,
    error detached), weighted 0.05 / 1 / 1 as TAPIR (Doersch et al. 2023). The query frame (overwritten) is excluded.

    Args:
        out: the readout's dict, ``[B, (Q,) T, ...]``. target_points: ``[B, (Q,) T, 2]`` in [0, 1].
        target_visible: ``[B, (Q,) T]`` bool. query_frames: ``[B, (Q,)]`` (default 0). image_size: pixels per unit.
        valid: ``[B, (Q,)]`` bool, the tracks that count (default all; padding queries are False).
    """
    pred = out["pred_points"].float()
    if pred.shape != target_points.shape:
        raise InputError(f"pred_points {tuple(pred.shape)} and target_points {tuple(target_points.shape)} differ")
    t = pred.shape[-2]
    if query_frames is None:
        query_frames = torch.zeros(pred.shape[:-2], dtype=torch.long, device=pred.device)
    not_query = torch.arange(t, device=pred.device) != query_frames[..., None]
    if valid is not None:
        not_query = not_query & valid.bool()[..., None]
    vis = target_visible.bool()
    pos_mask = (vis & not_query).float()
    err = (pred - target_points.float()) * image_size
    huber = F.huber_loss(err, torch.zeros_like(err), delta=huber_delta, reduction="none").sum(-1)
    pos = (huber * pos_mask).sum() / pos_mask.sum().clamp(min=1)
    all_mask = not_query.expand_as(vis).float()
    vis_bce = F.binary_cross_entropy_with_logits(out["pred_visibility"].float(), vis.float(), reduction="none")
    vis_l = (vis_bce * all_mask).sum() / all_mask.sum().clamp(min=1)
    unc_target = (err.detach().norm(dim=-1) > uncertainty_threshold).float()
    unc_bce = F.binary_cross_entropy_with_logits(out["pred_uncertainty"].float(), unc_target, reduction="none")
    unc_l = (unc_bce * pos_mask).sum() / pos_mask.sum().clamp(min=1)
    return weights[0] * pos + weights[1] * vis_l + weights[2] * unc_l


def jaccard_terms(
    pred_points: torch.Tensor,
    pred_visible: torch.Tensor,
    gt_points: torch.Tensor,
    gt_visible: torch.Tensor,
    query_frames: torch.Tensor | None = None,
    thresholds: tuple[float, ...] = (1, 2, 4, 8, 16),
    size: tuple[int, int] = (256, 256),
    valid: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """TAP-Vid metrics per video: Jaccard at each pixel threshold, AJ, ``<δ^x_avg`` and occlusion accuracy.

    Coordinates in [0, 1] are scaled to ``size`` = (width, height) pixels (TAP-Vid evaluates at 256×256). The
    query frame is not evaluated. Tracks of one video (the ``Q`` axis, if any) are pooled before the ratio.

    Args:
        pred_points, gt_points: ``[B, (Q,) T, 2]``. pred_visible, gt_visible: ``[B, (Q,) T]`` bool.
        query_frames: ``[B, (Q,)]`` (default 0). valid: ``[B, (Q,)]`` bool, the tracks that count (default all).
    Returns:
        per-video tensors ``[B]``: ``jaccard_{δ}``, ``average_jaccard``, ``position_accuracy``, ``occlusion_accuracy``
        and ``mean_error_px`` (the mean distance, at ``size``, over the visible evaluated frames).
    """
    if pred_points.ndim == 3:
        pred_points, pred_visible, gt_points, gt_visible = (
            x[:, None] for x in (pred_points, pred_visible, gt_points, gt_visible)
        )
        if query_frames is not None:
            query_frames = query_frames[:, None]
        if valid is not None:
            valid = valid[:, None]
    b, q, t, _ = gt_points.shape
    if query_frames is None:
        query_frames = torch.zeros(b, q, dtype=torch.long, device=gt_points.device)
    evaluated = torch.arange(t, device=gt_points.device) != query_frames[..., None]  # [B, Q, T]
    if valid is not None:
        evaluated = evaluated & valid.bool()[..., None]
    scale = torch.tensor(size, dtype=torch.float32, device=gt_points.device)
    dist = ((pred_points.float() - gt_points.float()) * scale).norm(dim=-1)
    gv, pv = gt_visible.bool(), pred_visible.bool()
    ev = evaluated.float()
    out: dict[str, torch.Tensor] = {}
    jaccards, within_all = [], []
    for thr in thresholds:
        within = dist < thr
        tp = ((within & gv & pv).float() * ev).sum((1, 2))
        gt_pos = (gv.float() * ev).sum((1, 2))
        false_pos = (((~gv | ~within) & pv).float() * ev).sum((1, 2))
        j = tp / (gt_pos + false_pos).clamp(min=1e-12)
        out[f"jaccard_{thr:g}"] = j
        jaccards.append(j)
        within_all.append(((within & gv).float() * ev).sum((1, 2)) / gt_pos.clamp(min=1e-12))
    out["average_jaccard"] = torch.stack(jaccards).mean(0)
    out["position_accuracy"] = torch.stack(within_all).mean(0)
    out["occlusion_accuracy"] = ((gv == pv).float() * ev).sum((1, 2)) / ev.sum((1, 2)).clamp(min=1)
    visible_ev = gv.float() * ev  # end-point error: a continuous companion of the thresholded figures
    out["mean_error_px"] = (dist * visible_ev).sum((1, 2)) / visible_ev.sum((1, 2)).clamp(min=1)
    return out


def average_jaccard(
    pred_points: torch.Tensor,
    pred_visible: torch.Tensor,
    gt_points: torch.Tensor,
    gt_visible: torch.Tensor,
    query_frames: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """Average Jaccard (TAP-Vid), mean over videos. ``pred_visible`` may be the visibility logits (> 0 = visible)."""
    if pred_visible.is_floating_point():
        pred_visible = pred_visible > 0
    terms = jaccard_terms(pred_points, pred_visible, gt_points, gt_visible, query_frames, **kwargs)
    return terms["average_jaccard"].mean()
