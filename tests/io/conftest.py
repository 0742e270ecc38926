"""Small generated videos whose pixels encode the frame index (see ``coldstream.testing``)."""

import os
import sys
from pathlib import Path

import pytest

from coldstream import optional
from coldstream.testing import CODECS, write_index_video

# The test videos are written with PyAV. Without it (the GPU machines ship without it) the io tests cannot run: they
# are left out with a notice, unless COLDSTREAM_REQUIRE_CUDA=1, where a GPU run must not pass by skipping.
if optional.unavailable("pyav") is not None:
    if os.environ.get("COLDSTREAM_REQUIRE_CUDA", "0") == "1":
        raise pytest.UsageError(f"tests/io needs PyAV to write its test videos: {optional.unavailable('pyav')}")
    collect_ignore_glob = ["test_*.py"]
    print(f"tests/io skipped: {optional.unavailable('pyav')}")

HAVE_CV2 = optional.unavailable("opencv") is None


def backend_params(*names: str) -> list:
    """Backend names (``pyav``, ``opencv``, ``dali``) as pytest params, each skipped with the reason and the install
    command when its library is missing."""
    out = []
    for name in names:
        why = optional.unavailable(name)
        out.append(pytest.param(name, marks=pytest.mark.skipif(why is not None, reason=str(why)), id=name))
    return out


@pytest.fixture
def hide_modules(monkeypatch):
    """``hide_modules("nvidia.dali", ...)``: importing those modules fails, as where they are not installed, and
    ``coldstream.optional`` probes again (also after the test, when they are back)."""

    def hide(*modules: str) -> None:
        for m in modules:
            monkeypatch.setitem(sys.modules, m, None)  # makes `import m` raise ImportError
        optional._probe.cache_clear()

    yield hide
    optional._probe.cache_clear()


N_FRAMES = 60  # 2 s at 30 fps, keyframe every 10 frames
VFR_PTS_MS = [i * 33 + (i % 3) * 10 + (i // 10) * 40 for i in range(30)]  # irregular gaps, 0 .. ~1.1 s


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def make_video(video_dir):
    """``make_video(name, **write_index_video kwargs)`` -> path, written once per session."""
    made: dict[str, Path] = {}

    def make(name: str, codec: str = "h264", num_frames: int = N_FRAMES, suffix: str | None = None, **kw) -> Path:
        if name not in made:
            path = video_dir / f"{name}{suffix or CODECS[codec].suffix}"
            made[name] = write_index_video(path, num_frames, codec=codec, **kw)
        return made[name]

    return make


@pytest.fixture(scope="session")
def h264(make_video):
    return make_video("h264", "h264")


@pytest.fixture(scope="session")
def vp9(make_video):
    return make_video("vp9", "vp9")


@pytest.fixture(scope="session")
def mjpeg(make_video):
    return make_video("mjpeg", "mjpeg")


@pytest.fixture(scope="session")
def vfr(make_video):
    return make_video("vfr", "h264", num_frames=len(VFR_PTS_MS), suffix=".mkv", pts_ms=VFR_PTS_MS)
