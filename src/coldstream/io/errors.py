"""Error classes of ``coldstream.io``: every decoding error names the file and the problem.

``VideoError`` is the base of all per-file problems, so a dataset pass can skip a bad file with one ``except``; like
every error coldstream raises on purpose it derives from :class:`coldstream.errors.ColdstreamError`.
``BackendUnavailableError`` is not a per-file problem: it means an optional dependency is missing (a
:class:`coldstream.errors.MissingDependencyError`), and its message gives the exact install command.
"""

from __future__ import annotations

import os
from types import ModuleType

from coldstream import optional
from coldstream.errors import ColdstreamError, MissingDependencyError, MissingFileError


class VideoError(ColdstreamError):
    """A problem with one video file. ``path`` and ``problem`` are kept for logging."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class VideoNotFoundError(VideoError, MissingFileError):
    """The file does not exist (or is not a regular file)."""

    def __init__(self, path: str | os.PathLike, problem: str = "no such file"):
        VideoError.__init__(self, path, problem)


class NotAVideoError(VideoError):
    """The file is not a media container any decoder recognises (a text file, an image, random bytes...)."""


class CorruptVideoError(VideoError):
    """The container opened but its data is broken: truncated file, damaged packets, undecodable frames."""


class NoVideoFramesError(VideoError):
    """The file has no video stream, or its video stream holds zero frames."""


class UnsupportedCodecError(VideoError):
    """The chosen backend cannot decode this codec (e.g. DALI's CPU decoder and H.264)."""


class FrameIndexError(VideoError, IndexError):
    """A requested frame index is outside ``[0, num_frames)``."""


class BackendUnavailableError(MissingDependencyError):
    """An optional decoding backend is not installed or cannot run here; the message says how to fix it."""


def require_backend(name: str, what: str) -> ModuleType:
    """The optional dependency ``name`` (a :mod:`coldstream.optional` name: ``"pyav"``, ``"opencv"``, ``"dali"``) that
    ``what`` needs, or ``BackendUnavailableError`` saying why it cannot be imported and how to install it."""
    reason = optional.unavailable(name)
    if reason is not None:
        raise BackendUnavailableError(f"{what} needs {name}: {reason}")
    return optional.require(name, what)
