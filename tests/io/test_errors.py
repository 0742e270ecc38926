"""Bad input: each a clear error naming the file and the problem; a dataset pass skips and counts bad files."""

import errno
import logging
import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest

from coldstream.errors import ColdstreamError, InputError, MissingDependencyError, MissingFileError
from coldstream.io import (
    BackendUnavailableError,
    CorruptVideoError,
    FrameIndexError,
    NotAVideoError,
    NoVideoFramesError,
    UnsupportedCodecError,
    VideoError,
    VideoNotFoundError,
    open_stream,
    open_video,
)
from coldstream.io.dataset import ClipDataset, scan_videos
from coldstream.testing import (
    write_audio_only,
    write_foreign_codec_copy,
    write_truncated_copy,
    write_video_without_frames,
)

from .conftest import HAVE_CV2, backend_params  # noqa: E402

ALL = backend_params("pyav", "opencv", "dali")
CPU = backend_params("pyav", "opencv")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, make_video):
    d = tmp_path_factory.mktemp("bad")
    out = {}
    out["text"] = d / "notes.mp4"
    out["text"].write_text("this is a text file, not a video\n" * 20)
    out["random"] = d / "noise.webm"
    out["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out["empty"] = d / "empty.mp4"
    out["empty"].write_bytes(b"")
    for name, codec in [("trunc_mp4", "h264"), ("trunc_webm", "vp9"), ("trunc_avi", "mjpeg")]:
        src = make_video(codec, codec)
        out[name] = write_truncated_copy(src, d / f"{name}{src.suffix}", keep=0.5)
    # Damaged data: the MP4's coded frames (the mdat box) overwritten with noise, the header intact.
    data = bytearray(make_video("h264", "h264").read_bytes())
    lo, hi = data.find(b"mdat") + 8, data.find(b"moov") - 8
    data[lo:hi] = np.random.default_rng(1).integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    out["corrupt_mp4"] = d / "corrupt.mp4"
    out["corrupt_mp4"].write_bytes(bytes(data))
    # Zero video frames: audio only, and a video stream that never got a frame.
    out["audio_only"] = write_audio_only(d / "audio_only.mp4")
    out["no_frames"] = write_video_without_frames(d / "no_frames.mp4")
    out["audio_only_webm"] = write_audio_only(d / "audio_only.webm")
    # Codecs FFmpeg has no decoder for: the codec tag of an MJPEG AVI (stream header and bitmap header), a VP9 WebM's
    # CodecID and an H.264 MP4's sample description rewritten.
    out["unknown_codec"] = write_foreign_codec_copy(make_video("mjpeg", "mjpeg"), d / "unknown_codec.avi", "ZZZZ")
    out["unknown_codec_webm"] = write_foreign_codec_copy(make_video("vp9", "vp9"), d / "unknown_codec.webm", "V_ZZZ")
    out["unknown_codec_mp4"] = write_foreign_codec_copy(make_video("h264", "h264"), d / "unknown_codec.mp4", "zzzz")
    return out


def test_io_errors_are_coldstream_errors(h264):
    """One ``except ColdstreamError`` catches every refusal of coldstream.io, and each keeps its built-in meaning."""
    for cls in (NotAVideoError, CorruptVideoError, NoVideoFramesError, UnsupportedCodecError, FrameIndexError):
        assert issubclass(cls, VideoError) and issubclass(cls, ColdstreamError)
    assert issubclass(VideoNotFoundError, MissingFileError) and issubclass(FrameIndexError, IndexError)
    assert issubclass(BackendUnavailableError, MissingDependencyError)  # an ImportError, as it was
    with pytest.raises(InputError, match=r"backend must be one of .*got 'ffmpeg'"):
        open_video(h264, backend="ffmpeg")
    with pytest.raises(InputError, match="output must be 'uint8' or 'float', got 'rgb'"):
        open_video(h264, output="rgb")
    with open_video(h264) as src:
        with pytest.raises(InputError, match="no frame indices requested"):
            src.get_frames([])
        with pytest.raises(InputError, match="chunk_size must be >= 1, got 0"):
            next(src.stream(chunk_size=0))


@pytest.mark.parametrize("backend", ALL)
def test_missing_file(tmp_path, backend):
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoNotFoundError, match=r"nope\.mp4: no such file") as e:
        open_video(path, backend=backend)
    assert isinstance(e.value, FileNotFoundError) and e.value.path == str(path)
    with pytest.raises(VideoNotFoundError, match="not a regular file"):
        open_video(tmp_path, backend=backend)


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("name", ["text", "random"])
def test_not_a_video(bad_files, backend, name):
    with pytest.raises(NotAVideoError, match=rf"{bad_files[name].name}: not a video file"):
        open_video(bad_files[name], backend=backend)


