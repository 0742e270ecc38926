"""DALI backend: same frame indices as the CPU backend, pixels within the documented tolerance.

On CPU machines DALI's CPU decoder is tested on VP9, VP8 and MJPEG (all it decodes); the ``cuda`` tests run NVDEC
(``device="mixed"``) on H.264, HEVC and VP9 on a GPU machine.
"""

import logging
import random

import numpy as np
import pytest
import torch

from coldstream.io import VideoError, open_video
from coldstream.io.preprocess import preprocess_frames
from coldstream.testing import CODECS, read_frame_indices, write_colour_gradient_video, write_truncated_copy

from .conftest import N_FRAMES

pytest.importorskip("nvidia.dali")

from coldstream.io.dali import DALIClipReader  # noqa: E402

# DALI converts YUV to RGB with its own arithmetic (and chroma upsampling): against FFmpeg's swscale the mean
# absolute difference is about 2.4-3.4 on natural colour content, up to ~100 on single pixels at sharp colour edges.
PIXEL_MAE = 4.0  # uint8 levels, mean over a frame
FLOAT_MAE = PIXEL_MAE / 255 / 0.225  # the same after ImageNet normalisation (smallest std)


def _agree(path, device, idx):
    with open_video(path, backend="dali", device=device) as d, open_video(path, backend="pyav") as p:
        a, b = d.get_frames(idx), p.get_frames(idx)
        assert d.info.num_frames == p.info.num_frames
    assert a.data.device.type == torch.device(device).type
    assert torch.equal(a.indices, b.indices) and torch.equal(a.timestamps, b.timestamps)
    mae = (a.data.cpu().int() - b.data.int()).abs().float().mean(dim=(1, 2, 3))
    assert mae.max() <= PIXEL_MAE, mae
    return a


@pytest.fixture(params=["vp9", "vp8", "mjpeg"])
def dali_cpu_video(request, make_video):
    return make_video(request.param, request.param)


def test_dali_cpu_exact_indices(dali_cpu_video):
    rng = random.Random(1)
    idx = [rng.randrange(N_FRAMES) for _ in range(10)] + [59, 0, 0]
    with open_video(dali_cpu_video, backend="dali", device="cpu") as src:
        assert src.backend_name == "dali-cpu"
        f = src.get_frames(idx)
        assert read_frame_indices(f.data) == idx == f.indices.tolist()
        clip = src.clip(16, target_fps=12)
        assert read_frame_indices(clip.data) == clip.indices.tolist() == list(range(14, 46, 2))
        seq = [i for c in src.stream(start=5, chunk_size=8) for i in read_frame_indices(c.data)]
        assert seq == list(range(5, N_FRAMES))
        strided = [c for c in src.stream(start=1, chunk_size=4, target_fps=6)]  # stride 5
        assert [i for c in strided for i in read_frame_indices(c.data)] == list(range(1, N_FRAMES, 5))
        assert [i for c in strided for i in c.indices.tolist()] == list(range(1, N_FRAMES, 5))


def test_dali_stream_both_paths(dali_cpu_video):
    """From near the start: one inputs.video pass; from deep in: frame-list runs. Same frames either way."""
    with open_video(dali_cpu_video, backend="dali", chunk_size=8) as src:
        front = [c for c in src.stream(start=3, chunk_size=5)]  # start <= chunk: front-to-back pass
        deep = [c for c in src.stream(start=21, chunk_size=5, target_fps=15)]  # seeks, stride 2
    assert [i for c in front for i in read_frame_indices(c.data)] == list(range(3, N_FRAMES))
    assert [i for c in front for i in c.indices.tolist()] == list(range(3, N_FRAMES))
    assert [i for c in deep for i in read_frame_indices(c.data)] == list(range(21, N_FRAMES, 2))
    assert [i for c in deep for i in c.indices.tolist()] == list(range(21, N_FRAMES, 2))


def test_dali_cpu_agrees_with_pyav(dali_cpu_video):
    _agree(dali_cpu_video, "cpu", [0, 7, 30, 59])


