"""Offline (non-streaming, 4DS-protocol) readouts: each reads the whole clip's T·N tokens at once.

The reference code keeps these beside the streaming readouts for comparisons with non-causal video encoders (the
frozen-encoder table of the paper). Same widths and heads as the streaming versions:

* ``ssv2_offline``: the attentive probe over all T·N tokens, a learned 16-frame temporal embedding added to the
  normalised tokens (linearly interpolated when T != 16) -> one answer per clip ``[B, num_classes]``.
* ``waymo_offline``: one query from the initial box attends to all T·N tokens; the head outputs the T boxes at once.
* ``pt_offline``: 8 queries = the point query + 8 learned temporal embeddings, each predicting 2 frames x (x, y,
  visibility, uncertainty).
* ``scannet_offline``: one query per 2 x 8 x 8 spatio-temporal patch (8 x 28 x 28 = 6272 queries at 16 frames of
  224²), each regressing its 128 depths.

Our choices where the reference is silent (docs/model.md, "Offline readouts"): the box and point decoders add a
learned per-frame embedding to their memory tokens (a decoder over all T·N tokens has no other way to tell frame t's
tokens from frame t+1's); the readouts with a fixed number of outputs per clip (boxes, points, depth) need T equal to
their ``num_frames``. None of them can stream: ``init_state`` / ``step`` refuse with a message saying so.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from coldstream.errors import InputError
from coldstream.model.layers.attention_readout import AttentionReadout
from coldstream.model.readouts.base import READOUTS, Readout, ReadoutState
from coldstream.model.readouts.box_tracking import BoxTrackingReadout
from coldstream.model.readouts.classification import ClassificationReadout
from coldstream.model.readouts.depth import DepthReadout
from coldstream.model.readouts.point_tracking import (
    QUERY_UNCERTAINTY_LOGIT,
    QUERY_VISIBILITY_LOGIT,
    PointTrackingReadout,
)


class OfflineReadout(Readout):
    """Base of the offline readouts: ``forward(o [B, T, N, D], **inputs)`` only; streaming is refused."""

    streaming: ClassVar[bool] = False
    num_frames: int

    def _refuse_streaming(self) -> None:
        raise InputError(
            f"the {type(self).__name__} ({self.task} offline) reads the whole clip at once and cannot stream: "
            f"run the model on clips (model(clip) / forward_features), or use the streaming readout {self.task!r}"
        )

    def init_state(self, batch: int, device=None, **inputs) -> ReadoutState:
        self._refuse_streaming()

    def reset_state(self, state: ReadoutState, mask: torch.Tensor, **inputs) -> ReadoutState:
        self._refuse_streaming()

    def step(self, o_t: torch.Tensor, state: ReadoutState) -> tuple[Any, ReadoutState]:
        self._refuse_streaming()

    def _check_frames(self, o: torch.Tensor) -> None:
        self._check(o, 4)
        if o.shape[1] != self.num_frames:
            raise InputError(
                f"{self.task} offline readout: predicts {self.num_frames} frames per clip, got a clip of "
                f"T={o.shape[1]} (set readout_options.num_frames to the clip length)"
            )


def _frame_embedding(num_frames: int, width: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(1, num_frames, 1, width) * 0.02)


@READOUTS.register("ssv2_offline", aliases=("classification_offline",))
class OfflineClassificationReadout(OfflineReadout, ClassificationReadout):
    """The SSv2 attentive probe (768-d, 12 heads) over all T·N tokens of the clip, with a learned
    ``(1, num_frames, 1, D)`` temporal embedding (interpolated to T) -> ``[B, num_classes]``."""

    def __init__(
        self,
        dim: int,
        num_classes: int = 174,
        width: int = 768,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        num_frames: int = 16,
        attention: str = "sdpa",
    ):
        Readout.__init__(self, dim, attention)
        self.num_classes, self.num_frames = num_classes, num_frames
        self.probe = AttentionReadout(
            dim, width, num_classes, 1, num_heads, mlp_ratio, temporal_posenc=True, attention=attention,
            num_frames=num_frames,
        )  # fmt: skip

    def forward(self, o: torch.Tensor, **_) -> torch.Tensor:
        self._check(o, 4)
        return self.probe(o)[:, 0]


@READOUTS.register("waymo_offline", aliases=("box_tracking_offline",))
class OfflineBoxTrackingReadout(OfflineReadout, BoxTrackingReadout):
    """One query from the initial box (the streaming readout's encoder) -> the decoder (1 layer, 4 heads) over
    ``proj(o) + frame embedding``, all T·N tokens -> MLP -> ``num_frames`` x 4 boxes ``[B, T, 4]`` (raw cxcywh)."""

    def __init__(
        self,
        dim: int,
        width: int = 1024,
        num_heads: int = 4,
        num_layers: int = 1,
        hidden: int = 512,
        num_frames: int = 16,
        attention: str = "sdpa",
    ):
        BoxTrackingReadout.__init__(self, dim, width, num_heads, num_layers, hidden, attention)
        self.num_frames = num_frames
        self.frame_embed = _frame_embedding(num_frames, width)
        self.bbox_head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, num_frames * 4))

    def forward(self, o: torch.Tensor, init_box: torch.Tensor | None = None, **_) -> torch.Tensor:
        self._check_frames(o)
        box = self._check_box(init_box, o.shape[0])
        memory = (self.proj_to_readout(o) + self.frame_embed).flatten(1, 2)
        q = self.readout(self.bbox_query_encoder(box), memory)
        return self.bbox_head(q[:, 0]).view(o.shape[0], self.num_frames, 4)


@READOUTS.register("pt_offline", aliases=("point_tracking_offline",))
class OfflinePointTrackingReadout(OfflineReadout, PointTrackingReadout):
    """``num_frames / frames_per_query`` queries = the point query (the streaming readout's encoder) + a learned
    temporal embedding each; the decoder (1 layer, 8 heads) over ``proj(o) + frame embedding``, all T·N tokens; query
    j predicts frames ``j·k .. j·k + k − 1`` (k = ``frames_per_query``) as (x, y, visibility, uncertainty); positions
    through a sigmoid, and the query frame overwritten as in the streaming readout. Same inputs and outputs."""

    def __init__(
        self,
        dim: int,
        width: int = 1024,
        num_heads: int = 8,
        num_layers: int = 1,
        hidden: int = 512,
        num_frames: int = 16,
        frames_per_query: int = 2,
        attention: str = "sdpa",
    ):
        PointTrackingReadout.__init__(self, dim, width, num_heads, num_layers, hidden, attention)
        if num_frames % frames_per_query:
            raise InputError(f"pt offline readout: {num_frames} frames are not a multiple of {frames_per_query}")
        self.num_frames, self.frames_per_query = num_frames, frames_per_query
        self.temporal_queries = nn.Parameter(torch.randn(num_frames // frames_per_query, width) * 0.02)
        self.frame_embed = _frame_embedding(num_frames, width)
        self.prediction_head = nn.Sequential(
            nn.Linear(width, width // 2), nn.GELU(), nn.Linear(width // 2, frames_per_query * 4)
        )

    def forward(self, o: torch.Tensor, query_points=None, query_frames=None, **_) -> dict:
        self._check_frames(o)
        b, t = o.shape[:2]
        pts, qf, multi = self._queries(b, query_points, query_frames, o.device)
        q = pts.shape[1]
        memory = (self.proj_to_readout(o) + self.frame_embed).flatten(1, 2)  # [B, T·N, w]
        memory = memory[:, None].expand(b, q, *memory.shape[1:]).flatten(0, 1)
        queries = self._encode_query(pts.reshape(-1, 2)) + self.temporal_queries  # [B·Q, T/k, w]
        pred = self.prediction_head(self.readout(queries, memory)).float().view(b, q, t, 4)
        at_query = torch.arange(t, device=o.device) == qf[..., None]  # [B, Q, T]
        points = torch.where(at_query[..., None], pts[:, :, None].float(), torch.sigmoid(pred[..., :2]))
        vis = torch.where(at_query, pred.new_tensor(QUERY_VISIBILITY_LOGIT), pred[..., 2])
        unc = torch.where(at_query, pred.new_tensor(QUERY_UNCERTAINTY_LOGIT), pred[..., 3])
        out = {"pred_points": points, "pred_visibility": vis, "pred_uncertainty": unc}
        return out if multi else {k: v[:, 0] for k, v in out.items()}


@READOUTS.register("scannet_offline", aliases=("depth_offline",))
class OfflineDepthReadout(OfflineReadout, DepthReadout):
    """The ScanNet attentive probe (1024-d, 16 heads) with one query per ``frames_per_query`` x 8 x 8
    spatio-temporal patch over all T·N tokens (a learned ``num_frames`` temporal embedding); each query regresses
    its patch's depths in (frame, row, column) order, reassembled to ``pred_depth`` ``[B, T, H, W]``."""

    def __init__(
        self,
        dim: int,
        width: int = 1024,
        num_heads: int = 16,
        image_size: int = 224,
        patch: int = 8,
        num_frames: int = 16,
        frames_per_query: int = 2,
        attention: str = "sdpa",
    ):
        Readout.__init__(self, dim, attention)
        if image_size % patch or num_frames % frames_per_query:
            raise InputError(
                f"depth offline readout: image size {image_size} must be a multiple of the patch {patch} and "
                f"{num_frames} frames a multiple of {frames_per_query}"
            )
        self.image_size, self.patch, self.grid = image_size, patch, image_size // patch
        self.num_frames, self.frames_per_query = num_frames, frames_per_query
        queries = (num_frames // frames_per_query) * self.grid * self.grid
        self.probe = AttentionReadout(
            dim, width, frames_per_query * patch * patch, queries, num_heads, temporal_posenc=True,
            attention=attention, num_frames=num_frames,
        )  # fmt: skip

    def forward(self, o: torch.Tensor, **_) -> torch.Tensor:
        self._check_frames(o)
        b, g, p, k = o.shape[0], self.grid, self.patch, self.frames_per_query
        out = self.probe(o).view(b, self.num_frames // k, g, g, k, p, p)  # [B, T/k, gy, gx, k, py, px]
        return out.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, self.num_frames, g * p, g * p)
