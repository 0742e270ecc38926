"""Test-wide setup.

* Without a GPU, Triton kernels run through Triton's interpreter: ``TRITON_INTERPRET=1`` must be set before any
  ``@triton.jit`` function is defined, i.e. before ``coldstream.kernels`` is imported, so it is set here.
* Tests marked ``cuda`` are skipped without a GPU, unless ``COLDSTREAM_REQUIRE_CUDA=1``: then a missing GPU is a
  failure, so a GPU run can never pass by skipping (torchcodec's ``FAIL_WITHOUT_CUDA``).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

REQUIRE_CUDA = os.environ.get("COLDSTREAM_REQUIRE_CUDA", "0") == "1"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available() or REQUIRE_CUDA:  # with REQUIRE_CUDA, pytest_runtest_setup fails them instead
        return
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (COLDSTREAM_REQUIRE_CUDA=1 fails instead)"))


def pytest_runtest_setup(item):
    if REQUIRE_CUDA and "cuda" in item.keywords and not torch.cuda.is_available():
        pytest.fail("COLDSTREAM_REQUIRE_CUDA=1 but no CUDA device is available")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
