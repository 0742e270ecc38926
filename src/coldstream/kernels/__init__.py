"""Fused recurrent kernels (Triton) with fp32 PyTorch references. No dependency on the rest of coldstream.

Every op takes ``backend="auto" | "triton" | "reference"``: ``auto`` runs Triton on CUDA tensors and the fp32
PyTorch reference otherwise; an explicit backend that cannot run the inputs raises and says why. Triton itself is
optional: without it the package imports and the reference backend runs.
"""

import logging as _logging

from ._backend import backends
from ._backend import triton_available as _triton_available

_torch_triton_log = _logging.getLogger("torch._library.triton")
_level = _torch_triton_log.level
if _triton_available() is not None:  # torch warns once per triton_op without Triton; resolve_backend says it once
    _torch_triton_log.setLevel(_logging.ERROR)
try:
    from .causal_conv1d import CausalConv1dOutput, causal_conv1d, causal_conv1d_update
    from .gated_blend import gated_blend
    from .gated_linear_scan import ScanOutput, gated_linear_scan
    from .selective_scan import SelectiveScanOutput, selective_scan, selective_state_update
finally:
    _torch_triton_log.setLevel(_level)

__all__ = [
    "CausalConv1dOutput",
    "backends",
    "ScanOutput",
    "SelectiveScanOutput",
    "causal_conv1d",
    "causal_conv1d_update",
    "gated_blend",
    "gated_linear_scan",
    "selective_scan",
    "selective_state_update",
]
