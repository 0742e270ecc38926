"""What a video container's own headers say, read without a decoder: whether a file starts like a known container,
the byte length its headers declare (a shorter file lost its end), and the codec of each video track (MP4/MOV, AVI,
Matroska/WebM). Decoders report a file they cannot open with one vague message; these headers tell an audio-only file
from a codec no decoder knows from a cut-off or damaged file, so every backend raises the same ``VideoError`` subclass
for the same file (:func:`open_failure`, :func:`no_decoder`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from coldstream.errors import InputError

from .errors import CorruptVideoError, NotAVideoError, UnsupportedCodecError, VideoError

# Leading bytes of the containers we know; a file that fails to open and starts with one of these is a broken video,
# anything else is not a video at all.
_CONTAINER_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # MP4 / MOV / 3GP
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (0, b"RIFF"),  # AVI
    (0, b"OggS"),
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"\x47"),  # MPEG-TS (weak, checked last)
)


def looks_like_video_container(path: str) -> bool:
    """Whether the file starts like a known video container (used to tell "corrupt video" from "not a video")."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return any(head[off : off + len(magic)] == magic for off, magic in _CONTAINER_MAGIC)


def declared_file_size(path: str) -> int | None:
    """The byte length a RIFF (AVI), ISO BMFF (MP4/MOV) or Matroska (MKV/WebM) file's own headers declare, or None
    when unknown.

    A file shorter than that lost its end (an interrupted copy or download): that is data really missing, unlike a
    header that merely over-counts frames. RIFF: the first chunk's size (OpenDML files continue in more RIFF chunks
    after it, so only a shorter file counts). ISO BMFF: the end of the last top-level box. Matroska: the end of the
    Segment (a live recording's Segment has unknown size: no claim).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return int.from_bytes(head[4:8], "little") + 8
            if head[:4] == b"\x1a\x45\xdf\xa3":
                f.seek(0)
                return _matroska_segment_end(f.read(256))
            if head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
                return None
            pos = 0
            while pos < size:
                f.seek(pos)
                box = f.read(16)
                if len(box) < 8:
                    return pos + 8
                n = int.from_bytes(box[:4], "big")
                if n == 1 and len(box) == 16:
                    n = int.from_bytes(box[8:16], "big")
                elif n == 0:  # the last box runs to the end of the file
                    return size
                if n < 8:
                    return None  # not a box structure we understand: no claim
                pos += n
            return pos
    except OSError:
        return None


def _ebml_size(buf: bytes, pos: int) -> tuple[int | None, int]:
    """An EBML element size at ``pos``: (value, or None when "unknown"; bytes it takes)."""
    length = 9 - buf[pos].bit_length()  # the leading zero bits of the first byte say how many bytes follow
    if length > 8 or pos + length > len(buf):
        raise InputError(f"no EBML size at byte {pos}")
    value = int.from_bytes(buf[pos : pos + length], "big") & ((1 << (7 * length)) - 1)
    return (None if value == (1 << (7 * length)) - 1 else value), length


def _matroska_segment_end(buf: bytes) -> int | None:
    """Where the Segment after the EBML header at the start of ``buf`` ends, or None when unknown."""
    try:
        size, n = _ebml_size(buf, 4)
        pos = 4 + n + (size or 0)
        if size is None or buf[pos : pos + 4] != b"\x18\x53\x80\x67":  # the Segment element
            return None
        size, n = _ebml_size(buf, pos + 4)
    except (IndexError, InputError):
        return None
    return None if size is None else pos + 4 + n + size


def declared_video_codecs(path: str) -> list[str] | None:
    """The codec tag of each video track an MP4/MOV, AVI or Matroska/WebM header declares (``[]``: none, as in an
    audio-only file), or None when there is no such header to read. Reads headers only; for telling apart why a
    decoder will not open a file."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            f.seek(0)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _avi_video_codecs(f.read(1 << 16))  # the stream headers ('hdrl') come first
            if head[:4] == b"\x1a\x45\xdf\xa3":
                return _matroska_video_codecs(f.read(1 << 20))  # Tracks come before the first Cluster
            if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
                moov = _iso_box(f, b"moov")
                return None if moov is None else _iso_video_codecs(moov)
    except (OSError, IndexError, InputError):
        pass
    return None


