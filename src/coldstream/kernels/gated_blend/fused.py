"""Triton forward and backward of out = a + sigmoid(l) * (b - a), elementwise over flat contiguous tensors."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def gated_blend_fwd_kernel(a_ptr, b_ptr, l_ptr, out_ptr, numel, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    a = tl.load(a_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.sigmoid(tl.load(l_ptr + offs, mask=mask, other=0.0).to(tl.float32))
    tl.store(out_ptr + offs, (a + g * (b - a)).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def gated_blend_bwd_kernel(a_ptr, b_ptr, l_ptr, dout_ptr, da_ptr, db_ptr, dl_ptr, numel, BLOCK: tl.constexpr):
    # da = dout (1 - g); db = dout g; dl = dout (b - a) g (1 - g)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    a = tl.load(a_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.sigmoid(tl.load(l_ptr + offs, mask=mask, other=0.0).to(tl.float32))
    do = tl.load(dout_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    db = do * g
    tl.store(da_ptr + offs, (do - db).to(da_ptr.dtype.element_ty), mask=mask)
    tl.store(db_ptr + offs, db.to(db_ptr.dtype.element_ty), mask=mask)
    tl.store(dl_ptr + offs, (db * (1.0 - g) * (b - a)).to(dl_ptr.dtype.element_ty), mask=mask)