def test_empty_file(bad_files):
    with pytest.raises(NotAVideoError, match=r"empty\.mp4: empty file \(0 bytes\)"):
        open_video(bad_files["empty"])


@pytest.mark.parametrize("name", ["trunc_mp4", "trunc_webm", "trunc_avi", "corrupt_mp4"])
def test_truncated_or_corrupt(bad_files, name):
    with pytest.raises(CorruptVideoError, match=rf"{bad_files[name].name}: (truncated|.*corrupt)"):
        src = open_video(bad_files[name], backend="pyav")
        src.get_frames(range(len(src)))


@pytest.mark.parametrize("name", ["trunc_mp4", "corrupt_mp4"])
def test_truncated_opencv(bad_files, name):
    pytest.importorskip("cv2")
    with pytest.raises(CorruptVideoError, match=bad_files[name].name):
        open_video(bad_files[name], backend="opencv")


@pytest.mark.parametrize("name", ["audio_only", "audio_only_webm", "no_frames"])
def test_zero_video_frames(bad_files, name):
    with pytest.raises(NoVideoFramesError, match=rf"{bad_files[name].name}: no video stream"):
        open_video(bad_files[name], backend="pyav")
    if HAVE_CV2:  # OpenCV does not say why it cannot open a file: the container's headers do
        with pytest.raises(NoVideoFramesError, match=rf"{bad_files[name].name}: no video track"):
            open_video(bad_files[name], backend="opencv")


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize(
    ("name", "tag"), [("unknown_codec", "ZZZZ"), ("unknown_codec_webm", "V_ZZZ"), ("unknown_codec_mp4", "zzzz")]
)
def test_codec_ffmpeg_cannot_decode(bad_files, backend, name, tag):
    path = bad_files[name]
    msg = rf"{path.name}: (OpenCV's )?FFmpeg has no decoder for its video codec '{tag}'"
    with pytest.raises(UnsupportedCodecError, match=msg):
        open_video(path, backend=backend)
    if backend == "pyav":
        with pytest.raises(UnsupportedCodecError, match=msg):
            open_stream(path)


def test_unsupported_codec_on_dali_cpu(h264):
    pytest.importorskip("nvidia.dali")
    with pytest.raises(UnsupportedCodecError, match=rf"{h264.name}: the dali-cpu backend cannot decode h264"):
        open_video(h264, backend="dali", device="cpu")


def test_decoder_error_names_the_frame(h264):
    """A decoder that fails after frame 0 names frame 1 (it said frame 0)."""

    class FailsAfterFirstFrame:
        def __init__(self, container):
            self._container = container

        def __getattr__(self, name):
            return getattr(self._container, name)

        def decode(self, *args):
            yield next(self._container.decode(*args))
            raise av.error.InvalidDataError(errno.EINVAL, "Invalid data found when processing input")

    with open_video(h264, backend="pyav") as src:
        src._container = FailsAfterFirstFrame(src._container)
        with pytest.raises(CorruptVideoError, match=r"h264\.mp4: corrupt data: cannot decode frame 1 \("):
            list(src.stream())


@pytest.mark.parametrize("backend", CPU)
def test_index_out_of_range(h264, backend):
    with open_video(h264, backend=backend) as src:
        with pytest.raises(FrameIndexError, match=r"h264\.mp4: frame index 60 out of range: the video has 60 frames"):
            src.get_frames([0, 60])
        with pytest.raises(FrameIndexError):
            src.get_frames([-1])


def test_dataset_pass_skips_and_counts(bad_files, h264, vp9, caplog):
    files = [h264, bad_files["text"], bad_files["trunc_webm"], vp9, bad_files["audio_only"], h264.parent / "gone.mp4"]
    files.append(bad_files["unknown_codec"])
    ds = ClipDataset(files, num_frames=4, target_fps=10)
    with caplog.at_level(logging.WARNING, logger="coldstream.io"):
        got = list(ds)
    assert [p for p, _ in got] == [str(h264), str(vp9)]
    assert all(c.data.shape == (4, 64, 64, 3) for _, c in got)
    assert ds.report.seen == 7 and ds.report.skipped == 5
    assert [p for p, _ in ds.report.problems] == [str(files[i]) for i in (1, 2, 4, 5, 6)]
    assert "gone.mp4" in caplog.text and "notes.mp4" in caplog.text
    good, report = scan_videos(files)
    assert good == [str(h264), str(vp9)] and report.skipped == 5


