"""The streaming video model: frozen encoder + trainable enrichment + temporal core + task readout (SPEC §1, §7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from coldstream.model.cores import CoreState, TemporalCore, build_core
from coldstream.model.readouts import Readout, ReadoutState, build_readout


@dataclass
class StreamState:
    """Everything a batch of streams carries from frame to frame: the core's state (fp32 tensors at fixed
    addresses) and the readout's per-stream extras (Waymo's previous box, the point queries, the frame index)."""

    core: CoreState
    readout: ReadoutState

    @property
    def batch(self) -> int:
        return self.core.batch


class VideoModel(nn.Module):
    """``frames -> frozen encoder features [K] -> enrichment -> core -> readout``, causal in time.

    Three ways in, all giving the same outputs (eval mode, fp32, up to float rounding):

    * ``model(clip [B, T, 3, H, W], **task_inputs)``: the whole clip (core over time in parallel where it can);
    * ``model.forward_features(feats [B, T, K, N, D], **task_inputs)``: the same from precomputed frozen features
      (what the feature cache stores, ``encoder.features``), so training never runs the frozen backbone;
    * ``state = model.init_state(B, ...)``, ``out_t, state = model.step(frame [B, 3, H, W], state, reset=...)`` or
      ``model.stream(frames)``: frame by frame, B independent streams, each restartable with ``reset`` ``[B]``.

    Task inputs: ``init_box`` ``[B, 4]`` (waymo), ``query_points`` ``[B, (Q,) 2]`` and ``query_frames`` (pt).

    Args:
        encoder: a frozen encoder (``coldstream.model.build_encoder``): ``dim``, ``num_depths``, ``features``.
        core: a temporal core (``build_core``); its ``in_dim`` must equal ``encoder.dim``.
        readout: a task readout (``build_readout``) of width ``core.dim``.
        enrichment: the trainable ``[K, B, N, D] -> [B, N, D]`` module; default ``build_enrichment(encoder)``.
    """

    def __init__(self, encoder: nn.Module, core: TemporalCore, readout: Readout, enrichment: nn.Module | None = None):
        super().__init__()
        if core.in_dim != encoder.dim:
            raise ValueError(
                f"the core takes D={core.in_dim} tokens but the encoder gives D={encoder.dim}; "
                f"build the core with in_dim={encoder.dim}"
            )
        if readout.dim != core.dim:
            raise ValueError(f"the readout reads D={readout.dim} but the core outputs D={core.dim}")
        if enrichment is None:
            from coldstream.model.encoders import build_enrichment

            enrichment = build_enrichment(encoder)
        self.encoder = encoder
        self.enrichment = enrichment
        self.core = core
        self.readout = readout
        self.encoder_batch_size: int | None = None  # frames per encoder call in clip mode (memory only)

    @classmethod
    def build(
        cls,
        encoder: str = "dinov3_vitl16",
        core: str = "gmmix",
        task: str = "ssv2",
        weights: str | None = None,
        core_dim: int | None = None,
        attention: str = "sdpa",
        core_options: dict | None = None,
        readout_options: dict | None = None,
    ) -> VideoModel:
        """Build from names: ``VideoModel.build("dinov3_vitl16", "gmmix", "ssv2", weights=PATH)``.

        ``core_dim``: a core narrower than the encoder, behind an input projection (e.g. 256 for EfficientNet's 1280).
        """
        from coldstream.model.encoders import build_encoder

        enc = build_encoder(encoder, weights=weights, attention=attention)
        options = dict(core_options or {})
        if core_dim is not None and core_dim != enc.dim:
            options["in_dim"] = enc.dim
        c = build_core(core, core_dim or enc.dim, **options)
        return cls(enc, c, build_readout(task, c.dim, **(readout_options or {})))

    def train(self, mode: bool = True) -> VideoModel:
        super().train(mode)
        self.encoder.eval()  # frozen, always (DINOv3's RoPE jitter must never switch on)
        return self

    def parameter_count(self) -> dict[str, int]:
        """Parameters per part; ``paper`` = encoder + enrichment + core, the convention of SPEC §3.8."""
        n = {
            name: sum(p.numel() for p in getattr(self, name).parameters())
            for name in ("encoder", "enrichment", "core", "readout")
        }
        n["paper"] = n["encoder"] + n["enrichment"] + n["core"]
        n["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return n

    def _check_clip(self, clip: torch.Tensor) -> None:
        if not isinstance(clip, torch.Tensor) or clip.ndim != 5 or clip.shape[2] != 3:
            shape = tuple(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__
            raise ValueError(f"expected a clip [B, T, 3, H, W] of normalised frames, got {shape}")
        if clip.shape[1] == 0:
            raise ValueError(f"the clip has T=0 frames (shape {tuple(clip.shape)})")

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        """Frozen features of a clip: ``[B, T, 3, H, W] -> [B, T, K, N, D]`` (no gradient; what a cache stores)."""
        self._check_clip(clip)
        b, t = clip.shape[:2]
        frames = clip.flatten(0, 1)
        step = self.encoder_batch_size or frames.shape[0]
        feats = torch.cat([self.encoder.features(frames[i : i + step]) for i in range(0, frames.shape[0], step)], 1)
        return feats.unflatten(1, (b, t)).permute(1, 2, 0, 3, 4)

    def tokens(self, feats: torch.Tensor) -> torch.Tensor:
        """Enriched tokens: ``[B, T, K, N, D] -> [B, T, N, D]`` (BatchNorm statistics over all B·T frames)."""
        k, d = getattr(self.encoder, "num_depths", feats.shape[2]), self.encoder.dim
        if feats.ndim != 5 or feats.shape[2] != k or feats.shape[-1] != d:
            raise ValueError(f"expected features [B, T, K={k}, N, D={d}], got {tuple(feats.shape)}")
        if feats.shape[1] == 0:
            raise ValueError(f"the features have T=0 frames (shape {tuple(feats.shape)})")
        b, t = feats.shape[:2]
        x = self.enrichment(feats.permute(2, 0, 1, 3, 4).flatten(1, 2))
        return x.unflatten(0, (b, t))

    def forward_features(self, feats: torch.Tensor, state: StreamState | None = None, **task_inputs) -> Any:
        """Clip from precomputed features ``[B, T, K, N, D]``; with ``state`` the clip continues that state (core
        state handed over in place; the readout restarts from ``task_inputs``)."""
        o = self.core(self.tokens(feats), None if state is None else state.core)
        return self.readout(o, **task_inputs)

    def forward(self, clip: torch.Tensor, **task_inputs) -> Any:
        """Whole clip ``[B, T, 3, H, W]`` -> the task output (``[B, T, ...]`` or a dict of them)."""
        return self.forward_features(self.encode(clip), **task_inputs)

    def init_state(
        self,
        batch: int,
        tokens: int | None = None,
        frame_size: tuple[int, int] | None = None,
        device: torch.device | str | None = None,
        **task_inputs,
    ) -> StreamState:
        """Zero state for ``batch`` streams; give ``tokens`` (N) or ``frame_size`` ``(H, W)``."""
        if tokens is None:
            if frame_size is None:
                raise ValueError("init_state needs tokens=N or frame_size=(H, W) to size the core state")
            tokens = self.encoder.num_tokens(*frame_size)
        if device is None:
            device = next(self.core.parameters(), torch.empty(0)).device
        return StreamState(
            self.core.init_state(batch, tokens, device=device),
            self.readout.init_state(batch, device, **task_inputs),
        )

    def step_features(
        self, feats_t: torch.Tensor, state: StreamState, reset: torch.Tensor | None = None, **task_inputs
    ) -> tuple[Any, StreamState]:
        """One frame from its frozen features ``[B, K, N, D]``; see ``step``."""
        k, d = getattr(self.encoder, "num_depths", feats_t.shape[1]), self.encoder.dim
        if feats_t.ndim != 4 or feats_t.shape[1] != k or feats_t.shape[-1] != d:
            raise ValueError(f"expected frame features [B, K={k}, N, D={d}], got {tuple(feats_t.shape)}")
        if not isinstance(state, StreamState):
            raise TypeError(f"state must come from model.init_state(...), got {type(state).__name__}")
        x = self.enrichment(feats_t.transpose(0, 1))
        o, _ = self.core.step(x, state.core, reset=reset)
        if reset is not None:
            self.readout.reset_state(state.readout, reset, **task_inputs)
        out, _ = self.readout.step(o, state.readout)
        return out, state

    def step(
        self, frame: torch.Tensor, state: StreamState, reset: torch.Tensor | None = None, **task_inputs
    ) -> tuple[Any, StreamState]:
        """One frame ``[B, 3, H, W]`` of B streams -> (output for this frame, the same state updated in place).

        ``reset`` ``[B]`` bool: streams where a new video starts with this frame (their state is zeroed first);
        ``task_inputs`` then give those streams' new task inputs (all B rows; only the reset rows are used).
        """
        if not isinstance(frame, torch.Tensor) or frame.ndim != 4:
            shape = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
            raise ValueError(f"step expects one frame per stream [B, 3, H, W], got {shape}")
        return self.step_features(self.encoder.features(frame).transpose(0, 1), state, reset, **task_inputs)

    def stream(self, frames: torch.Tensor, state: StreamState | None = None, **task_inputs) -> Any:
        """Frame-by-frame over a clip ``[B, T, 3, H, W]`` (fresh state unless given); same layout as ``forward``."""
        self._check_clip(frames)
        if state is None:
            state = self.init_state(
                frames.shape[0], frame_size=tuple(frames.shape[-2:]), device=frames.device, **task_inputs
            )
        outs = [self.step(frames[:, t], state)[0] for t in range(frames.shape[1])]
        return self.readout.stack_steps(outs, state.readout)
