"""Helpers shared by the kernel tests: run a function, backpropagate fixed random weights, collect gradients."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest
import torch

from tests.tolerances import tol


def leaves(tensors: Sequence[torch.Tensor | None], dtype: torch.dtype | None = None) -> list[torch.Tensor | None]:
    """Detached copies (optionally cast; floating ones require grad)."""
    out = []
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        c = t.detach().clone()
        if dtype is not None and c.is_floating_point():
            c = c.to(dtype)
        if c.is_floating_point():
            c.requires_grad_(True)
        out.append(c)
    return out


def forward_backward(
    fn: Callable[..., Sequence[torch.Tensor]], inputs: Sequence[torch.Tensor | None], seed: int = 123
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """Run ``fn(*inputs)`` (a tuple of outputs), backpropagate ``sum(out * w)`` with seeded weights ``w``."""
    outs = [o for o in fn(*inputs) if o is not None]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    loss = sum((o.float() * torch.randn(o.shape, generator=gen).to(o.device)).sum() for o in outs)
    loss.backward()
    grads = [None if t is None or not t.requires_grad else t.grad for t in inputs]
    return [o.detach() for o in outs], grads


def assert_all_close(actual, expected, dtype: torch.dtype, kind: str, names: Sequence[str] | None = None) -> None:
    """Compare lists of tensors (None entries must match), in fp32, with the tolerance for ``dtype``."""
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        name = names[i] if names else str(i)
        assert (a is None) == (e is None), f"{name}: one side is None"
        if a is None:
            continue
        assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != {tuple(e.shape)}"
        # gradients of reductions (dA, dD, ...) sum many terms: scale atol with their magnitude
        scale = max(1.0, e.float().abs().max().item()) if kind == "bwd" and e.numel() else 1.0
        t = tol(dtype, kind)
        torch.testing.assert_close(
            a.float(),
            e.float(),
            atol=t["atol"] * scale,
            rtol=t["rtol"],
            msg=lambda m, n=name: f"{n} ({kind}, {dtype}): {m}",
        )


SM90_PRELUDE = r"""
import re
import subprocess
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import CUDABackend
from triton.compiler import ASTSource
from triton.runtime.jit import MockTensor, native_specialize_impl


def compile_sm90(fn, signature, constexprs, num_warps, attrs=None, **options):
    src = ASTSource(fn=fn, signature=signature, attrs=attrs,
                    constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items()})
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, **options})
    assert "cubin" in kernel.asm, "no cubin"
    return kernel


def jit_compile_sm90(fn, args, num_warps, **options):
    # fn compiled as fn[grid](**args) would compile it on a GPU. Constexpr parameters take their value. Every other
    # argument goes through Triton's own launch-time specialisation (native_specialize_impl, with the parameter's
    # do_not_specialize / do_not_specialize_on_alignment flags): an int equal to 1 or None becomes a constexpr, an
    # int divisible by 16 gets tt.divisibility=16. A pointer is given as its torch dtype and taken to be 16-byte
    # aligned, as a fresh torch allocation is (MockTensor's address is 0), so it gets tt.divisibility=16 too.
    signature, constexprs, attrs = {}, {}, {}
    for i, p in enumerate(fn.params):
        value = args[p.name]
        if p.is_constexpr:
            signature[p.name], constexprs[p.name] = "constexpr", value
            continue
        value = MockTensor.wrap_dtype(value)
        ty, key = native_specialize_impl(CUDABackend, value, p.is_const, not p.do_not_specialize,
                                         not p.do_not_specialize_on_alignment)
        signature[p.name] = ty
        if ty == "constexpr":
            constexprs[p.name] = value
        elif key:
            attrs[(i,)] = CUDABackend.parse_attr(key)
    return compile_sm90(fn, signature, constexprs, num_warps, attrs=attrs, **options)


def ptxas_spills(kernel):
    with open("k.ptx", "w") as f:
        f.write(kernel.asm["ptx"])
    out = subprocess.run([triton.knobs.nvidia.ptxas.path, "-v", "--gpu-name=sm_90a", "k.ptx", "-o", "k.o"],
                         capture_output=True, text=True, check=True).stderr
    return " ".join(line.strip() for line in out.splitlines() if "spill" in line)


def ptxas_registers(kernel):
    with open("k.ptx", "w") as f:
        f.write(kernel.asm["ptx"])
    out = subprocess.run([triton.knobs.nvidia.ptxas.path, "-v", "--gpu-name=sm_90a", "k.ptx", "-o", "k.o"],
                         capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Used (\d+) registers", out).group(1))


def sass(kernel):
    with open("k.cubin", "wb") as f:
        f.write(kernel.asm["cubin"])
    return subprocess.run([triton.knobs.nvidia.cuobjdump.path, "-sass", "k.cubin"],
                          capture_output=True, text=True, check=True).stdout


def sass_atomics(kernel):  # global or shared atomics (ATOM, ATOMG, ATOMS, RED, REDG) in the kernel's SASS
    with open("k.cubin", "wb") as f:
        f.write(kernel.asm["cubin"])
    sass = subprocess.run([triton.knobs.nvidia.cuobjdump.path, "-sass", "k.cubin"],
                          capture_output=True, text=True, check=True).stdout
    return len(re.findall(r"\b(?:ATOM[GS]?|REDG?)\.", sass))
"""


def run_sm90(script: str, cwd) -> str:
    """Run ``SM90_PRELUDE + script`` (compiles for an H100 without a GPU) and return what it prints.

    A subprocess with ``TRITON_INTERPRET=0``, since this test process defined the kernels for the interpreter. It
    runs in ``cwd`` with the directory of the ``coldstream`` this process imported first on its path, so that it
    compiles the same source (a relative ``PYTHONPATH`` would otherwise resolve elsewhere, or to an installed copy)."""
    pytest.importorskip("triton.backends.nvidia")
    import coldstream

    src = os.path.dirname(os.path.dirname(os.path.abspath(coldstream.__file__)))
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TRITON_INTERPRET="0", PYTHONPATH=path)
    run = subprocess.run(
        [sys.executable, "-c", SM90_PRELUDE + script], env=env, capture_output=True, text=True, timeout=300, cwd=cwd
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout
