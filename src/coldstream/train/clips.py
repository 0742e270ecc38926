"""Clips as the trainer sees them: :class:`ClipItem` s (which frames of which cached video, and the label), read
from the feature cache as ``({"features": [T, K, N, D]}, label)``."""

from __future__ import annotations

from collections.abc import Sequence
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
    """``dataset[i] -> ({"features": bf16 [T, K, N, D]}, label)`` read from a :class:`FeatureCache`."""

    def __init__(self, cache: FeatureCache, items: Sequence[ClipItem]):
        self.cache = cache
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        it = self.items[i]
        return {"features": self.cache.get(it.vkey, it.frames)}, torch.tensor(it.label)
