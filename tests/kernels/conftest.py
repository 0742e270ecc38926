"""Kernel tests that run Triton on CPU tensors need the interpreter.

tests/conftest.py sets ``TRITON_INTERPRET=1`` only on machines without a GPU. On a GPU machine those CPU-tensor
Triton cases are skipped (their reference-backend variants still run); the ``cuda``-marked tests run the compiled
kernels there instead.
"""

import inspect
import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TRITON_INTERPRET") == "1":
        return
    skip = pytest.mark.skip(
        reason="Triton on CPU tensors needs TRITON_INTERPRET=1 (set only on CPU-only machines); "
        "the cuda-marked tests run the kernels on this GPU"
    )
    for item in items:
        if "cuda" in item.keywords or "tests/kernels" not in str(item.path).replace(os.sep, "/"):
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "reference":
            continue
        if '"triton"' in inspect.getsource(item.function):
            item.add_marker(skip)
