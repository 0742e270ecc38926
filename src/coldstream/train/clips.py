"""Clips as the trainer sees them: a list of :class:`ClipItem` read from the feature cache (or decoded live)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from coldstream.train.cache import FeatureCache


@dataclass(frozen=True)
class ClipItem:
    """One labelled clip: frames ``frames`` (any order, e.g. reversed) of video ``vkey``."""

    vkey: str  # cache key of the video (cache.video_key)
    frames: tuple[int, ...]  # frame indices in playback order
    label: int  # class index
    source: str  # what the split is by (photo / video name)


class CachedClips:
    """``dataset[i] -> (features bf16 [T, K, N, D], label)`` read from a :class:`FeatureCache`."""

    def __init__(self, cache: FeatureCache, items: Sequence[ClipItem]):
        self.cache = cache
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        it = self.items[i]
        return self.cache.get(it.vkey, it.frames), torch.tensor(it.label)


class DecodedClips:
    """``dataset[i] -> (frames float [T, 3, S, S], label)`` decoded and preprocessed on every access (the encoder
    then runs in the training loop; the benchmark's baseline)."""

    def __init__(self, items: Sequence[ClipItem], load: Callable[[str, list[int]], torch.Tensor]):
        self.items = list(items)
        self.load = load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        it = self.items[i]
        return self.load(it.vkey, list(it.frames)), torch.tensor(it.label)


class EncoderInTheLoop(torch.nn.Module):
    """``frames [B, T, 3, S, S] -> model(encoder.features(...))``: the same model fed by the frozen encoder live."""

    def __init__(self, encoder: torch.nn.Module, model: torch.nn.Module):
        super().__init__()
        self.encoder = encoder
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        with torch.no_grad():
            f = self.encoder.features(frames.flatten(0, 1))  # [K, B*T, N, D]
        f = f.permute(1, 0, 2, 3).reshape(b, t, *f.shape[:1], *f.shape[2:])  # [B, T, K, N, D]
        return self.model(f.to(torch.bfloat16))
