"""GPU checks of the frozen encoders (timing-free): SDPA/xFormers vs the math oracle, CUDA-graph replay and
torch.compile vs eager."""

import pytest
import torch

from coldstream.model import build_encoder
from coldstream.model.cuda_graph import CUDAGraphRunner
from coldstream.model.layers.attention import xformers_unavailable_reason
from tests.model.test_encoders import VITS, random_official_state_dict
from tests.tolerances import assert_close

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "vits.pth"
    torch.save(random_official_state_dict(VITS), path)
    return path


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_sdpa_on_cuda_matches_math_oracle(weights, dtype):
    x = torch.randn(2, 3, 64, 96, device="cuda")
    oracle = build_encoder(VITS, weights=weights, attention="math").cuda()
    enc = build_encoder(VITS, weights=weights).to("cuda", dtype)
    kind = "fwd"
    if dtype == torch.float32:  # TF32 matmuls are off by default in PyTorch; SDPA's flash/efficient kernels differ
        torch.testing.assert_close(enc.features(x), oracle.features(x), atol=2e-4, rtol=2e-4)
    else:
        assert_close(enc.features(x), oracle.features(x), dtype, kind)


def test_xformers_matches_sdpa(weights):
    reason = xformers_unavailable_reason()
    if reason:
        pytest.skip(reason)
    x = torch.randn(2, 3, 64, 64, device="cuda", dtype=torch.bfloat16)
    xf = build_encoder(VITS, weights=weights, attention="xformers").to("cuda", torch.bfloat16)
    sd = build_encoder(VITS, weights=weights).to("cuda", torch.bfloat16)
    assert_close(xf.features(x), sd.features(x), torch.bfloat16)


def test_cuda_graph_replay_equals_eager(weights):
    enc = build_encoder(VITS, weights=weights).to("cuda", torch.bfloat16)
    x = torch.randn(4, 3, 64, 64, device="cuda", dtype=torch.bfloat16)
    runner = CUDAGraphRunner(enc.features, x)
    for _ in range(2):
        y = torch.randn_like(x)
        torch.testing.assert_close(runner(y), enc.features(y), atol=0, rtol=0)


def test_compile_equals_eager(weights):
    enc = build_encoder(VITS, weights=weights).cuda()
    enc.check_finite = False
    x = torch.randn(2, 3, 64, 64, device="cuda")
    eager = enc(x).clone()
    torch.testing.assert_close(enc.compile()(x), eager, atol=1e-4, rtol=1e-4)
