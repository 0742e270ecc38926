"""Small generated videos whose pixels encode the frame index (see ``coldstream.io.synthetic``)."""

import importlib.util
import os
from pathlib import Path

import pytest

from coldstream.io.synthetic import CODECS, write_index_video

# The test videos are written with PyAV. Without it (the GPU machines ship without it) the io tests cannot run: they
# are left out with a notice, unless COLDSTREAM_REQUIRE_CUDA=1, where a GPU run must not pass by skipping.
if importlib.util.find_spec("av") is None:
    if os.environ.get("COLDSTREAM_REQUIRE_CUDA", "0") == "1":
        raise pytest.UsageError("tests/io needs PyAV to write its test videos: pip install av")
    collect_ignore_glob = ["test_*.py"]
    print("tests/io skipped: PyAV is not installed (pip install av)")

HAVE_CV2 = importlib.util.find_spec("cv2") is not None
_NEEDS = {"opencv": "cv2", "dali": "nvidia.dali"}
_INSTALL = {"opencv": "pip install opencv-python-headless", "dali": "pip install nvidia-dali-cuda130"}


def backend_params(*names: str) -> list:
    """Backend names as pytest params, each skipped (with the install command) when its library is missing."""
    out = []
    for name in names:
        mod = _NEEDS.get(name)
        missing = mod is not None and importlib.util.find_spec(mod.split(".")[0]) is None
        if mod == "nvidia.dali" and not missing:
            missing = importlib.util.find_spec("nvidia.dali") is None
        marks = pytest.mark.skipif(missing, reason=f"{name} not installed: {_INSTALL.get(name)}")
        out.append(pytest.param(name, marks=marks, id=name))
    return out


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
