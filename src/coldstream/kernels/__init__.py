"""Fused recurrent kernels (Triton) with fp32 PyTorch references. No dependency on the rest of coldstream."""
