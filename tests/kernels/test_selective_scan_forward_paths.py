"""selective_scan's two Triton forwards (ops._fwd_chunk_len picks one) at their edges, against the fp32 oracle.

The sequential forward moves u, delta, z, y, out as [K, BLOCK_D] tiles of K steps (K = 4 fp32, 8 fp16/bf16), so T
= 1, 13, 17 leave a partial tile; T = 16 stores no checkpoint, 17 one. The chunked forward (pass 1: each chunk's
end state from zero; carry; pass 2: each chunk from its carried state) is forced at small shapes by patching its
thresholds: chunks of 16 steps, so T = 40 is two full chunks and a half one.
"""

from __future__ import annotations

import pytest
import torch

from coldstream.kernels import selective_scan
from coldstream.kernels.selective_scan import ops
from coldstream.kernels.selective_scan.naive import selective_scan_ref
from tests.kernels._util import assert_all_close, forward_backward, leaves
from tests.kernels.test_selective_scan import NAMES, cast, make_inputs, scan_fn, separate_calls


@pytest.fixture
def chunked(monkeypatch):
    """Force the chunked forward from T = 32 on (chunks of 16 steps); returns the chunk lengths picked."""
    monkeypatch.setattr(ops, "FWD_CHUNK_T", 16)
    monkeypatch.setattr(ops, "FWD_CHUNKED_BELOW", 1 << 30)
    return _spy(monkeypatch)


def _spy(monkeypatch) -> list:
    picked = []
    rule = ops._fwd_chunk_len

    def spy(*args):
        picked.append(rule(*args))
        return picked[-1]

    monkeypatch.setattr(ops, "_fwd_chunk_len", spy)
    return picked


def _check(inputs, dtype=torch.float32, softplus=True, grads=True, **kw):
    lp = cast(inputs, dtype)
    fn, ref = scan_fn("triton", softplus, **kw), scan_fn("oracle", softplus, **kw)
    ref_in = [None if t is None else t.float() for t in lp]
    if not grads:
        with torch.no_grad():
            assert_all_close(list(fn(*lp)), list(ref(*ref_in)), dtype, "fwd", ["out", "last_state"])
        return
    outs, g = forward_backward(fn, leaves(lp))
    ref_outs, ref_g = forward_backward(ref, leaves(ref_in))
    assert outs[0].dtype == dtype
    assert_all_close(outs, ref_outs, dtype, "fwd", ["out", "last_state"])
    assert_all_close(g, ref_g, dtype, "bwd", NAMES)


@pytest.mark.parametrize("T", [1, 13, 16, 17])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sequential_forward_tile_edges(T, dtype, monkeypatch):
    picked = _spy(monkeypatch)
    _check(make_inputs(batch=2, dim=20, T=T, n=4), dtype)
    assert picked == [None]


def test_sequential_forward_zero_length_hands_the_state_through():
    x = cast(make_inputs(batch=2, dim=20, T=0, n=4), torch.float32)
    out, last = selective_scan(*x[:8], True, True, x[8], backend="triton")
    assert out.shape == (2, 20, 0)
    torch.testing.assert_close(last, x[8])


