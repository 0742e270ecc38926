"""The one tolerance table: (dtype, pass) -> (atol, rtol), for comparing against an fp32 reference.

Low-precision results are always compared with the fp32 reference run on fp32 copies of the same inputs.
"""

import torch

TOLERANCES: dict[tuple[torch.dtype, str], tuple[float, float]] = {
    (torch.float64, "fwd"): (1e-10, 1e-10),
    (torch.float64, "bwd"): (1e-9, 1e-9),
    (torch.float32, "fwd"): (1e-5, 1e-5),
    (torch.float32, "bwd"): (1e-4, 1e-4),
    (torch.bfloat16, "fwd"): (2e-2, 2e-2),
    (torch.bfloat16, "bwd"): (5e-2, 5e-2),
    (torch.float16, "fwd"): (3e-3, 3e-3),
    (torch.float16, "bwd"): (1e-2, 1e-2),
}


def tol(dtype: torch.dtype, kind: str = "fwd") -> dict[str, float]:
    """Keyword arguments for ``torch.testing.assert_close``."""
    atol, rtol = TOLERANCES[(dtype, kind)]
    return {"atol": atol, "rtol": rtol}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, kind: str = "fwd", msg=None):
    torch.testing.assert_close(actual.float(), expected.float(), **tol(dtype, kind), msg=msg)