def _avi_video_codecs(buf: bytes) -> list[str] | None:
    if b"hdrl" not in buf:
        return None
    out, pos = [], buf.find(b"strh")
    while pos >= 0:
        if buf[pos + 8 : pos + 12] == b"vids":  # stream type, then handler; the bitmap header's compression is in strf
            strf = buf.find(b"strf", pos)
            tag = buf[strf + 24 : strf + 28].strip(b"\0") if strf >= 0 else b""
            out.append((tag or buf[pos + 12 : pos + 16]).decode("latin-1"))
        pos = buf.find(b"strh", pos + 4)
    return out


def _iso_box(f, name: bytes) -> bytes | None:
    """The payload of the first top-level ISO BMFF box ``name`` (at most 64 MiB of it)."""
    size, pos = os.fstat(f.fileno()).st_size, 0
    while pos + 8 <= size:
        f.seek(pos)
        head = f.read(16)
        n, hdr = int.from_bytes(head[:4], "big"), 8
        if n == 1:
            n, hdr = int.from_bytes(head[8:16], "big"), 16
        elif n == 0:
            n = size - pos
        if n < hdr:
            return None
        if head[4:8] == name:
            f.seek(pos + hdr)
            return f.read(min(n - hdr, 64 << 20))
        pos += n
    return None


def _iso_video_codecs(moov: bytes) -> list[str]:
    out = []
    for trak in moov.split(b"trak")[1:]:
        h = trak.find(b"hdlr")  # version/flags, pre_defined, then the handler type
        if h >= 0 and trak[h + 12 : h + 16] == b"vide":
            s = trak.find(b"stsd")  # version/flags, entry count, then the first entry's size and format
            out.append(trak[s + 16 : s + 20].decode("latin-1") if s >= 0 else "")
    return out


def _ebml_children(buf: bytes, pos: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """``(id, data start, data end)`` of each EBML element in ``buf[pos:end]`` (an unknown size runs to ``end``)."""
    while pos < end:
        id_len = 9 - buf[pos].bit_length()
        if id_len > 4:
            raise InputError(f"no EBML element at byte {pos}")
        size, n = _ebml_size(buf, pos + id_len)
        start = pos + id_len + n
        yield buf[pos : pos + id_len], start, end if size is None else start + size
        pos = end if size is None else start + size


def _matroska_video_codecs(buf: bytes) -> list[str] | None:
    segment = next((el for el in _ebml_children(buf, 0, len(buf)) if el[0] == b"\x18\x53\x80\x67"), None)
    if segment is None:
        return None
    for eid, start, end in _ebml_children(buf, segment[1], min(segment[2], len(buf))):
        if eid == b"\x1f\x43\xb6\x75":  # a Cluster before any Tracks
            return None
        if eid == b"\x16\x54\xae\x6b":  # Tracks: a TrackEntry each, with TrackType (1: video) and CodecID
            tracks = [(s, e) for k, s, e in _ebml_children(buf, start, end) if k == b"\xae"]
            fields = [{k: buf[a:b] for k, a, b in _ebml_children(buf, s, e)} for s, e in tracks]
            return [f.get(b"\x86", b"").decode("latin-1") for f in fields if f.get(b"\x83") == b"\x01"]
    return None


def missing_bytes(path: str) -> str | None:
    """How much of the file is missing when it is shorter than its own headers declare (:func:`declared_file_size`),
    else None."""
    want, have = declared_file_size(path), os.path.getsize(path)
    if want is None or have + 8 >= want:
        return None
    return f"the file is {have} bytes but its headers declare {want} ({100 * (want - have) / want:.0f}% missing)"


def open_failure(path: str, detail: str) -> VideoError:
    """The error for a file a decoder could not open: ``NotAVideoError`` for an empty file or one that does not start
    like a known container, else ``CorruptVideoError`` (a video container whose data is broken). ``detail``: what the
    decoder said."""
    if os.path.getsize(path) == 0:
        return NotAVideoError(path, "empty file (0 bytes)")
    if looks_like_video_container(path):
        return CorruptVideoError(path, f"truncated or corrupt video container: {detail}")
    return NotAVideoError(path, f"not a video file (no decoder recognises its format): {detail}")


def no_decoder(path: str, who: str = "FFmpeg") -> UnsupportedCodecError:
    """The error for a video track whose codec ``who`` has no decoder for, naming the codec the header declares."""
    codecs = declared_video_codecs(path) if os.path.isfile(path) else None
    codec = f" {codecs[0]!r}" if codecs else ""
    return UnsupportedCodecError(
        path, f"{who} has no decoder for its video codec{codec} (unknown or unsupported codec)"
    )
