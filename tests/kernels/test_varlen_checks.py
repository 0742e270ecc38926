"""resets and cu_seqlens that would give silently wrong results (or write out of bounds) are refused, saying why."""

from __future__ import annotations

import pytest
import torch

from coldstream.kernels import causal_conv1d, gated_linear_scan, selective_scan

T = 10


def _calls(**varlen):
    x = torch.randn(1, 8, T)
    A, B = -torch.rand(8, 4), torch.randn(1, 4, T)
    return {
        "selective_scan": lambda: selective_scan(x, x, A, B, B, **varlen),
        "gated_linear_scan": lambda: gated_linear_scan(x.transpose(1, 2), torch.rand(1, T, 8), **varlen),
        "causal_conv1d": lambda: causal_conv1d(x, torch.randn(8, 4), **varlen),
    }


@pytest.mark.parametrize("op", ["selective_scan", "gated_linear_scan", "causal_conv1d"])
def test_integer_resets_are_refused(op):
    with pytest.raises(ValueError, match="resets must be a bool mask"):
        _calls(resets=torch.zeros(1, T, dtype=torch.int64))[op]()


@pytest.mark.parametrize("op", ["selective_scan", "gated_linear_scan", "causal_conv1d"])
@pytest.mark.parametrize(
    ("bounds", "why"), [([0, 4, 9], "end at T = 10"), ([1, 4, 10], "start at 0"), ([0, 6, 4, 10], "non-decreasing")]
)
def test_bad_cu_seqlens_are_refused(op, bounds, why):
    with pytest.raises(ValueError, match=why):
        _calls(cu_seqlens=torch.tensor(bounds))[op]()


def test_max_seqlen_shorter_than_a_sequence_is_refused():
    with pytest.raises(ValueError, match="max_seqlen = 5 is shorter than the longest packed sequence \\(7\\)"):
        _calls(cu_seqlens=torch.tensor([0, 7, 10]), max_seqlen=5)["selective_scan"]()
