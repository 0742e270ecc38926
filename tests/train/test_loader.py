"""The training loop's prefetching batch reader: same batches in the same order, errors where they happen, a thread
that stops when the loop does."""

from __future__ import annotations

import threading

import pytest
import torch

from coldstream.train.loader import Prefetcher, to_device

DATA = [({"features": torch.full((2, 3), float(i), dtype=torch.bfloat16)}, torch.tensor(i)) for i in range(10)]
BATCHES = [[3, 1], [0, 9], [4, 4], [7]]


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_batches_arrive_in_the_callers_order(depth):
    got = list(Prefetcher(DATA, BATCHES, torch.device("cpu"), depth=depth))
    assert [y.tolist() for _, y in got] == BATCHES
    assert all(x["features"].dtype == torch.bfloat16 for x, _ in got)


class Broken:
    def __len__(self):
        return 10

    def __getitem__(self, i):
        if i == 9:
            raise OSError("cache shard unreadable")
        return DATA[i]


def test_a_read_error_is_raised_at_the_batch_that_failed():
    seen = []
    with pytest.raises(OSError, match="unreadable"):
        for _, y in Prefetcher(Broken(), BATCHES, torch.device("cpu"), depth=2):
            seen.append(y.tolist())
    assert seen == [[3, 1]]


def test_stopping_early_stops_the_thread():
    loader = Prefetcher(DATA * 50, [[i] for i in range(500)], torch.device("cpu"), depth=2)
    for k, _ in enumerate(loader):
        if k == 3:
            break
    assert not any(t.name == "coldstream-prefetch" and t.is_alive() for t in threading.enumerate())


def test_to_device_casts_after_the_copy():
    x = to_device({"features": torch.ones(2, dtype=torch.bfloat16), "ids": [torch.tensor([1])]}, "cpu", torch.float32)
    assert x["features"].dtype == torch.float32 and x["ids"][0].dtype == torch.int64
