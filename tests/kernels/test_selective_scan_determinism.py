"""The Triton backward of selective_scan has no float atomics: dB/dC are per-split partials (each entry written by
one program, later channel blocks of the same program adding to it) and dA, dD, d(delta_bias) per-row-group
partials, all summed in a fixed order. So its gradients are bitwise identical run to run, and equal the fp32
oracle's whatever the split of the work between programs."""

from __future__ import annotations

import pytest
import torch

from coldstream.kernels import selective_scan
from coldstream.kernels.selective_scan import ops
from tests.kernels._util import assert_all_close, forward_backward, leaves
from tests.kernels.test_selective_scan import NAMES, cast, make_inputs, scan_fn

# (sequences, channels, T, groups, extra keyword arguments) at BLOCK_D = 8 and 2 x 2 (sequence, channel block)
# pairs per program: several programs (splits) add to the same dB/dC rows, each of them over 2 channel blocks, and
# each dA/dD/d(delta_bias) partial sums 2 sequences
CASES = {
    "ungrouped": (3, 32, 19, None, {}),
    "grouped": (3, 64, 19, 2, {}),
    "resets": (2, 32, 19, None, {"resets": "resets"}),
    "varlen": (1, 32, 26, None, {"cu_seqlens": [0, 4, 4, 21, 26]}),
}


@pytest.fixture
def small_split(monkeypatch):
    monkeypatch.setattr(ops, "BLOCK_D", 8)
    monkeypatch.setattr(ops, "PROGRAMS_PER_ROW_GROUP", 1)
    monkeypatch.setattr(ops, "MAX_PAIRS", 4)


def _case(name):
    batch, dim, T, groups, extra = CASES[name]
    inputs = make_inputs(batch=batch, dim=dim, T=T, n=4, groups=groups)
    kw = {}
    if "resets" in extra:
        resets = torch.zeros(batch, T, dtype=torch.bool)
        resets[0, 5] = resets[0, 16] = resets[1, 0] = True
        kw["resets"] = resets
    if "cu_seqlens" in extra:
        cu = torch.tensor(extra["cu_seqlens"], dtype=torch.int32)
        kw["cu_seqlens"] = cu
        inputs["initial_state"] = torch.randn(cu.numel() - 1, dim, 4, generator=torch.Generator().manual_seed(1))
    return cast(inputs, torch.float32), kw


def test_split_at_the_projects_shape():
    # 1608 sequences x 128 channel blocks: 4 sequences x 4 blocks per program, as many programs as before
    assert ops._bwd_split(1608, 1, 128) == (4, 4)
    assert ops._bwd_split(4, 1, 128) == (1, 1)  # few sequences: one pair per program, fill the GPU
    assert ops._bwd_split(1_000_000, 1, 1) == (16, 1)  # one block per group: all pairs along the rows


@pytest.mark.parametrize("name", list(CASES))
def test_backward_is_bitwise_repeatable_and_matches_oracle(small_split, name):
    x, kw = _case(name)
    batch, dim = x[0].shape[:2]
    groups = 1 if x[3].dim() == 3 else x[3].shape[1]
    n_seq = batch if "cu_seqlens" not in kw else kw["cu_seqlens"].numel() - 1
    rows, blocks = ops._bwd_split(n_seq, groups, dim // groups // 8)
    assert blocks == 2 and dim // groups // 8 // blocks >= 2  # several blocks per program and several splits
    outs, grads = forward_backward(scan_fn("triton", **kw), leaves(x))
    again = forward_backward(scan_fn("triton", **kw), leaves(x))[1]  # the interpreter keeps one program order
    for n, a, b in zip(NAMES, grads, again, strict=True):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b)), n
    ref_outs, ref_grads = forward_backward(scan_fn("oracle", **kw), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


def _assert_cuda_gradients_repeat_bitwise(groups):
    # 1608 sequences x 1024 channels: 6 sequences x 2 channel blocks per program; each dB/dC row is the sum of 32
    # partials (8 per group with 4 groups)
    x = [None if t is None else t.cuda() for t in cast(make_inputs(1608, 1024, 20, 16, groups, seed=2), torch.bfloat16)]

    def run():
        return forward_backward(
            lambda *t: selective_scan(*t[:8], True, True, t[8], backend="triton"), leaves(x), seed=5
        )[1]

    first = run()
    for _ in range(2):
        for n, a, b in zip(NAMES, first, run(), strict=True):
            assert torch.equal(a, b), n


@pytest.mark.cuda
@pytest.mark.parametrize("groups", [None, 4])
def test_cuda_backward_is_bitwise_repeatable(groups):
    _assert_cuda_gradients_repeat_bitwise(groups)