@pytest.mark.parametrize("T", [32, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_chunked_forward_matches_oracle(T, dtype, chunked):
    # every optional input, initial_state's gradient included; 20 channels: a partial channel block
    _check(make_inputs(batch=2, dim=20, T=T, n=4), dtype)
    assert chunked == [16]


@pytest.mark.parametrize("grads", [True, False], ids=["checkpoints-carry", "compact-carry"])
def test_chunked_forward_without_optional_inputs(grads, chunked):
    # without a backward the carried states go to their own buffer, not the checkpoints
    inputs = make_inputs(batch=1, dim=8, T=45, n=8, full=False)
    inputs["delta"] = torch.nn.functional.softplus(inputs["delta"])
    _check(inputs, softplus=False, grads=grads)
    assert chunked == [16]


def test_chunked_forward_grouped_bc(chunked):
    _check(make_inputs(batch=2, dim=24, T=37, n=4, groups=2))
    assert chunked == [16]


def test_chunked_forward_long_sequence(monkeypatch):
    # a few hundred steps through 64-step chunks, as a long sequence runs at B = 4, T = 4096 with 256-step chunks
    monkeypatch.setattr(ops, "FWD_CHUNK_T", 64)
    monkeypatch.setattr(ops, "FWD_CHUNKED_BELOW", 1 << 30)
    picked = _spy(monkeypatch)
    _check(make_inputs(batch=1, dim=8, T=300, n=4), torch.bfloat16)
    assert picked == [64]


@pytest.mark.parametrize("force", [False, True], ids=["sequential", "chunked"])
def test_resets_inside_and_on_chunk_borders(force, monkeypatch):
    if force:
        monkeypatch.setattr(ops, "FWD_CHUNK_T", 16)
        monkeypatch.setattr(ops, "FWD_CHUNKED_BELOW", 1 << 30)
    picked = _spy(monkeypatch)
    resets = torch.zeros(2, 41, dtype=torch.bool)
    resets[0, 5] = resets[0, 16] = resets[0, 31] = resets[0, 40] = True  # in a chunk, on a border, last step
    resets[1, 0] = resets[1, 33] = True  # t = 0 drops the initial state
    _check(make_inputs(batch=2, dim=20, T=41, n=4), resets=resets)
    assert picked == [16 if force else None]


@pytest.mark.parametrize("force", [False, True], ids=["sequential", "chunked"])
def test_cu_seqlens_with_an_empty_and_uneven_sequences(force, monkeypatch):
    if force:
        monkeypatch.setattr(ops, "FWD_CHUNK_T", 16)
        monkeypatch.setattr(ops, "FWD_CHUNKED_BELOW", 1 << 30)
    picked = _spy(monkeypatch)
    bounds = [0, 5, 5, 40, 73]  # 5 steps (shorter than a chunk), empty, 35 and 33 (unaligned starts)
    cu = torch.tensor(bounds, dtype=torch.int32)
    inputs = make_inputs(batch=1, dim=16, T=73, n=4)
    inputs["initial_state"] = torch.randn(4, 16, 4)
    x = cast(inputs, torch.float32)

    outs, grads = forward_backward(scan_fn("triton", cu_seqlens=cu), leaves(x))
    ref_outs, ref_grads = forward_backward(separate_calls(bounds), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)
    assert picked == [16 if force else None]


def _op(x, for_backward, store_last):
    u, delta, A, B, C, D, z, bias, h0 = x
    args = (u, delta, A, B[:, None], C[:, None], D, z, bias, h0, None, None, u.shape[-1], True, "triton")
    return torch.ops.coldstream.selective_scan_fwd(*args, for_backward, store_last)


def test_chunked_carry_writes_the_sequential_checkpoints(monkeypatch):
    # the carried chunk states double as the backward's checkpoints: the same tensor as the sequential forward's
    x = cast(make_inputs(batch=2, dim=20, T=70, n=4), torch.float32)
    seq = _op(x, True, True)
    monkeypatch.setattr(ops, "FWD_CHUNK_T", 32)
    monkeypatch.setattr(ops, "FWD_CHUNKED_BELOW", 1 << 30)
    picked = _spy(monkeypatch)
    chk = _op(x, True, True)
    assert picked == [32]
    assert seq[2].shape == (2, 4, 20, 4)  # every 16 steps; chunks start at 32, 64
    for a, b in zip(chk, seq, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("force", [False, True], ids=["sequential", "chunked"])
def test_no_backward_and_no_last_state_store_nothing_extra(force, monkeypatch):
    if force:
        monkeypatch.setattr(ops, "FWD_CHUNK_T", 16)
        monkeypatch.setattr(ops, "FWD_CHUNKED_BELOW", 1 << 30)
    x = cast(make_inputs(batch=2, dim=20, T=35, n=4), torch.float32)
    out, last, ckpt, y = _op(x, False, False)
    assert last.numel() == 0 and ckpt.shape == (2, 0, 20, 4) and y.numel() == 0
    ref_out, ref_last = selective_scan_ref(*x[:8], True, x[8])
    assert_all_close([out], [ref_out], torch.float32, "fwd")
    _, last, _, _ = _op(x, False, True)
    assert_all_close([last], [ref_last], torch.float32, "fwd")


@pytest.mark.parametrize("force", [False, True], ids=["sequential", "chunked"])
def test_gradients_without_return_last_state(force, monkeypatch):
    # the last state is not stored, so its (empty) gradient must not reach the backward
    if force:
        monkeypatch.setattr(ops, "FWD_CHUNK_T", 16)
        monkeypatch.setattr(ops, "FWD_CHUNKED_BELOW", 1 << 30)

    def fn(backend):
        def f(u, delta, A, B, C, D, z, bias, h0):
            if backend == "oracle":
                return (selective_scan_ref(u, delta, A, B, C, D, z, bias, True, h0)[0],)
            return (selective_scan(u, delta, A, B, C, D, z, bias, True, False, h0, backend=backend),)

        return f

    x = cast(make_inputs(batch=2, dim=20, T=33, n=4), torch.float32)
    outs, grads = forward_backward(fn("triton"), leaves(x))
    ref_outs, ref_grads = forward_backward(fn("oracle"), leaves(x))
    assert_all_close(outs, ref_outs, torch.float32, "fwd")
    assert_all_close(grads, ref_grads, torch.float32, "bwd", NAMES)


def test_path_rule_thresholds(monkeypatch):
    monkeypatch.setattr(ops, "FWD_CHUNK_T", 256)
    monkeypatch.setattr(ops, "FWD_CHUNKED_BELOW", 264)
    assert ops._fwd_chunk_len(263, 512, 16) == 256  # too few programs, two chunks: chunked
    assert ops._fwd_chunk_len(264, 512, 16) is None  # enough programs
    assert ops._fwd_chunk_len(263, 511, 16) is None  # under two chunks
    assert ops._fwd_chunk_len(4 * 16, 4096, 16) == 256  # bench: B = 4, D = 2048 (16 blocks of 128), T = 4096
    assert ops._fwd_chunk_len(1608 * 16, 16, 16) is None  # bench: 1608 sequences, T = 16
    monkeypatch.setattr(ops, "FWD_CHUNK_T", 20)
    assert ops._fwd_chunk_len(1, 64, 16) == 32  # rounded up to the checkpoint spacing


@pytest.mark.parametrize("T", [31, 32], ids=["under", "at"])
@pytest.mark.parametrize("programs", ["under", "at"])
def test_path_switch_at_the_thresholds(T, programs, monkeypatch):
    # 2 sequences x 1 channel block = 2 programs; chunks of 16: chunked from T = 32 when the threshold is above 2
    monkeypatch.setattr(ops, "FWD_CHUNK_T", 16)
    monkeypatch.setattr(ops, "FWD_CHUNKED_BELOW", 3 if programs == "under" else 2)
    picked = _spy(monkeypatch)
    _check(make_inputs(batch=2, dim=20, T=T, n=4), grads=False)
    assert picked == [16 if programs == "under" and T == 32 else None]


@pytest.mark.cuda
@pytest.mark.parametrize("T", [16, 13, 1100], ids=["sequential-T16", "sequential-T13", "chunked-T1100"])
def test_cuda_forward_paths_match_oracle(T, monkeypatch):
    # the default rule: 4 sequences x 2 blocks of 128 channels are too few programs, so T = 1100 (over two chunks of
    # 256) runs chunked; T = 16 takes 16-byte tiles, T = 13 unaligned ones
    picked = _spy(monkeypatch)
    inputs = {k: None if v is None else v.cuda() for k, v in make_inputs(batch=4, dim=256, T=T, n=16).items()}
    for dtype in (torch.float32, torch.bfloat16):
        _check(inputs, dtype)
    assert picked == [256 if T == 1100 else None] * 2
