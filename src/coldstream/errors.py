"""The errors coldstream raises on purpose. Every refusal derives from :class:`ColdstreamError`, so one ``except``
catches whatever coldstream refuses; each class also derives from the built-in exception it refines (``ValueError``,
``TypeError``, ...), so code written against the built-in classes keeps working.

Messages say what was expected and what was given. ``tests/test_errors.py`` checks that every ``raise`` in the
package raises one of these classes (or a subclass defined next to its use, such as ``coldstream.io.VideoError``).
"""

from __future__ import annotations


class ColdstreamError(Exception):
    """Base of every error coldstream raises on purpose."""


class InputError(ColdstreamError, ValueError):
    """An argument coldstream refuses: a wrong shape, value, dtype or option."""


class InputTypeError(ColdstreamError, TypeError):
    """An argument of the wrong type."""


class BackendError(ColdstreamError, RuntimeError):
    """A backend (kernel, attention, decoder, device) that cannot run here or on these inputs; the message says
    why, and what can run instead."""


class MissingDependencyError(ColdstreamError, ImportError):
    """An optional dependency is not installed (or cannot run here); the message gives the install command."""


class MissingFileError(ColdstreamError, FileNotFoundError):
    """A file that should exist does not (weights, checkpoint, label file, video)."""


class CheckpointError(ColdstreamError, ValueError):
    """Weights or a checkpoint that cannot be read, or that were written for another model: the message names
    every missing, unexpected and mis-shaped key, and the model the file was made for when it can tell."""


class ConfigError(ColdstreamError, ValueError):
    """A config file, override or name (encoder, core, readout, task) that does not fit."""


class DataError(ColdstreamError, ValueError):
    """A label or annotation file that does not follow its documented format, or does not match its videos."""


class StaleCacheError(ColdstreamError, RuntimeError):
    """A feature cache on disk was built under another key (encoder, weights, preprocessing or format)."""


class NonFiniteError(ColdstreamError, FloatingPointError):
    """A NaN or Inf where a finite number is needed (a training loss, a stream's frame)."""


class TrainingInterrupted(ColdstreamError, RuntimeError):
    """A run was interrupted (Ctrl-C, SIGTERM) after saving its checkpoint; rerunning the command resumes it."""
