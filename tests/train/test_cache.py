"""Feature cache: round trip, reuse, resume after a kill, stale-key detection, rank sharding, unreadable videos."""

import json

import pytest
import torch

from coldstream.train.cache import CacheKey, FeatureCache, StaleCacheError, file_content_hash, video_key
from coldstream.train.extract import FrameJob, extract_features
from tests.train.helpers import TinyEncoder

S = 8


def _key(**kw) -> CacheKey:
    base = dict(encoder="tiny", weights_id="tiny-seed-0", preprocess={"size": S}, feature_shape=(2, 4, 8))
    base.update(kw)
    return CacheKey(**base)


def _video(seed: int, n: int = 12) -> torch.Tensor:
    return torch.randn(n, 3, S, S, generator=torch.Generator().manual_seed(seed))


def _jobs(n_videos: int = 3) -> list[FrameJob]:
    vids = {f"v{i}": _video(i) for i in range(n_videos)}
    return [FrameJob(video_key(name), list(range(12)), lambda idx, v=v: v[idx], name) for name, v in vids.items()]


def test_round_trip_equals_encoder_in_bf16(tmp_path):
    enc = TinyEncoder()
    cache = FeatureCache(tmp_path, _key(), shard_rows=5)
    rep = extract_features(cache, _jobs(), enc, batch_size=7, show_progress=False)
    assert rep.encoded_frames == 36 and not rep.skipped
    frames = [11, 3, 3, 0]  # any order, repeats allowed (reversed clips)
    got = cache.get(video_key("v1"), frames)
    want = enc.features(_video(1)[frames]).permute(1, 0, 2, 3).to(torch.bfloat16)
    assert got.dtype == torch.bfloat16 and got.shape == (4, 2, 4, 8)
    assert torch.equal(got, want)
    # a fresh handle memory-maps the same rows
    assert torch.equal(FeatureCache(tmp_path, _key()).get(video_key("v1"), frames), got)


def test_second_pass_encodes_nothing(tmp_path):
    enc = TinyEncoder()
    cache = FeatureCache(tmp_path, _key())
    extract_features(cache, _jobs(), enc, show_progress=False)
    calls = enc.calls
    rep = extract_features(FeatureCache(tmp_path, _key()), _jobs(), enc, show_progress=False)
    assert rep.encoded_frames == 0 and rep.cached_frames == 36 and enc.calls == calls


def test_killed_extraction_resumes_with_whole_shards(tmp_path):
    enc = TinyEncoder()
    jobs = _jobs()

    def dies(idx):
        raise KeyboardInterrupt  # the process is killed while decoding the third video

    cache = FeatureCache(tmp_path, _key(), shard_rows=4)
    jobs_dying = jobs[:2] + [FrameJob(jobs[2].vkey, jobs[2].frames, dies, "v2")]
    with pytest.raises(KeyboardInterrupt):
        extract_features(cache, jobs_dying, enc, batch_size=4, show_progress=False)
    assert not list(tmp_path.glob("*.tmp*"))
    survivor = FeatureCache(tmp_path, _key())
    assert len(survivor) == 24  # the whole shards written before the kill
    enc.calls = 0
    rep = extract_features(survivor, jobs, enc, batch_size=4, show_progress=False)
    assert rep.encoded_frames == 12 and enc.calls == 12
    ref = FeatureCache(tmp_path / "ref", _key())
    extract_features(ref, jobs, TinyEncoder(), show_progress=False)
    for j in jobs:
        assert torch.equal(survivor.get(j.vkey, j.frames), ref.get(j.vkey, j.frames))


@pytest.mark.parametrize("field,value", [("encoder", "other"), ("weights_id", "other"), ("preprocess", {"size": 16})])
def test_cache_from_another_encoder_is_refused(tmp_path, field, value):
    FeatureCache(tmp_path, _key()).put("v", [0], torch.zeros(1, 2, 4, 8))
    with pytest.raises(StaleCacheError, match=field):
        FeatureCache(tmp_path, _key(**{field: value}))
    fresh = FeatureCache(tmp_path, _key(**{field: value}), rebuild=True)
    assert len(fresh) == 0
    assert json.loads((tmp_path / "meta.json").read_text())[field] == value


def test_video_key_follows_content_and_sampling(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"abc")
    h1 = file_content_hash(p)
    assert video_key(h1, {"fps": 6}) != video_key(h1, {"fps": 12})
    p.write_bytes(b"abd")
    assert file_content_hash(p) != h1


def test_ranks_shard_the_work_and_see_each_other(tmp_path):
    jobs = _jobs(4)
    encs = [TinyEncoder(), TinyEncoder()]
    for r in range(2):
        extract_features(FeatureCache(tmp_path, _key(), rank=r), jobs, encs[r], rank=r, world=2, show_progress=False)
    assert encs[0].calls == encs[1].calls == 24
    assert {p.name.split("-")[1] for p in tmp_path.glob("shard-*.bin")} == {"r0", "r1"}
    both = FeatureCache(tmp_path, _key())
    assert all(both.has(j.vkey, j.frames) for j in jobs)


def test_unreadable_videos_are_skipped_and_counted(tmp_path):
    def broken(idx):
        raise OSError("moov atom not found")

    jobs = _jobs(2) + [FrameJob("bad", [0, 1], broken, "broken.mp4")]
    rep = extract_features(FeatureCache(tmp_path, _key()), jobs, TinyEncoder(), show_progress=False)
    assert rep.encoded_frames == 24
    assert rep.skipped == [("broken.mp4", "OSError: moov atom not found")]
    assert "skipped 1 unreadable" in rep.summary()


def test_wrong_feature_shape_is_refused(tmp_path):
    with pytest.raises(ValueError, match="K, N, D"):
        FeatureCache(tmp_path, _key()).put("v", [0], torch.zeros(1, 2, 4, 9))
