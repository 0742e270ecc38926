"""Waymo box tracking: a box query decoded against frame t, fed back (detached) as frame t+1's query."""

from __future__ import annotations

import torch
from torch import nn

from coldstream.errors import InputError
from coldstream.model.layers.decoder import QueryDecoder
from coldstream.model.layers.fourier import FourierPositionEncoding
from coldstream.model.readouts.base import READOUTS, Readout, ReadoutState, stack_frames


class BBoxQueryEncoder(nn.Module):
    """Box ``(cx, cy, w, h)`` ``[F, 4]`` -> one query ``[F, 1, d]``: Fourier(16) -> MLP 128->512->512 -> Linear."""

    def __init__(self, dim: int = 1024, num_frequencies: int = 16, hidden: int = 512):
        super().__init__()
        self.fourier_enc = FourierPositionEncoding(num_frequencies, input_dim=4)
        self.bbox_encoder = nn.Sequential(
            nn.Linear(self.fourier_enc.output_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.to_query = nn.Linear(hidden, dim)

    def forward(self, box: torch.Tensor) -> torch.Tensor:
        return self.to_query(self.bbox_encoder(self.fourier_enc.encode_for(box, self.bbox_encoder[0]))).unsqueeze(1)


@READOUTS.register("waymo", aliases=("box_tracking", "tracking"))
class BoxTrackingReadout(Readout):
    """Per frame: ``q_t = QueryEnc(b_{t-1})`` (``b_{-1}`` = the given initial box); ``q_t = Decoder(q_t, proj(o_t))``
    (1 pre-norm layer, 1024-d, 4 heads, ReLU FFN 4096); ``b_t = MLP(q_t)`` (1024 -> GELU -> 4, raw cxcywh in
    [0, 1] frame coordinates, no sigmoid); ``b_t`` detached becomes the next query (autoregressive feedback).

    Clip: ``forward(o [B, T, N, D], init_box=[B, 4]) -> [B, T, 4]``. Streaming state: ``box`` ``[B, 4]`` fp32.
    Multi-object tracking: one stream per initial box. Keys as the reference (``proj_to_readout`` only if D != 1024).
    """

    task = "waymo"

    def __init__(
        self,
        dim: int,
        width: int = 1024,
        num_heads: int = 4,
        num_layers: int = 1,
        hidden: int = 512,
        attention: str = "sdpa",
    ):
        super().__init__(dim, attention)
        self.proj_to_readout = nn.Linear(dim, width) if dim != width else nn.Identity()
        self.bbox_query_encoder = BBoxQueryEncoder(width, hidden=hidden)
        self.readout = QueryDecoder(width, num_heads, num_layers, attention=attention)
        self.bbox_head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 4))

    @staticmethod
    def _check_box(init_box: torch.Tensor | None, batch: int) -> torch.Tensor:
        if init_box is None or init_box.shape != (batch, 4):
            got = None if init_box is None else tuple(init_box.shape)
            raise InputError(f"waymo readout: needs init_box [B={batch}, 4] (cx, cy, w, h in [0, 1]), got {got}")
        return init_box

    def predict(self, o_t: torch.Tensor, prev_box: torch.Tensor) -> torch.Tensor:
        """``o_t`` ``[B, N, D]``, previous box ``[B, 4]`` -> box ``[B, 4]``."""
        q = self.readout(self.bbox_query_encoder(prev_box), self.proj_to_readout(o_t))
        return self.bbox_head(q[:, 0])

    def init_state(self, batch: int, device=None, init_box: torch.Tensor | None = None, **_) -> ReadoutState:
        box = self._check_box(init_box, batch)
        return {"box": box.detach().to(device=device or box.device, dtype=torch.float32).clone()}

    def reset_state(self, state: ReadoutState, mask: torch.Tensor, init_box: torch.Tensor | None = None, **_):
        box = self._check_box(init_box, state["box"].shape[0]).to(state["box"])
        state["box"].copy_(torch.where(mask.view(-1, 1).to(box.device), box, state["box"]))
        return state

    def step(self, o_t: torch.Tensor, state: ReadoutState) -> tuple[torch.Tensor, ReadoutState]:
        self._check(o_t, 3)
        box = self.predict(o_t, state["box"])
        state["box"].copy_(box.detach())
        return box, state

    def forward(self, o: torch.Tensor, init_box: torch.Tensor | None = None, **_) -> torch.Tensor:
        self._check(o, 4)
        prev = self._check_box(init_box, o.shape[0])
        outs = []
        for t in range(o.shape[1]):
            box = self.predict(o[:, t], prev)
            outs.append(box)
            prev = box.detach()
        return stack_frames(outs)


def box_cxcywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` (cx, cy, w, h) -> (x0, y0, x1, y1)."""
    cx, cy, w, h = box.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise IoU and generalised IoU of cxcywh boxes ``[..., 4]`` (negative widths count as empty)."""
    a, b = box_cxcywh_to_xyxy(a.float()), box_cxcywh_to_xyxy(b.float())
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / (union + eps)
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    return iou, iou - (hull - union) / (hull + eps)


def _valid(valid: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.ones(like.shape[:-1], dtype=torch.bool, device=like.device) if valid is None else valid.bool()


def box_tracking_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    l1_weight: float = 5.0,
    giou_weight: float = 2.0,
) -> torch.Tensor:
    """L1 on (cx, cy, w, h) + generalised-IoU loss, weights 5 / 2 as DETR's box losses (the paper does not publish
    its loss; our choice).

    Args:
        pred, target: ``[B, T, 4]`` cxcywh. valid: ``[B, T]`` frames with a ground-truth box (default all).
    """
    if pred.shape != target.shape or pred.shape[-1] != 4:
        raise InputError(f"expected pred and target [B, T, 4], got {tuple(pred.shape)} and {tuple(target.shape)}")
    m = _valid(valid, pred).float()
    denom = m.sum().clamp(min=1)
    l1 = ((pred.float() - target.float()).abs().sum(-1) * m).sum() / denom
    _, giou = box_iou(pred, target)
    return l1_weight * l1 + giou_weight * ((1 - giou) * m).sum() / denom


def track_iou(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU per frame averaged over each track's valid frames: ``(per-track IoU [B], counted [B])``, where a track
    with no valid frame is not counted (its IoU is 0). ``[B, T, 4]`` cxcywh; ``valid`` ``[B, T]``."""
    iou, _ = box_iou(pred, target)
    m = _valid(valid, pred).float()
    return (iou * m).sum(-1) / m.sum(-1).clamp(min=1), m.sum(-1) > 0


def mean_iou(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """mIoU: IoU per frame, averaged over each track's valid frames, then over tracks. ``[B, T, 4]`` cxcywh."""
    per_track, keep = track_iou(pred, target, valid)
    return per_track[keep].mean() if keep.any() else per_track.new_tensor(float("nan"))
