"""What real files have and the synthetic recipes do not: each root cause behind a real file that plays everywhere
but was rejected, reproduced with a small video written by PyAV here.

Frame identity is checked against the pattern each frame carries (``coldstream.testing``) and against OpenCV's
sequential decode, the second opinion on which pictures exist and in which order.
"""

import glob
import logging
import random
import struct
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from coldstream.io import CorruptVideoError, open_video
from coldstream.testing import index_pattern, read_frame_indices, write_index_video, write_truncated_copy

from .conftest import HAVE_CV2

X264_BFRAMES = {"preset": "ultrafast", "x264-params": "keyint=10:min-keyint=10:bframes=2:scenecut=0"}


def _frames(n, size=64):
    for i in range(n):
        f = av.VideoFrame.from_ndarray(index_pattern(i, size, size), format="rgb24")
        f.pts = i
        yield f


def _encode(stream, n):
    out = []
    for f in _frames(n):
        out += stream.encode(f)
    return out + list(stream.encode())


def _opencv_frames(path) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            return out
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _check_identity(path, expect: list[int], mode: str | None = None):
    """Every access path names the same pictures: stream, random access in any order, stream from the middle."""
    n = len(expect)
    with open_video(path, backend="pyav") as src:
        if mode is not None:
            assert src.index_mode == mode
        assert len(src) == n
        seq = torch.cat([c.data for c in src.stream(chunk_size=7)])
        assert read_frame_indices(seq) == expect
        rng = random.Random(0)
        idx = [rng.randrange(n) for _ in range(12)] + [n - 1, 0, n // 2] + src.keyframe_indices
        got = src.get_frames(idx)
        assert read_frame_indices(got.data) == [expect[i] for i in idx]
        assert torch.equal(got.data, seq[idx])
        mid = [i for c in src.stream(start=n // 2 + 1, chunk_size=4) for i in c.indices.tolist()]
        assert mid == list(range(n // 2 + 1, n))
        stamps = [src.timestamp(i) for i in range(n)]
    assert stamps == sorted(stamps)
    if HAVE_CV2:
        ref = _opencv_frames(path)
        assert len(ref) == n and torch.equal(torch.from_numpy(np.stack(ref)), seq)  # same pictures, same order
    return stamps


@pytest.fixture(scope="module")
def quirks(tmp_path_factory):
    d = tmp_path_factory.mktemp("quirks")
    out = {}

    # box.mp4: H.264 with B-frames muxed without composition offsets (no ctts): every packet's pts is its dts, so
    # sorting packets by pts gives decode order, not display order.
    out["pts_is_dts"] = d / "pts_is_dts.mp4"
    with av.open(str(out["pts_is_dts"]), "w") as c:
        s = c.add_stream("libx264", rate=30, options=X264_BFRAMES)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for k, p in enumerate(_encode(s, 40)):
            p.pts = p.dts = k
            c.mux(p)

    # Megamind.avi: MPEG-4 Part 2 with B-frames in AVI, which stores no presentation timestamps (FFmpeg guesses them
    # from the bitstream; packed "DivX" B-frames fool the guess).
    out["avi_bframes"] = d / "avi_bframes.avi"
    with av.open(str(out["avi_bframes"]), "w") as c:
        s = c.add_stream("mpeg4", rate=25, options={"bf": "2", "g": "10"})
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for p in _encode(s, 40):
            c.mux(p)

    # tree.avi: an AVI with timestamp gaps. FFmpeg's AVI muxer fills them with empty "drop frame" chunks, so the
    # header counts 30 frame slots while 10 pictures exist (a variable frame rate).
    out["avi_sparse"] = d / "avi_sparse.avi"
    out["avi_sparse_pts"] = [0, 3, 4, 9, 10, 11, 20, 25, 26, 29]
    with av.open(str(out["avi_sparse"]), "w") as c:
        s = c.add_stream("mjpeg", rate=15)
        s.width = s.height = 64
        s.pix_fmt = "yuvj420p"
        s.codec_context.time_base = Fraction(1, 15)
        for f, t in zip(_frames(10), out["avi_sparse_pts"], strict=True):
            f.pts, f.time_base = t, Fraction(1, 15)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)

    # An AVI whose header declares three times the frames it holds (written before capture ended), data intact.
    plain = write_index_video(d / "plain.avi", 20, codec="mjpeg")
    data = bytearray(plain.read_bytes())
    for tag, offset in ((b"avih", 8 + 16), (b"strh", 8 + 32)):  # dwTotalFrames; the video stream's dwLength
        at = data.find(tag)
        struct.pack_into("<I", data, at + offset, 60)
    out["avi_overcount"] = d / "avi_overcount.avi"
    out["avi_overcount"].write_bytes(bytes(data))

    # An MP4 whose edit list starts at frame 3: frames 0-2 are decoded as references but never shown.
    data = bytearray(write_index_video(d / "full.mp4", 30).read_bytes())
    at = data.find(b"elst")
    seg, media_time = struct.unpack_from(">II", data, at + 12)  # version 0, one entry: duration (ms), media time
    struct.pack_into(">II", data, at + 12, seg - 100, media_time + 3 * 512)  # 1/15360 time base, 30 fps
    out["edit_list"] = d / "edit_list.mp4"
    out["edit_list"].write_bytes(bytes(data))

    # A raw H.264 elementary stream: no container, no timestamps at all, not seekable.
    out["raw_h264"] = d / "raw.h264"
    with av.open(str(out["raw_h264"]), "w", format="h264") as c:
        s = c.add_stream("libx264", rate=30, options=X264_BFRAMES)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for p in _encode(s, 40):
            c.mux(p)

    # Two packets sharing one timestamp (a muxer rounding to milliseconds, a capture that stalled).
    out["dup_pts"] = d / "dup_pts.mkv"
    with av.open(str(out["dup_pts"]), "w") as c:
        s = c.add_stream("mjpeg", rate=30)
        s.width = s.height = 64
        s.pix_fmt = "yuvj420p"
        for p in _encode(s, 20):
            if p.pts == 7:
                p.pts = p.dts = 6
            c.mux(p)
    return out


def test_bframes_muxed_with_pts_equal_dts(quirks):
    """box.mp4: was "frame N is missing from the decoded stream"."""
    path = quirks["pts_is_dts"]
    stamps = _check_identity(path, list(range(40)), mode="decode")
    np.testing.assert_allclose(stamps, np.arange(40) / 30)  # the sorted decode times are the display grid
    with open_video(path) as src:
        assert src.info.fps == 30.0 and not src.info.variable_frame_rate
    # The packet index alone gets this file wrong, and says so instead of returning wrong frames.
    with open_video(path, backend="pyav", index="packets") as src:
        with pytest.raises(CorruptVideoError, match=r"pts_is_dts\.mp4: .*index='decode'"):
            src.get_frames(range(40))


def test_avi_with_bframes(quirks):
    """Megamind.avi: was "frame N is missing from the decoded stream"."""
    stamps = _check_identity(quirks["avi_bframes"], list(range(40)), mode="decode")
    np.testing.assert_allclose(stamps, np.arange(40) / 25)


def test_avi_drop_frame_slots_are_variable_frame_rate(quirks, caplog):
    """tree.avi: was "truncated: the container declares 444 video frames but only 68 are present"."""
    path, pts = quirks["avi_sparse"], quirks["avi_sparse_pts"]
    with caplog.at_level(logging.WARNING, logger="coldstream.io"):
        stamps = _check_identity(path, list(range(10)), mode="packets")
        open_video(path).close()
    np.testing.assert_allclose(stamps, np.array(pts) / 15)
    assert (
        caplog.text.count("declares 30 video frames but holds 10 pictures and no data is missing") == 1
    )  # logged once per file
    with open_video(path) as src:
        assert src.info.variable_frame_rate and src.info.fps == pytest.approx(9 / (29 / 15))
        assert src.info.duration > 29 / 15  # the last picture lasts too (median gap: a guess, AVI has no end time)


def test_avi_header_overcounts_frames(quirks):
    _check_identity(quirks["avi_overcount"], list(range(20)), mode="packets")


def test_truncated_is_still_corrupt(quirks, tmp_path):
    """Data really missing still raises, for the files above that only looked broken."""
    for name in ("avi_sparse", "avi_overcount", "pts_is_dts", "avi_bframes"):
        cut = write_truncated_copy(quirks[name], tmp_path / f"cut_{quirks[name].name}", keep=0.6)
        with pytest.raises(CorruptVideoError, match=rf"cut_{quirks[name].name}: (truncated|.*corrupt)"):
            with open_video(cut) as src:
                src.get_frames(range(len(src)))


def test_edit_list_hides_leading_frames(quirks):
    """Packets before an edit list's start are decoded as references but are not frames of the video."""
    _check_identity(quirks["edit_list"], list(range(3, 30)), mode="packets")
    with open_video(quirks["edit_list"]) as src:
        assert src.timestamp(0) == 0.0 and src.info.fps == 30.0


def test_no_timestamps_raw_stream(quirks):
    path = quirks["raw_h264"]
    _check_identity(path, list(range(40)), mode="decode")
    with open_video(path) as src:
        assert not src.timestamps_known and src.keyframe_indices == [0]
        assert src.timestamp(1) == pytest.approx(1 / src.info.fps)


def test_duplicate_timestamps(quirks):
    path = quirks["dup_pts"]
    _check_identity(path, list(range(20)), mode="decode")
    with open_video(path) as src:
        assert src.timestamp(6) == src.timestamp(7)  # the container's times, repeated as stored
        assert read_frame_indices(src.get_frames([7]).data) == [7]
        assert read_frame_indices(src.get_frames([6]).data) == [6]


REAL = "/tmp/cs_pkgdata"
REAL_FILES = sorted(
    glob.glob(f"{REAL}/opencv-doc/**/*.avi", recursive=True)
    + glob.glob(f"{REAL}/opencv-doc/**/*.mp4", recursive=True)
    + glob.glob(f"{REAL}/python3-imageio/**/*.mp4", recursive=True)
)


@pytest.mark.skipif(not REAL_FILES, reason=f"no packaged sample videos under {REAL} (opencv-doc, python3-imageio)")
@pytest.mark.parametrize("path", REAL_FILES or [None], ids=lambda p: p and p.rsplit("/", 1)[-1])
def test_packaged_sample_videos(path):
    """Real files from Debian's opencv-doc and python3-imageio: PyAV agrees with OpenCV's sequential decode."""
    if not HAVE_CV2:
        pytest.skip("OpenCV is the second opinion here")
    import hashlib

    ref = [hashlib.md5(f.tobytes()).hexdigest() for f in _opencv_frames(path)]
    with open_video(path, backend="pyav") as src:
        assert len(src) == len(ref)
        seq = [hashlib.md5(f.numpy().tobytes()).hexdigest() for c in src.stream(chunk_size=16) for f in c.data]
        assert seq == ref
        rng = random.Random(1)
        idx = [rng.randrange(len(src)) for _ in range(10)] + src.keyframe_indices[1:3]
        got = src.get_frames(idx).data
        assert [hashlib.md5(f.numpy().tobytes()).hexdigest() for f in got] == [ref[i] for i in idx]
        src.clip(16, target_fps=6)


def test_first_frames_check_catches_what_the_packets_hide(quirks, monkeypatch):
    """The safety net: a file whose packets look fine but whose decoder disagrees is indexed by decoding."""
    from coldstream.io.pyav import PyAVSource

    monkeypatch.setattr(PyAVSource, "_packet_index_problem", lambda self: None)
    with open_video(quirks["pts_is_dts"], backend="pyav") as src:
        assert src.index_mode == "decode"
        assert read_frame_indices(src.get_frames([33, 2, 17]).data) == [33, 2, 17]


def test_seek_that_lands_late_is_retried(make_video, monkeypatch):
    """A demuxer that seeks past the keyframe asked for costs time, never a wrong frame."""
    path = make_video("h264", "h264")
    with open_video(path, backend="pyav") as src:
        keys = src.keyframe_indices
        assert len(keys) >= 4
        # Every seek point now sends the demuxer to the keyframe after it.
        late = {a: src._seek_ts[b] for a, b in zip(keys[1:], keys[2:], strict=False)}
        monkeypatch.setattr(src, "_seek_ts", {**src._seek_ts, **late})
        idx = [keys[1] + 1, keys[2], keys[2] + 3, keys[1]]
        assert read_frame_indices(src.get_frames(idx).data) == idx
        got = [i for c in src.stream(start=keys[1] + 2, chunk_size=5) for i in read_frame_indices(c.data)]
        assert got == list(range(keys[1] + 2, len(src)))


def test_opencv_exact_count(quirks):
    """Without PyAV, OpenCV's count is the container's (30 slots here); ``exact_count`` counts the pictures."""
    pytest.importorskip("cv2")
    path = quirks["avi_sparse"]
    with open_video(path, backend="opencv") as src:
        assert len(src) == 30
    with open_video(path, backend="opencv", exact_count=True) as src, open_video(path, backend="pyav") as ref:
        assert len(src) == len(ref) == 10
        a, b = src.clip(4, stride=2), ref.clip(4, stride=2)
        assert torch.equal(a.indices, b.indices) and torch.equal(a.data, b.data)
        assert read_frame_indices(src.get_frames([9, 0, 4]).data) == [9, 0, 4]
