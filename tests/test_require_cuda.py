import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_require_cuda_turns_gpu_skips_into_failures():
    """A GPU run must not pass by skipping: with COLDSTREAM_REQUIRE_CUDA=1 and no GPU, cuda tests fail."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda"]
    cmd.append("tests/model/test_encoders_cuda.py")
    strict = subprocess.run(cmd, cwd=root, env={**os.environ, "COLDSTREAM_REQUIRE_CUDA": "1"}, capture_output=True)
    assert strict.returncode != 0, strict.stdout.decode()[-500:]
    lenient = subprocess.run(cmd, cwd=root, env={**os.environ, "COLDSTREAM_REQUIRE_CUDA": "0"}, capture_output=True)
    assert lenient.returncode == 0 and b"skipped" in lenient.stdout
