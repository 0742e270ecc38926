"""DINOv3 ViT-S/16, B/16, L/16 backbone (evaluation mode), with the official checkpoint's parameter names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from coldstream.errors import InputError
from coldstream.model.encoders.dinov3.block import Block, LinearKMaskedBias
from coldstream.model.encoders.dinov3.rope import RopePositionEmbedding


@dataclass(frozen=True)
class DINOv3Config:
    embed_dim: int  # token width D
    depth: int  # number of transformer blocks
    num_heads: int  # attention heads (head dim 64)
    patch_size: int = 16  # pixels per patch side
    num_storage_tokens: int = 4  # "register" tokens after CLS
    mlp_ratio: float = 4.0  # MLP hidden width / D
    rope_base: float = 100.0  # RoPE period base

    @property
    def intermediate_layers(self) -> tuple[int, ...]:
        """0-based blocks read for multi-depth features: depth/4−1, depth/2−1, 3depth/4−1, depth−1."""
        d = self.depth
        return (d // 4 - 1, d // 2 - 1, 3 * d // 4 - 1, d - 1)


DINOV3_CONFIGS: dict[str, DINOv3Config] = {
    "dinov3_vits16": DINOv3Config(embed_dim=384, depth=12, num_heads=6),
    "dinov3_vitb16": DINOv3Config(embed_dim=768, depth=12, num_heads=12),
    "dinov3_vitl16": DINOv3Config(embed_dim=1024, depth=24, num_heads=16),
}


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, h·w, D], row-major


class DINOv3ViT(nn.Module):
    """Evaluation-mode DINOv3 ViT. Input ``[B, 3, H, W]`` (H, W multiples of 16, ImageNet-normalised)."""

    def __init__(self, cfg: DINOv3Config, attention: str = "sdpa"):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.num_prefix_tokens = 1 + cfg.num_storage_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.storage_tokens = nn.Parameter(torch.zeros(1, cfg.num_storage_tokens, d))
        self.mask_token = nn.Parameter(torch.zeros(1, d))  # only used by masked pre-training; kept for the layout
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        self.rope_embed = RopePositionEmbedding(d // cfg.num_heads, cfg.rope_base)
        self.blocks = nn.ModuleList([Block(d, cfg.num_heads, cfg.mlp_ratio, attention) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(d, eps=1e-5)
        self.init_weights()

    def init_weights(self) -> None:
        """DINOv3's random initialisation (used only when no weights file is given)."""
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.storage_tokens, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def reset_buffers(self) -> None:
        """Rebuild buffers whose value is fixed by the architecture (after loading a checkpoint)."""
        for m in self.modules():
            if isinstance(m, LinearKMaskedBias):
                m.reset_mask()

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, _, h, w = x.shape
        p = self.cfg.patch_size
        patches = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), self.storage_tokens.expand(b, -1, -1), patches), dim=1)
        return tokens, self.rope_embed(h // p, w // p)

    def get_intermediate_layers(
        self, x: torch.Tensor, n: Sequence[int] | None = None, norm: bool = True
    ) -> tuple[torch.Tensor, ...]:
        """Outputs of the blocks with 0-based indices ``n`` (default: ``cfg.intermediate_layers``), all tokens
        ``[B, N, D]``, each passed through the final LayerNorm when ``norm``. Blocks after the last requested one
        are not run."""
        n = tuple(self.cfg.intermediate_layers if n is None else n)
        if not n or min(n) < 0 or max(n) >= self.cfg.depth:
            raise InputError(f"layer indices must be in [0, {self.cfg.depth - 1}], got {n}")
        z, rope = self._tokens(x)
        outs: dict[int, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks[: max(n) + 1]):
            z = blk(z, rope, self.num_prefix_tokens)
            if i in n:
                outs[i] = self.norm(z) if norm else z
        return tuple(outs[i] for i in n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Final-normed tokens ``[B, 1 + 4 + h·w, D]``: [CLS | storage | patches]."""
        z, rope = self._tokens(x)
        for blk in self.blocks:
            z = blk(z, rope, self.num_prefix_tokens)
        return self.norm(z)