def _paths(batch):
    return [p for p, _ in batch]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataset_skips_counted_across_workers(bad_files, h264, vp9, num_workers):
    """DataLoader workers skip files in their own copies of the dataset: loader() brings the counts back."""
    files = [h264, bad_files["text"], vp9, bad_files["trunc_webm"], bad_files["audio_only"], h264.parent / "gone.mp4"]
    bad = {str(files[i]) for i in (1, 3, 4, 5)}
    ds = ClipDataset(files, num_frames=4, target_fps=10)
    got = [p for p, _ in ds.loader(num_workers=num_workers)]
    assert sorted(got) == sorted([str(h264), str(vp9)])
    assert ds.report.seen == 6 and ds.report.skipped == 4 and {p for p, _ in ds.report.problems} == bad
    batches = list(ds.loader(num_workers=num_workers, batch_size=3, collate_fn=_paths))  # skips bypass collate_fn
    assert sorted(p for b in batches for p in b) == sorted(got)
    assert ds.report.seen == 12 and ds.report.skipped == 8


def test_dataset_sharding_and_offsets(make_video):
    files = [make_video(f"shard{i}", "mjpeg", num_frames=40) for i in range(5)]
    per_rank = [
        [p for p, _ in ClipDataset(files, num_frames=4, rank=r, world_size=2, shuffle=True, seed=1)] for r in range(2)
    ]
    assert len(per_rank[0]) == len(per_rank[1]) == 3 and set(per_rank[0] + per_rank[1]) == set(map(str, files))
    starts = {int(c.indices[0]) for _, c in ClipDataset(files, num_frames=4, stride=2, random_offset=True)}
    assert len(starts) > 1  # random temporal offsets differ between clips


def test_missing_dali_gives_install_command(h264, hide_modules):
    hide_modules("nvidia.dali")
    with pytest.raises(BackendUnavailableError, match="pip install nvidia-dali-cuda130"):
        open_video(h264, backend="dali")


@pytest.mark.parametrize(
    ("backend", "module", "install"),
    [("pyav", "av", "pip install av"), ("opencv", "cv2", "pip install opencv-python-headless")],
)
def test_missing_cpu_decoder_gives_install_command(h264, hide_modules, backend, module, install):
    hide_modules(module)
    with pytest.raises(BackendUnavailableError, match=rf"the \w+ CPU backend needs {backend}: .*{install}"):
        open_video(h264, backend=backend)
    if backend == "pyav":
        with pytest.raises(BackendUnavailableError, match=f"live sources .* needs pyav: .*{install}"):
            open_stream(h264)


def test_imports_without_optional_decoders():
    """coldstream.io imports and explains itself with PyAV, OpenCV and DALI all missing (the GPU machines)."""
    code = textwrap.dedent(
        """
        import sys
        for m in ("av", "cv2", "nvidia.dali"):
            sys.modules[m] = None
        import coldstream.io as io
        info = io.available_backends()
        assert not any(ok for ok, _ in info.values()), info
        assert "pip install av" in info["pyav"][1] and "nvidia-dali-cuda130" in info["dali-cpu"][1]
        try:
            io.open_video(sys.argv[1])
        except io.BackendUnavailableError as e:
            assert "pip install av" in str(e), e
        else:
            raise AssertionError("no error")
        assert "coldstream.testing" not in sys.modules  # the library never loads the test-video writers
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code, __file__], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@pytest.mark.parametrize("name", ["trunc_webm", "trunc_avi"])
def test_truncated_opencv_streams(bad_files, name):
    """OpenCV opened these and streamed the first 26 of 60 frames as if that were the video."""
    pytest.importorskip("cv2")
    with pytest.raises(CorruptVideoError, match=rf"{bad_files[name].name}: truncated: the file is \d+ bytes but its"):
        open_video(bad_files[name], backend="opencv")


def test_opencv_count_correction_is_logged(make_video, caplog):
    """OpenCV's frame count is the container's figure; when decoding ends before it, the correction is logged."""
    pytest.importorskip("cv2")
    path = make_video("offset_mkv", "h264", num_frames=30, suffix=".mkv", pts_ms=[2000 + 33 * i for i in range(30)])
    with caplog.at_level(logging.WARNING, logger="coldstream.io"), open_video(path, backend="opencv") as src:
        declared = len(src)
        assert sum(len(c) for c in src.stream(chunk_size=8)) == len(src) == 30 < declared
    assert f"offset_mkv.mkv: the container declares {declared} frames, 30 decode" in caplog.text
