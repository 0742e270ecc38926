"""GPU checks of the temporal cores (cuda marker): kernels vs references, bf16, CUDA-graph and compiled steps.

Small shapes for the invariants, plus one ViT-L-sized case (N = 201, D = 1024) per Mamba core for the step path.
"""

from __future__ import annotations

import pytest
import torch

from coldstream.model.cores import build_core
from tests.tolerances import assert_close, tol

pytestmark = pytest.mark.cuda
KINDS = ["identity", "rvmrnn", "mamba", "mambamix", "gmmix"]
DEV = "cuda"


def make(kind, dim=64, backend="auto"):
    torch.manual_seed(0)
    core = build_core(kind, dim, **({"num_heads": 4} if kind == "rvmrnn" and dim == 64 else {}))
    return core.to(DEV).eval().set_kernel_backend(backend)


def steps(core, x, state=None):
    state = core.init_state(x.shape[0], x.shape[2], device=x.device) if state is None else state
    return torch.stack([core.step(x[:, t], state)[0] for t in range(x.shape[1])], 1), state


@pytest.mark.parametrize("kind", KINDS)
def test_cuda_kernels_match_reference_and_steps_match_clip(kind):
    x = torch.randn(2, 8, 9, 64, device=DEV)
    fast, ref = make(kind), make(kind, backend="reference")
    with torch.no_grad():
        y_ref = ref(x)
        y = fast(x)
        ys, _ = steps(fast, x)
    assert_close(y, y_ref, torch.float32, kind="bwd")  # another summation order than the fp32 reference
    assert_close(ys, y, torch.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_cuda_bf16_autocast_state_stays_fp32(kind):
    core, x = make(kind), torch.randn(2, 8, 9, 64, device=DEV)
    with torch.no_grad():
        ref = core(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = core(x)
            ys, state = steps(core, x)
    assert all(t.dtype == torch.float32 for t in state.tensors.values())
    for out in (y, ys):
        err = (out.float() - ref).norm() / ref.norm()
        assert err < 4 * tol(torch.bfloat16)["rtol"], f"{kind}: {err:.3g}"


@pytest.mark.parametrize("kind", KINDS)
def test_cuda_graph_step_replay_equals_eager(kind):
    core, x = make(kind), torch.randn(2, 6, 9, 64, device=DEV)
    with torch.no_grad():
        eager, _ = steps(core, x)
        state = core.init_state(2, 9, device=DEV)
        static_x = x[:, 0].clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                core.step(static_x, state)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y, _ = core.step(static_x, state)
        state.reset_()
        replayed = []
        for t in range(x.shape[1]):
            static_x.copy_(x[:, t])
            graph.replay()
            replayed.append(static_y.clone())
    assert_close(torch.stack(replayed, 1), eager, torch.float32)


@pytest.mark.parametrize("kind", ["rvmrnn", "gmmix"])
def test_compiled_step_equals_eager(kind):
    core, x = make(kind), torch.randn(2, 4, 9, 64, device=DEV)
    with torch.no_grad():
        eager, _ = steps(core, x)
        compiled = torch.compile(core.step)
        state = core.init_state(2, 9, device=DEV)
        ys = torch.stack([compiled(x[:, t], state)[0] for t in range(x.shape[1])], 1)
    assert_close(ys, eager, torch.float32, kind="bwd")  # compiled kernels may re-associate sums


@pytest.mark.parametrize("kind", ["mamba", "gmmix"])
def test_vit_l_width_steps_match_clip(kind):
    core, x = make(kind, dim=1024), torch.randn(1, 4, 201, 1024, device=DEV)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        y = core(x)
        ys, state = steps(core, x)
    assert state.nbytes() == 4 * 201 * 2048 * (3 + 16) * 4  # 4 layers x N x E x (conv 3 + ssm 16) fp32
    assert_close(ys, y, torch.bfloat16)
