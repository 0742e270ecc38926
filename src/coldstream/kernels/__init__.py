"""Fused recurrent kernels (Triton) with fp32 PyTorch references. No dependency on the rest of coldstream.

Every op takes ``backend="auto" | "triton" | "reference"``: ``auto`` runs Triton on CUDA tensors and the fp32
PyTorch reference otherwise; an explicit backend that cannot run the inputs raises and says why.
"""

from .causal_conv1d import CausalConv1dOutput, causal_conv1d, causal_conv1d_update
from .gated_blend import gated_blend
from .gated_linear_scan import ScanOutput, gated_linear_scan
from .selective_scan import SelectiveScanOutput, selective_scan, selective_state_update

__all__ = [
    "CausalConv1dOutput",
    "ScanOutput",
    "SelectiveScanOutput",
    "causal_conv1d",
    "causal_conv1d_update",
    "gated_blend",
    "gated_linear_scan",
    "selective_scan",
    "selective_state_update",
]
