"""Compile the selective-scan kernels for an H100 (sm_90) without a GPU: catches Triton compile errors before a GPU
run, and guards what the defaults were chosen for: the forward's time loop stays inside each thread (no warp
shuffles or barriers) and streams u, delta, z, y, out as 16-byte vectors, and the backward at its launch
configuration has no atomics (PTX and SASS) and spills nothing. The selective-scan kernels are compiled with the
arguments ops.py passes at the bench shapes and the specialisation Triton's JIT gives them (``jit_compile_sm90`` in
tests/kernels/_util.py)."""

from __future__ import annotations

import pytest

from tests.kernels._util import run_sm90

FWD_SCRIPT = r"""
import sys
import torch
from coldstream.kernels.selective_scan import ops
from coldstream.kernels.selective_scan.chunk import selective_scan_fwd_kernel as fn

# "bench": bench/test_kernels.py's main shape (1608 sequences = 8 clips x 201 tokens, T = 16: the sequential forward,
# a backward to follow, no last state); "pass1" / "pass2": the chunked forward's passes at its long-sequence shape
# (4 x 4096: 64 programs, so chunks of ops.FWD_CHUNK_T steps) with an initial state, a backward to follow (the
# carried states are its checkpoints). E = 2048, d_state 16, bf16 u, delta, z, with D and delta_bias; the arguments
# ops.selective_scan_fwd passes.
variant = sys.argv[1]
batch, T = (1608, 16) if variant == "bench" else (4, 4096)
dim, n = 2048, 16
bf, f32 = torch.bfloat16, torch.float32
every = ops._chunk_len(T)
n_ckpt = max(triton.cdiv(T, every) - 1, 0)
bd = ops._block_d(dim, 1, ops.FWD_BLOCK_D)
chunk = ops._fwd_chunk_len(batch * triton.cdiv(dim, bd), T, every)
assert (chunk is None) == (variant == "bench"), chunk
end_state = variant == "pass1"
args = dict(u_ptr=bf, delta_ptr=bf, A2T_ptr=f32, BC_ptr=torch.int64, D_ptr=f32, z_ptr=bf, bias_ptr=f32,
            h0T_ptr=None if chunk is None else f32, resets_ptr=None, cu_ptr=None, hc_ptr=f32, out_ptr=bf,
            hlast_ptr=f32, ckpt_ptr=f32, y_ptr=bf, end_ptr=f32 if end_state else None,
            decay_ptr=f32 if end_state else None, T=T, DIM=dim, G=1, n_ckpt=n_ckpt, n_hc=n_ckpt,
            hc_every=(chunk or every) // every, chunk_len=chunk or T, n_chunks=triton.cdiv(T, chunk or T),
            stride_s_d=n, stride_s_n=1, stride_at_n=dim, stride_bc_n=1, N=n, BLOCK_D=bd,
            K=ops._fwd_tile(torch.empty(0, dtype=bf), every), CKPT_EVERY=every, HAS_D=True, HAS_Z=True,
            HAS_BIAS=True, SOFTPLUS=True, HAS_H0=chunk is not None, HAS_RESETS=False, VARLEN=False,
            CHUNKED=chunk is not None, END_STATE=end_state, STORE_LAST=False, STORE_CKPT=n_ckpt > 0 and not end_state,
            STORE_Y=not end_state)
kernel = jit_compile_sm90(fn, args, ops.FWD_NUM_WARPS)
ptx = kernel.asm["ptx"]
code = sass(kernel)
print("shuffles", ptx.count("shfl.sync") + len(re.findall(r"\bSHFL\.", code)))
print("barriers", ptx.count("bar.sync") + len(re.findall(r"\bBAR\.", code)))
print("atomics", len(re.findall(r"^\s*(?:@!?%p\d+\s+)?(?:atom|red)\.", ptx, re.M)) + sass_atomics(kernel))
print("v4 loads", ptx.count("ld.global.v4.b32"), len(re.findall(r"\bLDG\.E\.128\b", code)))
print("v4 stores", ptx.count("st.global.v4.b32"), len(re.findall(r"\bSTG\.E\.128\b", code)))
print("registers", ptxas_registers(kernel))
print(ptxas_spills(kernel))
"""

CARRY_SCRIPT = r"""
import torch
from coldstream.kernels.selective_scan import ops
from coldstream.kernels.selective_scan.chunk import selective_scan_fwd_carry_kernel as fn

# the chunked forward's carry pass at 4 x 4096 (16 chunks), initial and last states, carried states into ckpt
args = dict(end_ptr=torch.float32, decay_ptr=torch.float32, h0_ptr=torch.float32, cu_ptr=None, hc_ptr=torch.float32,
            hlast_ptr=torch.float32, T=4096, DIM=2048, n_chunks=16, n_hc=255, hc_every=16, chunk_len=256, N=16,
            BLOCK=ops.FWD_CARRY_BLOCK, HAS_H0=True, VARLEN=False, STORE_LAST=True)
kernel = jit_compile_sm90(fn, args, 4)
print("atomics", sass_atomics(kernel))
print(ptxas_spills(kernel))
"""

# Registers per thread measured with Triton 3.7.1 / ptxas for sm_90a: a ceiling, so a change that costs registers
# (fewer programs per SM) is seen; lower it when a change saves some.
FWD_REGISTERS = {"bench": 128, "pass1": 128, "pass2": 168}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["bench", "pass1", "pass2"])
def test_selective_scan_forward_compiles_for_sm90_coalesced_without_shuffles_or_spills(tmp_path, variant):
    # one thread per channel: the recurrence and the readout stay in registers (no shuffles, no barriers in the
    # time loop or anywhere else); u, delta (and z, y, out outside pass 1) move as 16-byte vectors of 8 bf16 steps
    out = run_sm90(FWD_SCRIPT.replace("sys.argv[1]", repr(variant)), tmp_path)
    lines = set(out.splitlines())
    assert {"shuffles 0", "barriers 0", "atomics 0"} <= lines, out
    streams = 2 if variant == "pass1" else 3  # u, delta (z)
    assert f"v4 loads {streams} {streams}" in lines, out
    assert f"v4 stores {0 if variant == 'pass1' else 2} {0 if variant == 'pass1' else 2}" in lines, out
    assert "0 bytes spill stores, 0 bytes spill loads" in out, out
    registers = int(next(line for line in lines if line.startswith("registers")).split()[1])
    assert registers <= FWD_REGISTERS[variant], out


@pytest.mark.slow
def test_selective_scan_forward_carry_compiles_for_sm90(tmp_path):
    out = run_sm90(CARRY_SCRIPT, tmp_path)
    assert "atomics 0" in out, out
    assert "0 bytes spill stores, 0 bytes spill loads" in out, out


BWD_SCRIPT = r"""
import sys
import torch
from coldstream.kernels.selective_scan import ops
from coldstream.kernels.selective_scan.chunk import selective_scan_bwd_kernel as fn

# "bench": bench/test_kernels.py's main shape (1608 sequences, T = 16: one chunk, no checkpoint; no initial or last
# state); "long": its long-sequence shape (4 x 4096) with an initial state and a last state's gradient; "varlen": 64
# packed sequences of up to 300 steps with initial states; "resets": the long shape with resets. E = 2048, d_state
# 16, bf16 activations, z, D and delta_bias throughout; the arguments ops.selective_scan_bwd passes.
variant = sys.argv[1]
batch, T, longest = dict(bench=(1608, 16, 16), long=(4, 4096, 4096), varlen=(1, 64 * 300, 300),
                         resets=(4, 4096, 4096))[variant]
dim, n = 2048, 16
n_seq = 64 if variant == "varlen" else batch
states = variant != "bench"
bf, f32 = torch.bfloat16, torch.float32
K = ops._chunk_len(longest)
n_ckpt = max(triton.cdiv(longest, K) - 1, 0)
bd = ops._block_d(dim, 1, ops.BLOCK_D)
group_blocks = triton.cdiv(dim, bd)
rows, blocks = ops._bwd_split(n_seq, 1, group_blocks)
args = dict(u_ptr=bf, delta_ptr=bf, A_ptr=f32, B_ptr=bf, C_ptr=bf, D_ptr=f32, z_ptr=bf, bias_ptr=f32,
            h0_ptr=f32 if states else None, resets_ptr=torch.int8 if variant == "resets" else None,
            cu_ptr=torch.int32 if variant == "varlen" else None, ckpt_ptr=f32, y_ptr=bf, dout_ptr=bf,
            dlast_ptr=f32 if states else None, du_ptr=bf, ddelta_ptr=bf, dA_ptr=f32, dB_ptr=f32, dC_ptr=f32,
            dD_ptr=f32, dz_ptr=bf, dbias_ptr=f32, dh0_ptr=f32 if states else bf, T=T, DIM=dim, G=1, n_ckpt=n_ckpt,
            S=n_seq, ROWS_PER_PROGRAM=rows, BLOCKS_PER_PROGRAM=blocks, GROUP_BLOCKS=group_blocks,
            SPLITS=triton.cdiv(group_blocks, blocks), split_stride=batch * n * T, N=n, BLOCK_D=bd, K=K, HAS_D=True,
            HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_H0=states, HAS_RESETS=variant == "resets",
            VARLEN=variant == "varlen", HAS_CKPT=n_ckpt > 0, HAS_DLAST=states, HAS_Y=True)
cap = {} if ops.BWD_MAXNREG is None else {"maxnreg": ops.BWD_MAXNREG}
kernel = jit_compile_sm90(fn, args, ops.NUM_WARPS, **cap)
print("ptx atomics", len(re.findall(r"^\s*(?:@!?%p\d+\s+)?(?:atom|red)\.", kernel.asm["ptx"], re.M)))
print("sass atomics", sass_atomics(kernel))
print(ptxas_spills(kernel))
code = sass(kernel)
print("registers", ptxas_registers(kernel))
# state updates per thread in one chunk: K steps of a [BLOCK_D, N] tile spread over the program's threads
print("updates", K * bd * n // (32 * ops.NUM_WARPS))
print("exp2", len(re.findall(r"\bMUFU\.EX2\b", code)))
print("barriers", len(re.findall(r"\bBAR\.", code)))
"""

# Registers per thread and barriers (BAR in SASS, all of them: the body runs once per chunk) measured with Triton
# 3.7.1 / ptxas for sm_90a: ceilings, so a change that costs registers or barriers is seen; lower them when a change
# saves some. The version before the step-by-step adjoint held 219 / 236 / 214 / 249 registers and 27 barriers.
BWD_REGISTERS = {"bench": 222, "long": 224, "varlen": 239, "resets": 220}
BWD_BARRIERS = 24


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["bench", "long", "varlen", "resets"])
def test_selective_scan_backward_compiles_for_sm90_without_atomics_or_spills(tmp_path, variant):
    # dA, dB, dC, dD, d(delta_bias) are per-program partials summed in a fixed order: deterministic gradients
    out = run_sm90(BWD_SCRIPT.replace("sys.argv[1]", repr(variant)), tmp_path)
    assert {"ptx atomics 0", "sass atomics 0"} <= set(out.splitlines()), out
    assert "0 bytes spill stores, 0 bytes spill loads" in out, out
    got = dict(
        line.rsplit(" ", 1)
        for line in out.splitlines()
        if line.split(" ")[0] in {"registers", "updates", "exp2", "barriers"}
    )
    got = {k: int(v) for k, v in got.items()}
    assert got["registers"] <= BWD_REGISTERS[variant], out
    # one exponential per state update: the adjoint reuses the recompute's decays (the version that computed them
    # again held 2 per update); the few others are the per-(d, t) softplus and sigmoids, once per tile element
    assert got["exp2"] <= got["updates"] + 4, out
    assert got["barriers"] <= BWD_BARRIERS, out


CONV_SCRIPT = r"""
import sys
import torch
from coldstream.kernels.causal_conv1d import ops
from coldstream.kernels.causal_conv1d.fused import causal_conv1d_bwd_kernel, causal_conv1d_fwd_kernel

# "main": bench/test_kernels.py's main shape (x [1608, 2048, 16] bf16, W = 4, bias, SiLU, no state or resets; the
# backward gets a final-state gradient, zeros that autograd materialises); "states": the same with W = 8, an initial
# state and resets. The arguments ops.causal_conv1d_fwd / _bwd pass.
kind, variant = sys.argv[1], sys.argv[2]
batch, dim, T = 1608, 2048, 16
width, states = (4, False) if variant == "main" else (8, True)
bf, f32 = torch.bfloat16, torch.float32
vec = 16 // bf.itemsize
common = dict(x_ptr=bf, w_ptr=f32, bias_ptr=f32, init_ptr=bf if states else None,
              lo_ptr=torch.int32 if states else None, T=T, DIM=dim, W=width, VEC=vec, HAS_BIAS=True,
              HAS_INIT=states, HAS_LO=states, SILU=True)
if kind == "fwd":
    fn = causal_conv1d_fwd_kernel
    bd, bt, warps = ops._blocks(dim, T, vec, ops.BLOCK_D, ops.BLOCK_T)
    args = dict(common, out_ptr=bf, BLOCK_D=bd, BLOCK_T=bt)
else:
    fn = causal_conv1d_bwd_kernel
    bd, bt, warps = ops._blocks(dim, T, vec, ops.BWD_BLOCK_D, ops.BWD_BLOCK_T)
    rows = max(1, min(ops.MAX_ROWS, batch * triton.cdiv(dim, bd) // ops.PROGRAMS_PER_ROW_GROUP))
    args = dict(common, dout_ptr=bf, dfinal_ptr=bf, dx_ptr=bf, dinit_ptr=bf, dw_ptr=f32,
                dbias_ptr=f32, ROWS=batch, ROWS_PER_PROGRAM=rows, BLOCK_D=bd, BLOCK_T=bt,
                LAG=vec * triton.cdiv(width - 1, vec), HAS_DFINAL=True)
kernel = jit_compile_sm90(fn, args, warps)
ptx = kernel.asm["ptx"]
print("ptx atomics", len(re.findall(r"^\s*(?:@!?%p\d+\s+)?(?:atom|red)\.", ptx, re.M)))
print("sass atomics", sass_atomics(kernel))
print("shared", ptx.count(".shared"))
# x (and dout) are the only tensors read as runs of steps: BLOCK_T / VEC 16-byte loads each
print("vector loads", len(re.findall(r"^\s*(?:@!?%p\d+\s+)?ld\.global(?:\.\w+)*\.v4\.b32", ptx, re.M)))
print("expected vector loads", (1 if kind == "fwd" else 2) * bt // vec)
print(ptxas_spills(kernel))
info = subprocess.run([triton.knobs.nvidia.ptxas.path, "-v", "--gpu-name=sm_90a", "k.ptx", "-o", "k.o"],
                      capture_output=True, text=True, check=True).stderr
print("registers", re.search(r"Used (\d+) registers", info).group(1))
"""

# ptxas registers per thread (sm_90a, Triton 3.7) measured on a CPU machine: one channel per thread, 128 threads
# per program. The main-shape forward holds its 16 steps in 32 registers; the backward (x, dout, gpre and dx's trailing
# columns) 79. The states variant carries the resets' window bounds per step. A ceiling: more registers fail.
CONV_REGISTERS = {("fwd", "main"): 32, ("bwd", "main"): 79, ("fwd", "states"): 40, ("bwd", "states"): 186}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["main", "states"])
@pytest.mark.parametrize("kind", ["fwd", "bwd"])
def test_causal_conv1d_compiles_for_sm90_with_vector_loads_no_atomics_or_spills(tmp_path, kind, variant):
    # one thread per channel: x and dout come in as 16-byte vectors, taps are register shifts (no shared memory);
    # dweight/dbias are per-program partials (no float atomics), so gradients are deterministic
    out = run_sm90(CONV_SCRIPT.replace("sys.argv[1], sys.argv[2]", f"{kind!r}, {variant!r}"), tmp_path)
    lines = out.splitlines()
    assert {"ptx atomics 0", "sass atomics 0", "shared 0"} <= set(lines), out
    loads = dict(line.rsplit(" ", 1) for line in lines if "vector loads" in line)
    assert loads["vector loads"] == loads["expected vector loads"], out
    assert "0 bytes spill stores, 0 bytes spill loads" in out, out
    registers = int(next(line for line in lines if line.startswith("registers")).split()[1])
    assert registers <= CONV_REGISTERS[kind, variant], out


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
