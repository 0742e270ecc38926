"""The trainable model over cached frozen features: enrichment -> temporal core -> streaming readout.

Input is what the feature cache stores, ``[B, T, K, N, D]`` (K depths of the frozen encoder's final-normed
tokens, SPEC §2.4); output is logits ``[B, T, C]``, one prediction per frame from that frame's core output only
(streaming protocol, SPEC §5); the clip's answer is the last frame's. Two baselines share the interface:

* ``core="identity"``: no temporal module; the readout sees one frame (the last one decides).
* ``core="meanpool"``: the frames' features are averaged over the clip before the readout, so the model is blind to
  frame order (a clip and its reverse get the same output). It is not causal, hence not a streaming model.
"""

from __future__ import annotations

import torch
from torch import nn

from coldstream.model.cores import build_core


class LinearReadout(nn.Module):
    """Per frame: LayerNorm, mean over tokens, dropout, Linear -> logits. ``[B, T, N, D] -> [B, T, C]``."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.norm(o).mean(dim=-2)))


class _Enrichment(nn.Module):
    """``[B, T, K, N, D] -> [B, T, N, D]``: "last" depth, "mean" over depths, or "mlp" (SPEC §2.4 BN+MLP per depth)."""

    def __init__(self, mode: str, dim: int, depths: int, prefix_tokens: int):
        super().__init__()
        if mode not in ("last", "mean", "mlp"):
            raise ValueError(f"model.enrichment must be last, mean or mlp, got {mode!r}")
        self.mode = mode
        self.mlp = None
        if mode == "mlp" and depths > 1:
            from coldstream.model.encoders.enrichment import MultiDepthEnrichment

            self.mlp = MultiDepthEnrichment(dim, depths, prefix_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "last" or x.shape[2] == 1:
            return x[:, :, -1]
        if self.mode == "mean":
            return x.mean(dim=2)
        b, t, k, n, d = x.shape
        y = self.mlp(x.permute(2, 0, 1, 3, 4).reshape(k, b * t, n, d))  # [K, B*T, N, D] -> [B*T, N, D]
        return y.reshape(b, t, n, d)


class ClipModel(nn.Module):
    """Enrichment + core + readout over cached features.

    Args:
        feature_shape: ``(K, N, D)`` per frame, as stored in the cache.
        num_classes: classes of the readout.
        core: ``gmmix | rvmrnn | mamba | mambamix | identity | meanpool``.
        core_dim: core width (an input projection ``D -> core_dim`` when they differ).
        core_layers: number of core layers.
        core_options: extra keyword arguments for :func:`coldstream.model.cores.build_core`.
        enrichment: ``last | mean | mlp``.
        readout: ``linear`` (:class:`LinearReadout`) or ``attentive`` (SPEC §5.1 probe at a reduced width).
        prefix_tokens: tokens before the patch grid (kept as they are by ``token_grid``).
        pos_embed: add a learned embedding per token position before the core. Convolutional features (EfficientNet)
            carry no position, and the cores treat tokens as a set, so without it no core can tell where content moved
            (DINOv3 patch features do carry position through RoPE). Initialised N(0, 0.02²) as in ViTs.
        token_grid: when > 0, average-pool the square patch grid to ``token_grid × token_grid`` tokens before the
            core (a fixed op on the cached features; makes the CPU main job affordable). 0 keeps every token.
    """

    def __init__(
        self,
        feature_shape: tuple[int, int, int],
        num_classes: int,
        *,
        core: str = "gmmix",
        core_dim: int = 128,
        core_layers: int = 1,
        core_options: dict | None = None,
        enrichment: str = "last",
        readout: str = "linear",
        dropout: float = 0.0,
        prefix_tokens: int = 0,
        token_grid: int = 0,
        pos_embed: bool = True,
    ):
        super().__init__()
        k, n, d = feature_shape
        self.feature_shape = tuple(feature_shape)
        self.kind = core
        self.prefix_tokens = prefix_tokens
        self.token_grid = token_grid
        self.enrich = _Enrichment(enrichment, d, k, prefix_tokens)
        n_core = n if not token_grid else prefix_tokens + token_grid * token_grid
        self.pos_embed = nn.Parameter(torch.randn(n_core, d) * 0.02) if pos_embed else None
        opts = dict(core_options or {})
        if core in ("identity", "meanpool"):
            self.core = build_core("identity", core_dim, in_dim=d)
        else:
            opts.setdefault("num_layers", core_layers)
            if core == "rvmrnn" and "num_heads" not in opts:
                opts["num_heads"] = max(1, core_dim // 32)
            self.core = build_core(core, core_dim, in_dim=d, **opts)
        if readout == "linear":
            self.readout = LinearReadout(core_dim, num_classes, dropout)
        elif readout == "attentive":
            from coldstream.model.readouts import ClassificationReadout

            self.readout = ClassificationReadout(
                core_dim, num_classes, width=core_dim, num_heads=max(1, core_dim // 32)
            )
        else:
            raise ValueError(f"model.readout must be linear or attentive, got {readout!r}")

    def _pool_tokens(self, x: torch.Tensor) -> torch.Tensor:
        if not self.token_grid:
            return x
        b, t, n, d = x.shape
        p = self.prefix_tokens
        side = int(round((n - p) ** 0.5))
        if side * side != n - p:
            raise ValueError(f"token_grid needs a square patch grid; got {n - p} patch tokens after {p} prefix tokens")
        grid = x[:, :, p:].reshape(b * t, side, side, d).permute(0, 3, 1, 2)
        pooled = torch.nn.functional.adaptive_avg_pool2d(grid, self.token_grid).flatten(2).transpose(1, 2)
        return torch.cat([x[:, :, :p], pooled.reshape(b, t, -1, d)], dim=2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``[B, T, K, N, D]`` cached features -> logits ``[B, T, C]`` (the last frame gives the clip's answer)."""
        if feats.ndim != 5 or tuple(feats.shape[2:]) != self.feature_shape:
            raise ValueError(
                f"expected features [B, T, K, N, D] with (K, N, D) = {self.feature_shape}, got {tuple(feats.shape)}"
            )
        x = self._pool_tokens(self.enrich(feats.float()))
        if self.pos_embed is not None:
            x = x + self.pos_embed
        if self.kind == "meanpool":
            x = x.mean(dim=1, keepdim=True)  # order-blind: the whole clip collapses to one averaged frame
        return self.readout(self.core(x))

    @torch.no_grad()
    def stream(self, frame_feats: torch.Tensor, state=None):
        """One frame ``[B, K, N, D]`` -> (logits ``[B, C]``, state): the streaming step (not for ``meanpool``)."""
        if self.kind == "meanpool":
            raise ValueError("the meanpool baseline averages a whole clip; it cannot stream frame by frame")
        x = self._pool_tokens(self.enrich(frame_feats.float().unsqueeze(1)))[:, 0]  # [B, N, D]
        if self.pos_embed is not None:
            x = x + self.pos_embed
        if state is None:
            state = self.core.init_state(x.shape[0], x.shape[1], device=x.device)
        o, state = self.core.step(x, state)
        return self.readout(o.unsqueeze(1))[:, 0], state


def build_clip_model(feature_shape, num_classes: int, mcfg, prefix_tokens: int = 0) -> ClipModel:
    """A :class:`ClipModel` from a :class:`~coldstream.train.config.ModelConfig`."""
    return ClipModel(
        feature_shape,
        num_classes,
        core=mcfg.core,
        core_dim=mcfg.core_dim,
        core_layers=mcfg.core_layers,
        core_options=mcfg.core_options,
        enrichment=mcfg.enrichment,
        readout=mcfg.readout,
        dropout=mcfg.dropout,
        prefix_tokens=prefix_tokens,
        token_grid=mcfg.token_grid,
        pos_embed=mcfg.pos_embed,
    )
