"""Streaming a long video keeps memory flat: 20,000 tiny frames through ``FrameSource.stream``."""

import gc

import pytest

from coldstream.io import open_video
from coldstream.testing import read_frame_index

from .conftest import backend_params

N_SOAK = 20_000


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.fixture(scope="module")
def long_video(make_video):
    # 32x32 MJPEG (8x8 cells survive JPEG): ~1 s to write, 20,000 frames at 30 fps = 11 minutes of video.
    return make_video("soak", "mjpeg", num_frames=N_SOAK, height=32, width=32)


@pytest.mark.parametrize("backend", backend_params("pyav", "opencv"))
def test_stream_20000_frames_flat_memory(long_video, backend):
    with open_video(long_video, backend=backend) as src:
        assert len(src) == N_SOAK
        expected = 0
        rss_warm = None
        for chunk in src.stream(chunk_size=4):
            for i in chunk.indices.tolist():
                assert i == expected
                expected += 1
            if expected % 2500 == 0:  # spot-check that the pixels are the frame they claim to be
                assert read_frame_index(chunk.data[-1]) == int(chunk.indices[-1]) % 65536
            if expected == 2000:
                gc.collect()
                rss_warm = _rss_bytes()
        gc.collect()
        growth = _rss_bytes() - rss_warm
    assert expected == N_SOAK
    # 18,000 more frames of 3 KB each would be 55 MB if anything were kept; allow allocator noise only.
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB while streaming"
