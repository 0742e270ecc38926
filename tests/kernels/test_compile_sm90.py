"""Compile the selective-scan kernels for an H100 (sm_90) without a GPU: catches Triton compile errors before a GPU
run, and guards what the defaults were chosen for: the forward's time loop stays inside each thread (no warp
shuffles in the PTX), and the backward at its launch configuration has no atomics (PTX and SASS) and spills
nothing.
"""

from __future__ import annotations

import pytest

from tests.kernels._util import run_sm90

FWD_SCRIPT = r"""
from coldstream.kernels.selective_scan import ops
from coldstream.kernels.selective_scan.chunk import selective_scan_fwd_seq_kernel as fn

bf, f32 = "*bf16", "*fp32"
types = dict(u_ptr=bf, delta_ptr=bf, AT_ptr=f32, BC_ptr="*i64", D_ptr=f32, z_ptr=bf, bias_ptr=f32, out_ptr=bf,
             hlast_ptr=f32, ckpt_ptr=f32, y_ptr=bf)
consts = dict(N=16, BLOCK_D=ops.FWD_BLOCK_D, K=ops.CHUNK, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True,
              HAS_H0=False, HAS_RESETS=False, VARLEN=False, STORE_CKPT=False, STORE_Y=True, h0T_ptr=None,
              resets_ptr=None, cu_ptr=None)
signature = {n: "constexpr" if n in consts else types.get(n, "i32") for n in fn.arg_names}
kernel = compile_sm90(fn, signature, consts, ops.FWD_NUM_WARPS)
print("shuffles", kernel.asm["ptx"].count("shfl.sync"))
"""

BWD_SCRIPT = r"""
import sys
from coldstream.kernels.selective_scan import ops
from coldstream.kernels.selective_scan.chunk import selective_scan_bwd_kernel as fn

variant = sys.argv[1]
bf = ("u_ptr", "delta_ptr", "B_ptr", "C_ptr", "z_ptr", "y_ptr", "dout_ptr", "du_ptr", "ddelta_ptr", "dz_ptr")
consts = dict(N=16, BLOCK_D=ops.BLOCK_D, K=ops.CHUNK, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True,
              HAS_H0=True, HAS_RESETS=variant == "resets", VARLEN=variant == "varlen", HAS_CKPT=True,
              HAS_DLAST=True, HAS_Y=True)
if variant != "resets":
    consts["resets_ptr"] = None
if variant != "varlen":
    consts["cu_ptr"] = None
types = dict(resets_ptr="*i8", cu_ptr="*i32")
sig = {n: "constexpr" if n in consts else types.get(n, ("*bf16" if n in bf else "*fp32") if n.endswith("_ptr")
       else "i32") for n in fn.arg_names}
cap = {} if ops.BWD_MAXNREG is None else {"maxnreg": ops.BWD_MAXNREG}
kernel = compile_sm90(fn, sig, consts, ops.NUM_WARPS, **cap)
print("ptx atomics", len(re.findall(r"^\s*(?:@!?%p\d+\s+)?(?:atom|red)\.", kernel.asm["ptx"], re.M)))
print("sass atomics", sass_atomics(kernel))
print(ptxas_spills(kernel))
"""


@pytest.mark.slow
def test_selective_scan_forward_compiles_for_sm90_without_shuffles(tmp_path):
    out = run_sm90(FWD_SCRIPT, tmp_path)
    assert "shuffles 0" in out, out


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["dense", "varlen", "resets"])
def test_selective_scan_backward_compiles_for_sm90_without_atomics_or_spills(tmp_path, variant):
    # dA, dB, dC, dD, d(delta_bias) are per-program partials summed in a fixed order: deterministic gradients
    out = run_sm90(BWD_SCRIPT.replace("sys.argv[1]", repr(variant)), tmp_path)
    assert {"ptx atomics 0", "sass atomics 0"} <= set(out.splitlines()), out
    assert "0 bytes spill stores, 0 bytes spill loads" in out, out


CONV_BWD_SCRIPT = r"""
import re
import sys
import triton
from coldstream.kernels.causal_conv1d import ops
from coldstream.kernels.causal_conv1d.fused import causal_conv1d_bwd_kernel as fn

width = int(sys.argv[1])
bf = ("x_ptr", "init_ptr", "dout_ptr", "dfinal_ptr", "dx_ptr", "dinit_ptr")
consts = dict(W=width, W_P=triton.next_power_of_2(width), BLOCK_D=ops.BWD_BLOCK_D, BLOCK_T=ops.BWD_BLOCK_T,
              HAS_BIAS=True, HAS_INIT=True, HAS_LO=True, SILU=True, HAS_DFINAL=True)
sig = {n: "constexpr" if n in consts else ("*i32" if n == "lo_ptr" else "*bf16" if n in bf else "*fp32")
       if n.endswith("_ptr") else "i32" for n in fn.arg_names}
kernel = compile_sm90(fn, sig, consts, ops.NUM_WARPS)
ptx = kernel.asm["ptx"]
print("atomics", len(re.findall(r"^\s*(?:@!?%p\d+\s+)?(?:atom|red)\.", ptx, re.M)))
print(ptxas_spills(kernel))
"""


@pytest.mark.slow
@pytest.mark.parametrize("width", [4, 8])
def test_causal_conv1d_backward_compiles_for_sm90_without_atomics_or_spills(tmp_path, width):
    # dweight/dbias are stored as per-program partials: no float atomics, so gradients are deterministic
    out = run_sm90(CONV_BWD_SCRIPT.replace("int(sys.argv[1])", str(width)), tmp_path)
    assert "atomics 0" in out, out
    assert "0 bytes spill stores, 0 bytes spill loads" in out, out


STEP_SCRIPT = r"""
from coldstream.kernels.selective_scan import ops
from coldstream.kernels.selective_scan.step import selective_state_update_kernel as fn

types = dict(state_ptr="*bf16", x_ptr="*bf16", dt_ptr="*bf16", z_ptr="*bf16", out_ptr="*bf16", B_ptr="*bf16",
             C_ptr="*bf16", idx_ptr="*i32", seed_ptr="*i64")
consts = dict(N=16, BLOCK_D=ops.STEP_BLOCK_D, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_INDICES=True,
              STOCHASTIC=True)
sig = {n: "constexpr" if n in consts else types.get(n, "*fp32" if n.endswith("_ptr") else "i32") for n in fn.arg_names}
print(ptxas_spills(compile_sm90(fn, sig, consts, ops.STEP_NUM_WARPS)))
"""


@pytest.mark.slow
def test_streaming_step_with_slots_and_stochastic_rounding_compiles_for_sm90_without_spills(tmp_path):
    out = run_sm90(STEP_SCRIPT, tmp_path)
    assert "0 bytes spill stores, 0 bytes spill loads" in out, out
