"""CPU backends: exact frame indices for sequential reads, seeks and strided clips; real-file quirks."""

import random

import numpy as np
import pytest
import torch

from coldstream.io import CorruptVideoError, open_stream, open_video
from coldstream.io.preprocess import preprocess_frames
from coldstream.testing import index_pattern, read_frame_indices, write_truncated_copy

from .conftest import HAVE_CV2, N_FRAMES, VFR_PTS_MS, backend_params

CPU_BACKENDS = backend_params("pyav", "opencv")


@pytest.fixture(params=["h264", "hevc", "vp9", "mjpeg"])
def coded(request, make_video):
    return make_video(request.param, request.param)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_sequential_stream_exact(coded, backend):
    with open_video(coded, backend=backend) as src:
        assert len(src) == N_FRAMES and src.info.fps == 30.0
        seen, stamps = [], []
        for chunk in src.stream(chunk_size=7):
            assert chunk.data.shape[1:] == (64, 64, 3) and chunk.data.dtype == torch.uint8
            assert read_frame_indices(chunk.data) == chunk.indices.tolist()
            seen += chunk.indices.tolist()
            stamps += chunk.timestamps.tolist()
    assert seen == list(range(N_FRAMES))
    np.testing.assert_allclose(stamps, np.arange(N_FRAMES) / 30, atol=1e-3)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_random_access_exact(coded, backend):
    rng = random.Random(0)
    idx = [rng.randrange(N_FRAMES) for _ in range(12)] + [59, 0, 59, 31]  # any order, repeats, both ends
    with open_video(coded, backend=backend) as src:
        frames = src.get_frames(idx)
    assert frames.indices.tolist() == idx
    assert read_frame_indices(frames.data) == idx
    np.testing.assert_allclose(frames.timestamps.numpy(), np.array(idx) / 30, atol=1e-3)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_stream_from_middle_and_strided(h264, backend):
    with open_video(h264, backend=backend) as src:
        got = [i for c in src.stream(start=37, chunk_size=4, target_fps=10) for i in c.indices.tolist()]
        assert got == list(range(37, N_FRAMES, 3))
        assert read_frame_indices(src.get_frames(got).data) == got


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_clip_sampling(h264, backend):
    with open_video(h264, backend=backend) as src:
        clip = src.clip(16, target_fps=12)  # stride round(2.5) = 2, start (59 - 30) // 2 = 14
        assert clip.indices.tolist() == list(range(14, 46, 2))
        assert read_frame_indices(clip.data) == clip.indices.tolist()
        short = src.clip(16, target_fps=6)  # stride 5: span 75 >= 60 -> 0, 5, ..., 55, then 55 repeated
        assert short.indices.tolist() == list(range(0, 60, 5)) + [55] * 4
        assert read_frame_indices(short.data) == short.indices.tolist()
        g = torch.Generator().manual_seed(3)
        rnd = src.clip(16, stride=3, random_offset=True, generator=g)
        assert (
            read_frame_indices(rnd.data) == rnd.indices.tolist() == list(range(rnd.indices[0], rnd.indices[0] + 48, 3))
        )


def test_backends_agree_bit_exact(coded):
    pytest.importorskip("cv2")
    idx = [0, 9, 10, 33, 59]
    a = open_video(coded, backend="pyav").get_frames(idx)
    b = open_video(coded, backend="opencv").get_frames(idx)
    assert torch.equal(a.data, b.data)  # both are FFmpeg's swscale rgb24
    assert torch.equal(a.indices, b.indices)


