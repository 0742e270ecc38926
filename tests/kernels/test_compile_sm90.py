"""Compile the selective-scan kernels for an H100 (sm_90) without a GPU: catches Triton compile errors before a GPU
run, and guards what the defaults were chosen for: the forward's time loop stays inside each thread (no warp
shuffles in the PTX), and the backward at its launch configuration spills nothing.

Runs in a subprocess with ``TRITON_INTERPRET=0``, since this test process defined the kernels for the interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from coldstream.kernels.selective_scan import ops
from coldstream.kernels.selective_scan.chunk import selective_scan_fwd_seq_kernel as fn

bf, f32 = "*bf16", "*fp32"
types = dict(u_ptr=bf, delta_ptr=bf, AT_ptr=f32, BC_ptr="*i64", D_ptr=f32, z_ptr=bf, bias_ptr=f32, out_ptr=bf,
             hlast_ptr=f32, ckpt_ptr=f32, y_ptr=bf)
consts = dict(N=16, BLOCK_D=ops.FWD_BLOCK_D, K=ops.CHUNK, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True,
              HAS_H0=False, HAS_RESETS=False, VARLEN=False, STORE_CKPT=False, STORE_Y=True, h0T_ptr=None,
              resets_ptr=None, cu_ptr=None)
signature = {n: "constexpr" if n in consts else types.get(n, "i32") for n in fn.arg_names}
src = ASTSource(fn=fn, signature=signature, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": ops.FWD_NUM_WARPS})
assert "cubin" in kernel.asm, "no cubin"
print("shuffles", kernel.asm["ptx"].count("shfl.sync"))
"""


@pytest.mark.slow
def test_selective_scan_forward_compiles_for_sm90_without_shuffles():
    pytest.importorskip("triton.backends.nvidia")
    env = dict(os.environ, TRITON_INTERPRET="0")
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "shuffles 0" in run.stdout, run.stdout


BWD_SCRIPT = r"""
import subprocess
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from coldstream.kernels.selective_scan import ops
from coldstream.kernels.selective_scan.chunk import selective_scan_bwd_kernel as fn

bf = ("u_ptr", "delta_ptr", "B_ptr", "C_ptr", "z_ptr", "y_ptr", "dout_ptr", "du_ptr", "ddelta_ptr", "dz_ptr")
consts = dict(N=16, BLOCK_D=ops.BLOCK_D, K=ops.CHUNK, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True,
              HAS_H0=True, HAS_RESETS=False, VARLEN=False, HAS_CKPT=True, HAS_DLAST=True, HAS_Y=True,
              resets_ptr=None, cu_ptr=None)
sig = {n: "constexpr" if n in consts else ("*bf16" if n in bf else "*fp32") if n.endswith("_ptr") else "i32"
       for n in fn.arg_names}
src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
options = {"num_warps": ops.NUM_WARPS, **({} if ops.BWD_MAXNREG is None else {"maxnreg": ops.BWD_MAXNREG})}
kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
with open("k.ptx", "w") as f:
    f.write(kernel.asm["ptx"])
ptxas = subprocess.run([triton.knobs.nvidia.ptxas.path, "-v", "--gpu-name=sm_90a", "k.ptx", "-o", "k.o"],
                       capture_output=True, text=True, check=True).stderr
print(" ".join(line.strip() for line in ptxas.splitlines() if "spill" in line or "registers" in line))
"""


@pytest.mark.slow
def test_selective_scan_backward_compiles_for_sm90_without_spills(tmp_path):
    pytest.importorskip("triton.backends.nvidia")
    env = dict(os.environ, TRITON_INTERPRET="0")
    run = subprocess.run([sys.executable, "-c", BWD_SCRIPT], env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "0 bytes spill stores, 0 bytes spill loads" in run.stdout, run.stdout