@pytest.mark.parametrize("codec", ["vp9", "mjpeg"])
def test_dali_cpu_colour_tolerance(tmp_path, codec):
    path = write_colour_gradient_video(tmp_path / f"colour{CODECS[codec].suffix}", codec)
    _agree(path, "cpu", list(range(12)))
    with open_video(path, backend="dali", output="float", size=48) as d, open_video(path, output="float", size=48) as p:
        fd, fp = d.get_frames([0, 11]).data, p.get_frames([0, 11]).data
    assert fd.shape == fp.shape == (2, 3, 48, 48)
    assert (fd - fp).abs().mean() <= FLOAT_MAE


def test_clip_reader_indices_labels_and_shards(make_video):
    files = [make_video(f"reader{i}", "vp9", num_frames=30 + 10 * i) for i in range(3)]
    seen = []
    for shard_id in range(2):
        r = DALIClipReader(
            files,
            labels=[10, 11, 12],
            sequence_length=4,
            stride=2,
            step=5,
            batch_size=2,
            size=None,
            shard_id=shard_id,
            num_shards=2,
            random_shuffle=True,
            seed=3,
        )
        got = set()
        for _ in range(-(-r.epoch_size // (2 * r.batch_size))):
            frames, labels, starts = next(r)
            assert frames.shape == (2, 4, 64, 64, 3) and frames.dtype == torch.uint8
            for clip, lab, s in zip(frames, labels.tolist(), starts.tolist(), strict=True):
                assert read_frame_indices(clip) == [s, s + 2, s + 4, s + 6]  # DALI's frame numbers are honest
                assert 10 <= lab <= 12
                got.add((lab, s))
        seen.append(got)
    assert seen[0] and seen[1] and not seen[0] & seen[1]  # ranks read disjoint clips


def test_clip_reader_preprocessing_matches_torch(make_video):
    path = make_video("vp9", "vp9")
    raw = DALIClipReader([path], sequence_length=4, batch_size=1, size=None, random_shuffle=False)
    pre = DALIClipReader([path], sequence_length=4, batch_size=1, size=40, random_shuffle=False)
    (u8, _, s0), (fl, _, s1) = next(raw), next(pre)
    assert torch.equal(s0, s1) and fl.shape == (1, 4, 3, 40, 40) and fl.dtype == torch.float32
    ref = preprocess_frames(u8[0], 40)
    assert (fl[0] - ref).abs().mean() <= FLOAT_MAE


@pytest.mark.cuda
@pytest.mark.parametrize("codec", ["h264", "hevc", "vp9", "mjpeg"])
def test_dali_gpu_exact_and_on_device(make_video, codec):
    path = make_video(codec, codec)
    rng = random.Random(2)
    idx = [rng.randrange(N_FRAMES) for _ in range(10)] + [59, 0]
    f = _agree(path, "cuda", idx)
    assert f.data.is_cuda and read_frame_indices(f.data.cpu()) == idx
    with open_video(path, backend="dali", device="cuda", output="float", size=32) as src:
        assert src.backend_name == "dali-gpu"
        x = src.clip(16, target_fps=12).data
        assert x.is_cuda and x.shape == (16, 3, 32, 32)
        seq = [i for c in src.stream(chunk_size=16) for i in c.indices.tolist()]
        assert seq == list(range(N_FRAMES))


@pytest.mark.cuda
def test_dali_gpu_auto_backend_and_reader(make_video):
    path = make_video("h264", "h264")
    with open_video(path, device="cuda") as src:
        assert src.backend_name == "dali-gpu"
    files = [make_video(f"gpu_reader{i}", "h264", num_frames=40) for i in range(2)]
    r = DALIClipReader(files, sequence_length=8, stride=2, batch_size=2, device="cuda", size=32, seed=0)
    frames, labels, starts = next(r)
    assert frames.is_cuda and frames.shape == (2, 8, 3, 32, 32)
    raw = DALIClipReader(files, sequence_length=8, stride=2, batch_size=2, device="cuda", size=None, seed=0)
    u8, _, starts = next(raw)
    for clip, s in zip(u8.cpu(), starts.tolist(), strict=True):
        assert read_frame_indices(clip) == list(range(s, s + 16, 2))


def test_dlpack_fallback_copy_is_exact(vp9, monkeypatch):
    """If torch and DALI disagree on the DLPack protocol, DALI's own copy (device-side) gives the same frames."""
    want = open_video(vp9, backend="dali").get_frames([3, 44]).data

    def refuse(_):
        raise TypeError("simulated DLPack mismatch")

    monkeypatch.setattr(torch, "from_dlpack", refuse)
    got = open_video(vp9, backend="dali").get_frames([3, 44]).data
    assert torch.equal(got, want) and read_frame_indices(got) == [3, 44]


def test_dali_cpu_rotation_and_vfr(make_video):
    rot = make_video("rot90_vp9", "vp9", num_frames=12, height=48, width=80, rotation=90, suffix=".mkv")
    with open_video(rot, backend="dali") as d:
        assert d.info.rotation == 90 and (d.info.height, d.info.width) == (80, 48)
    _agree(rot, "cpu", [3, 7, 11])  # DALI ignores the display matrix; the backend applies it like PyAV
    pts = [0, 40, 50, 120, 130, 135, 200, 260, 300, 380, 390, 400, 470, 480, 560, 600, 610, 700, 720, 800]
    vfr = make_video("vfr_vp9", "vp9", num_frames=len(pts), pts_ms=pts)
    with open_video(vfr, backend="dali") as d:
        assert d.info.variable_frame_rate
        f = d.get_frames([19, 0, 5, 12, 7])
    assert read_frame_indices(f.data) == [19, 0, 5, 12, 7]
    np.testing.assert_allclose(f.timestamps.numpy(), np.array(pts)[[19, 0, 5, 12, 7]] / 1000)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_dali_rotation_with_opencv_probe(make_video, rotation):
    """Indexed by OpenCV (no PyAV), DALI still applies the display rotation (it returned unrotated frames)."""
    pytest.importorskip("cv2")
    from coldstream.io.dali import DALISource

    path = make_video(f"rot{rotation}_vp9", "vp9", num_frames=12, height=48, width=80, rotation=rotation, suffix=".mkv")
    with DALISource(path, probe="opencv") as d, open_video(path, backend="dali") as ref:
        assert d.info.rotation == ref.info.rotation == rotation
        a, b = d.get_frames([3, 7]), ref.get_frames([3, 7])
    assert a.data.shape == b.data.shape and torch.equal(a.data, b.data)
    assert read_frame_indices(torch.rot90(a.data, -rotation // 90, dims=(1, 2))) == [3, 7]


def test_clip_reader_skips_and_counts_bad_files(make_video, tmp_path, caplog):
    """DALI's reader dropped unreadable files without a word: they are now left out up front, logged and counted."""
    good = [make_video(f"reader{i}", "vp9", num_frames=30 + 10 * i) for i in range(2)]
    text = tmp_path / "notes.webm"
    text.write_text("this is a text file, not a video\n" * 20)
    cut = write_truncated_copy(good[1], tmp_path / "cut.webm", keep=0.5)
    h264 = make_video("h264", "h264")  # DALI's CPU decoder has no H.264
    gone = tmp_path / "moved_away.webm"
    files = [good[0], text, h264, good[1], cut, gone]
    with caplog.at_level(logging.WARNING, logger="coldstream.io"):
        r = DALIClipReader(files, labels=[0, 1, 2, 3, 4, 5], sequence_length=4, batch_size=2, size=None, seed=0)
    assert r.report.seen == 6 and r.report.skipped == 4
    assert [p for p, _ in r.report.problems] == [str(text), str(h264), str(cut), str(gone)]
    assert "not a video" in r.report.problems[0][1] and "cannot decode h264" in r.report.problems[1][1]
    assert "truncated" in r.report.problems[2][1] and caplog.text.count("DALIClipReader: skipping") == 4
    assert r.epoch_size == 30 // 4 + 40 // 4  # windows of the two good files only
    for _ in range(r.epoch_size // 2):
        frames, labels, starts = next(r)
        assert set(labels.tolist()) <= {0, 3}  # labels stay with their files
        for clip, s in zip(frames, starts.tolist(), strict=True):
            assert read_frame_indices(clip) == list(range(s, s + 4))
    with pytest.raises(VideoError, match=r"none of the 2 files can be read by DALI: .*not a video"):
        DALIClipReader([text, cut], sequence_length=4, size=None)