def test_float_output_is_preprocess_frames(h264):
    with open_video(h264, output="float", size=32) as src:
        f = src.get_frames([3, 4])
    with open_video(h264) as src:
        ref = preprocess_frames(src.get_frames([3, 4]).data, 32)
    assert f.data.shape == (2, 3, 32, 32) and f.data.dtype == torch.float32
    torch.testing.assert_close(f.data, ref, atol=0, rtol=0)
    with open_video(h264, output="float", size=32, mean=None, std=None) as src:
        x = src.get_frames([5]).data
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_variable_frame_rate(vfr):
    with open_video(vfr, backend="pyav") as src:
        assert src.info.variable_frame_rate and len(src) == len(VFR_PTS_MS)
        span = (VFR_PTS_MS[-1] - VFR_PTS_MS[0]) / 1000
        assert src.info.fps == pytest.approx((len(VFR_PTS_MS) - 1) / span)
        seq = [c for c in src.stream(chunk_size=8)]
        assert torch.cat([c.indices for c in seq]).tolist() == list(range(len(VFR_PTS_MS)))
        np.testing.assert_allclose(torch.cat([c.timestamps for c in seq]).numpy(), np.array(VFR_PTS_MS) / 1000)
        idx = [25, 3, 17, 17, 0]
        f = src.get_frames(idx)  # seeks by timestamp: frame identity survives irregular gaps
        assert read_frame_indices(f.data) == idx
        np.testing.assert_allclose(f.timestamps.numpy(), np.array(VFR_PTS_MS)[idx] / 1000)
    if not HAVE_CV2:
        return
    # OpenCV's count is an estimate for VFR files; sequential reading still gives the right frames and timestamps.
    with open_video(vfr, backend="opencv") as src:
        chunks = list(src.stream())
        assert read_frame_indices(torch.cat([c.data for c in chunks])) == list(range(len(VFR_PTS_MS)))
        np.testing.assert_allclose(torch.cat([c.timestamps for c in chunks]).numpy(), np.array(VFR_PTS_MS) / 1000)
        assert len(src) == len(VFR_PTS_MS)  # corrected once the stream ended


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotation_metadata_applied(make_video, rotation):
    path = make_video(f"rot{rotation}", "h264", num_frames=12, height=48, width=80, rotation=rotation)
    with open_video(path, backend="pyav") as src:
        assert src.info.rotation == rotation and (src.info.height, src.info.width) == (80, 48)
        f = src.get_frames([5, 11])
    assert f.data.shape == (2, 80, 48, 3)
    # Undo the display rotation: the stored pattern must come back.
    upright = torch.rot90(f.data, -rotation // 90, dims=(1, 2))
    assert read_frame_indices(upright) == [5, 11]
    if HAVE_CV2:
        assert torch.equal(open_video(path, backend="opencv").get_frames([5, 11]).data, f.data)  # OpenCV autorotates


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_odd_size(make_video, backend):
    path = make_video("odd", "mjpeg", num_frames=12, height=51, width=67)
    with open_video(path, backend=backend) as src:
        assert (src.info.height, src.info.width) == (51, 67)
        f = src.get_frames(range(12))
        assert f.data.shape == (12, 51, 67, 3) and read_frame_indices(f.data) == list(range(12))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_grayscale_comes_out_rgb(make_video, backend):
    path = make_video("gray", "h264", num_frames=12, gray=True)
    with open_video(path, backend=backend) as src:
        f = src.get_frames(range(12))
    assert f.data.shape == (12, 64, 64, 3)
    assert torch.equal(f.data[..., 0], f.data[..., 1]) and torch.equal(f.data[..., 1], f.data[..., 2])
    assert read_frame_indices(f.data) == list(range(12))
    expect = torch.from_numpy(index_pattern(7, 64, 64))
    assert (f.data[7].int() - expect.int()).abs().float().mean() < 2.0


@pytest.mark.parametrize("codec", ["h264", "vp9", "mjpeg"])
def test_audio_track_ignored(make_video, codec):
    path = make_video(f"audio_{codec}", codec, num_frames=30, audio=True)
    with open_video(path, backend="pyav") as src:
        assert src.info.has_audio and len(src) == 30
        assert [i for c in src.stream(chunk_size=16) for i in read_frame_indices(c.data)] == list(range(30))
        assert read_frame_indices(src.get_frames([29, 2, 15]).data) == [29, 2, 15]
    if HAVE_CV2:
        with open_video(path, backend="opencv") as src:
            assert read_frame_indices(src.get_frames([29, 2, 15]).data) == [29, 2, 15]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_long_gop_bframes_seeks(make_video, suffix):
    """Keyframes 100 frames apart and B-frames: every seek lands on the asked frame, in any order."""
    path = make_video(f"longgop{suffix}", "h264", num_frames=300, height=32, width=32, suffix=suffix, gop=100)
    with open_video(path, backend="pyav") as src:
        keys = src.keyframe_indices
        assert len(keys) >= 3 and keys[0] == 0
        rng = random.Random(5)
        idx = [rng.randrange(300) for _ in range(40)] + [k - 1 for k in keys[1:]] + keys + [299]
        assert read_frame_indices(src.get_frames(idx).data) == idx


def test_mpegts_stream_from_the_last_keyframe_interval(make_video):
    """MPEG-TS seeks land a keyframe late; from inside the last interval that is past the end, and a valid file raised
    "the stream ends after frame 58"."""
    path = make_video("ts", "h264", suffix=".ts")
    with open_video(path, backend="pyav") as src:
        keys = src.keyframe_indices
        assert len(src) == N_FRAMES and keys[-1] == 50
        for start in [keys[-2] + 3, *range(keys[-1], N_FRAMES)]:
            chunks = list(src.stream(start=start, chunk_size=4))
            assert [i for c in chunks for i in c.indices.tolist()] == list(range(start, N_FRAMES))
            assert [i for c in chunks for i in read_frame_indices(c.data)] == list(range(start, N_FRAMES))
        got = [i for c in src.stream(start=keys[-1] + 1, chunk_size=4, target_fps=10) for i in c.indices.tolist()]
        assert got == list(range(keys[-1] + 1, N_FRAMES, 3))


def test_timestamps_not_starting_at_zero(make_video, tmp_path):
    """A Matroska file whose timestamps start at 2 s: FFmpeg's duration (2.99 s) counts from 0, the frames span 0.99 s;
    that is not a truncated file. A file really cut short still is."""
    pts = [2000 + 33 * i for i in range(30)]
    path = make_video("offset_mkv", "h264", num_frames=30, suffix=".mkv", pts_ms=pts)
    with open_video(path, backend="pyav") as src:
        assert len(src) == 30 and src.info.duration == pytest.approx(0.99, abs=0.01)
        assert read_frame_indices(src.get_frames([29, 0, 14]).data) == [29, 0, 14]
    cut = write_truncated_copy(path, tmp_path / "offset_cut.mkv", keep=0.6)
    with pytest.raises(CorruptVideoError, match=r"offset_cut\.mkv: truncated"):
        open_video(cut, backend="pyav")


@pytest.mark.parametrize("name", ["ts", "offset_mkv"])
def test_timestamps_count_from_the_first_frame(make_video, name):
    """Timestamps are seconds from the stream's start on every backend: MPEG-TS starts its clock at 1/15 s here, the
    Matroska file at 2 s; PyAV returned those raw times where OpenCV counted from 0."""
    if name == "ts":
        path, n = make_video("ts", "h264", suffix=".ts"), N_FRAMES
    else:
        path, n = (
            make_video("offset_mkv", "h264", num_frames=30, suffix=".mkv", pts_ms=[2000 + 33 * i for i in range(30)]),
            30,
        )
    idx = [0, 1, 17, n - 1]
    with open_video(path, backend="pyav") as src:
        stamps = src.get_frames(idx).timestamps.numpy()
        streamed = torch.cat([c.timestamps for c in src.stream(chunk_size=16)]).numpy()
    assert stamps[0] == 0.0 and streamed[0] == 0.0
    np.testing.assert_allclose(streamed[idx], stamps, atol=1e-9)
    np.testing.assert_allclose(stamps, np.array(idx) * (1 / 30 if name == "ts" else 0.033), atol=1e-6)
    with open_stream(str(path)) as live:
        np.testing.assert_allclose(torch.cat([c.timestamps for c in live.stream(chunk_size=16)]).numpy(), streamed)
    if HAVE_CV2:
        with open_video(path, backend="opencv") as src:
            np.testing.assert_allclose(src.get_frames(idx).timestamps.numpy(), stamps, atol=1e-6)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_opencv_reports_rotation(make_video, rotation):
    """OpenCV rotates the frames itself; its info says by how much, as PyAV's does (DALI's OpenCV probe uses it)."""
    pytest.importorskip("cv2")
    path = make_video(f"rot{rotation}_vp9", "vp9", num_frames=12, height=48, width=80, rotation=rotation, suffix=".mkv")
    with open_video(path, backend="opencv") as cv, open_video(path, backend="pyav") as ref:
        assert cv.info.rotation == ref.info.rotation == rotation
        assert (cv.info.height, cv.info.width) == (ref.info.height, ref.info.width)
        assert torch.equal(cv.get_frames([3, 7]).data, ref.get_frames([3, 7]).data)
