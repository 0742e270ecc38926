"""Live sources: a non-seekable byte stream (a pipe) decoded front to back with exact indices and timestamps."""

import io

import numpy as np
import pytest

from coldstream.io import FrameIndexError, FrameSource, StreamSource, open_stream
from coldstream.testing import read_frame_indices

from .conftest import N_FRAMES, VFR_PTS_MS


class Pipe(io.RawIOBase):
    """Bytes that arrive in small pieces and cannot be rewound, like a socket or a camera pipe."""

    def __init__(self, data: bytes, piece: int = 997):
        self._data, self._pos, self._piece = data, 0, piece

    def readable(self):
        return True

    def seekable(self):
        return False

    def readinto(self, buf):
        n = min(len(buf), self._piece, len(self._data) - self._pos)
        buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_pipe_stream_exact(make_video, codec):
    path = make_video(f"live_{codec}", codec, suffix=".mkv")
    with open_stream(Pipe(path.read_bytes()), format="matroska") as src:
        assert src.info.num_frames == 0 and src.info.fps == 30.0
        chunks = list(src.stream(chunk_size=5))
    idx = [i for c in chunks for i in c.indices.tolist()]
    assert idx == list(range(N_FRAMES))
    assert [i for c in chunks for i in read_frame_indices(c.data)] == idx
    assert max(len(c) for c in chunks) == 5
    with open_stream(Pipe(path.read_bytes()), format="matroska") as src:
        strided = list(src.stream(start=2, chunk_size=3, target_fps=10))  # stride 3
    assert [i for c in strided for i in read_frame_indices(c.data)] == list(range(2, N_FRAMES, 3))


def test_pipe_vfr_timestamps_and_start(vfr):
    with open_stream(Pipe(vfr.read_bytes()), format="matroska") as src:
        chunks = list(src.stream(start=4, chunk_size=8))
        with pytest.raises(FrameIndexError, match="cannot go back"):
            next(src.stream(start=0))
        # Stream-only: a live source has no random access to call (no method that could only refuse).
        assert isinstance(src, StreamSource) and not isinstance(src, FrameSource)
        assert not any(hasattr(src, m) for m in ("get_frames", "clip", "strided_indices", "__len__"))
    got = np.concatenate([c.timestamps.numpy() for c in chunks])
    np.testing.assert_allclose(got, np.array(VFR_PTS_MS[4:]) / 1000)
    assert [i for c in chunks for i in read_frame_indices(c.data)] == list(range(4, len(VFR_PTS_MS)))
