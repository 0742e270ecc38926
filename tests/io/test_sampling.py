"""Clip sampling (stride ``max(1, round(fps / target_fps))``, frames centred, a short video repeating its last sampled
frame; ``docs/video-io.md``) on hand-computed cases, random offsets and per-rank sharding."""

import pytest
import torch

from coldstream.errors import InputError
from coldstream.io.sampling import (
    all_strided_indices,
    centered_clip_indices,
    clip_stride,
    random_clip_indices,
    shard,
)


@pytest.mark.parametrize(
    "native, target, stride",
    [
        (30, 12, 2),  # 2.5 rounds to even (Python's round): effective 15 fps
        (30, 6, 5),
        (25, 6, 4),  # 4.1666
        (29.97, 12, 2),  # 2.4975
        (50, 20, 2),  # 2.5 -> 2
        (30, 20, 2),  # 1.5 -> 2
        (10, 12, 1),  # never below 1
        (24, 5, 5),  # 4.8
        (30, None, 1),
        (0.0, 12, 1),  # unknown native rate
    ],
)
def test_clip_stride(native, target, stride):
    assert clip_stride(native, target) == stride


def test_centered_hand_computed():
    # 300 frames, stride 5: span 75, start (299 - 75) // 2 = 112.
    assert centered_clip_indices(300, 16, 5) == list(range(112, 188, 5))
    # 100 frames, stride 2: span 30, start (99 - 30) // 2 = 34.
    assert centered_clip_indices(100, 16, 2) == list(range(34, 66, 2))
    # Exactly one frame longer than the span: start 0.
    assert centered_clip_indices(76, 16, 5) == list(range(0, 76, 5))
    # 16 frames, stride 1: the whole video.
    assert centered_clip_indices(16, 16, 1) == list(range(16))


def test_short_video_from_start_last_repeated():
    # span 75 >= 75 frames: frames 0, 5, ..., 70 (15 of them) then 70 repeated.
    assert centered_clip_indices(75, 16, 5) == list(range(0, 75, 5)) + [70]
    # 10 frames, stride 2: 0..8 then 8 repeated 11 times.
    assert centered_clip_indices(10, 16, 2) == [0, 2, 4, 6, 8] + [8] * 11
    assert centered_clip_indices(1, 16, 3) == [0] * 16


def test_random_offsets_cover_every_start_and_fit():
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(400):
        idx = random_clip_indices(40, 16, 2, generator=g)
        assert idx == list(range(idx[0], idx[0] + 32, 2)) and idx[-1] <= 39
        starts.add(idx[0])
    assert starts == set(range(0, 40 - 30))
    assert random_clip_indices(10, 16, 2, generator=g) == centered_clip_indices(10, 16, 2)


def test_all_strided():
    assert all_strided_indices(10, 3) == [0, 3, 6, 9]


def test_shard_disjoint_and_even():
    items = list(range(10))
    parts = [shard(items, r, 4) for r in range(4)]
    assert all(len(p) == 3 for p in parts)  # padded by wrapping: 12 slots
    assert set().union(*map(set, parts)) == set(items)
    unpadded = [shard(items, r, 4, pad=False) for r in range(4)]
    assert sorted(x for p in unpadded for x in p) == items
    with pytest.raises(InputError, match="rank"):
        shard(items, 4, 4)


@pytest.mark.parametrize("bad", [dict(n_total=0), dict(num_frames=0), dict(stride=0)])
def test_invalid_arguments(bad):
    args = dict(n_total=10, num_frames=16, stride=1) | bad
    with pytest.raises(InputError):
        centered_clip_indices(**args)
