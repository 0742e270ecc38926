"""The frozen-encoder contract every spatial encoder follows.

``enc(frames [B, 3, H, W]) -> [B, N, D]`` (final tokens) and ``enc.features(frames) -> [K, B, N, D]`` (what the
trainable enrichment consumes and the feature cache stores). Frozen means: no parameter requires grad, the module is in
eval mode whatever ``.train()`` is called with (DINOv3's RoPE jitter must never switch on), and the backbone runs under
``torch.inference_mode``.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import nn

from coldstream.errors import InputError, InputTypeError
from coldstream.model.encoders.weights import state_dict_digest
from coldstream.registry import Registry

ENCODERS = Registry("encoder")


class FrozenEncoder(nn.Module):
    """Base class. Subclasses set the attributes below and implement ``_tokens`` and ``_features``."""

    name: str  # registry name, e.g. "dinov3_vitl16"
    dim: int  # token width D
    num_prefix_tokens: int  # tokens before the patch grid (DINOv3: CLS + 4 storage; EfficientNet: 1 pooled)
    num_depths: int  # K, the number of feature depths ``features`` returns
    stride: int  # pixels per token side; H and W must be multiples of it
    mean: tuple[float, float, float]  # normalisation the weights expect (see coldstream.io.preprocess)
    std: tuple[float, float, float]

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.check_finite = True  # NaN/Inf check on inputs (one device sync); off inside CUDA-graph capture
        self.freeze()

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenEncoder:
        return super().train(False)

    def num_tokens(self, height: int, width: int) -> int:
        return self.num_prefix_tokens + (height // self.stride) * (width // self.stride)

    @cached_property
    def weights_id(self) -> str:
        """Content hash of the weights, for cache keys (computed once)."""
        return f"{self.name}:{state_dict_digest(self)}"

    def check_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Validate ``[B, 3, H, W]`` float frames and cast them to the backbone's dtype."""
        if not isinstance(frames, torch.Tensor):
            raise InputTypeError(
                f"{self.name}: frames must be a torch.Tensor [B, 3, H, W], got {type(frames).__name__}"
            )
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise InputError(
                f"{self.name}: frames must be [B, 3, H, W] (RGB, channels first), got shape {tuple(frames.shape)}"
            )
        if not frames.is_floating_point():
            raise InputTypeError(
                f"{self.name}: frames must be normalised floats, got dtype {frames.dtype}; "
                "convert uint8 decoder output with coldstream.io.preprocess.preprocess_frames"
            )
        h, w = frames.shape[-2:]
        if h % self.stride or w % self.stride or h == 0 or w == 0:
            raise InputError(
                f"{self.name}: frame height and width must be positive multiples of {self.stride}, got {h}x{w}"
            )
        capturing = frames.is_cuda and torch.cuda.is_current_stream_capturing()
        if self.check_finite and not capturing and not torch.isfinite(frames).all():
            raise InputError(f"{self.name}: frames contain NaN or Inf values")
        dtype = next(self.parameters()).dtype
        return frames if torch.is_autocast_enabled(frames.device.type) else frames.to(dtype)

    def compile(self, **kwargs) -> FrozenEncoder:
        """``torch.compile`` the frozen computation in place (``nn.Module.compile`` would also trace the
        ``inference_mode`` context, which inductor rejects); ``kwargs`` go to ``torch.compile``."""
        self._tokens = torch.compile(self._tokens, **kwargs)
        self._features = torch.compile(self._features, **kwargs)
        return self

    def _tokens(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _features(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Final tokens ``[B, N, D]`` for normalised frames ``[B, 3, H, W]``."""
        frames = self.check_frames(frames)
        with torch.inference_mode():
            return self._tokens(frames)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Frozen features ``[K, B, N, D]`` that the trainable enrichment consumes.

        The result is an ordinary tensor when grad mode is on (inference tensors cannot be saved for backward), so it
        can feed a trained module directly.
        """
        frames = self.check_frames(frames)
        with torch.inference_mode():
            out = self._features(frames)
        return out.clone() if torch.is_grad_enabled() else out
