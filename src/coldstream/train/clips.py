"""Clips as the trainer sees them: :class:`ClipItem` s (which frames of which cached video, and the label), read
from the feature cache as ``({"features": [T, K, N, D], **task inputs}, target)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from coldstream.train.cache import FeatureCache


@dataclass(frozen=True)
class ClipItem:
    """One labelled clip: frames ``frames`` (any order, e.g. reversed) of video ``vkey``.

    ``label`` is a class index (classification) or a dense task's target: a dict of tensors, or a function that
    loads one (large targets such as depth maps are read when the clip is). ``inputs`` are the task inputs the
    model takes besides the features (e.g. the initial box of a track), a dict of tensors.
    """

    vkey: str  # cache key of the video (cache.video_key)
    frames: tuple[int, ...]  # frame indices in playback order
    label: int | Mapping[str, Any] | Callable[[], Mapping[str, Any]]  # class index, or a dense target
    source: str  # what the split is by (photo / video name)
    inputs: Mapping[str, Any] | None = None  # task inputs of the model (e.g. {"init_box": [4]})


class CachedClips:
    """``dataset[i] -> ({"features": bf16 [T, K, N, D], **inputs}, target)`` read from a :class:`FeatureCache`;
    the target is the class index as a tensor, or the dense target's dict."""

    def __init__(self, cache: FeatureCache, items: Sequence[ClipItem]):
        self.cache = cache
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        it = self.items[i]
        x = {"features": self.cache.get(it.vkey, it.frames), **(it.inputs or {})}
        y = it.label() if callable(it.label) else it.label
        return x, (dict(y) if isinstance(y, Mapping) else torch.tensor(y))
