"""Backend choice shared by every op: ``"triton" | "reference" | "auto"``.

``auto`` picks Triton for CUDA tensors and the fp32 PyTorch reference otherwise, and logs the choice once per op.
An explicit backend never falls back: if it cannot run the inputs, the error says why, for every backend.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

import torch

from ..errors import BackendError, InputError

Backend = Literal["auto", "triton", "reference"]
BACKENDS = ("triton", "reference")

log = logging.getLogger("coldstream.kernels")
_logged: set[tuple[str, str, str]] = set()


def _probe_triton() -> str | None:
    try:
        import triton  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the environment
        return f"triton is not importable ({exc}); install it with `pip install triton`"
    return None


_TRITON_REASON = _probe_triton()  # probed once: nothing below imports or reads files while torch.compile traces


def triton_available() -> str | None:
    """``None`` if Triton imports, else the reason it does not."""
    return _TRITON_REASON


_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"  # Triton reads it when the kernels are defined


def interpreting() -> bool:
    """Whether TRITON_INTERPRET=1 was set when coldstream.kernels was imported (setting it later has no effect)."""
    return _INTERPRETING


def _triton_reason(tensors: list[torch.Tensor]) -> str | None:
    reason = triton_available()
    if reason is not None:
        return reason
    devices = {t.device.type for t in tensors}
    if devices == {"cuda"}:
        return None
    if devices == {"cpu"} and interpreting():
        return None
    if devices == {"cpu"}:
        return "inputs are on the CPU and TRITON_INTERPRET=1 was not set before coldstream.kernels was imported"
    return f"inputs must all be CUDA tensors (got devices {sorted(devices)})"


def resolve_backend(op: str, backend: str, tensors: list[torch.Tensor | None]) -> str:
    """Return ``"triton"`` or ``"reference"`` for ``op`` on these tensors, or raise ``RuntimeError`` saying why not."""
    present = [t for t in tensors if t is not None]
    if backend not in ("auto", *BACKENDS):
        raise InputError(f"{op}: backend must be one of 'auto', 'triton', 'reference' (got {backend!r})")
    if backend == "reference":
        return "reference"
    reason = _triton_reason(present)
    if backend == "triton":
        if reason is not None:
            raise BackendError(
                f"{op}: backend='triton' cannot run these inputs: triton: {reason}; "
                "reference: available (pass backend='reference' or 'auto' to use it)"
            )
        return "triton"
    choice = "triton" if reason is None and present and present[0].is_cuda else "reference"
    if torch.compiler.is_compiling():  # logging would break the graph; the eager call logs
        return choice
    key = (op, choice, present[0].device.type if present else "none")
    if key not in _logged:
        _logged.add(key)
        why = "CUDA tensors" if choice == "triton" else (reason or "non-CUDA tensors")
        log.info("coldstream.kernels.%s: backend='auto' uses %s (%s)", op, choice, why)
    return choice


def backends() -> dict[str, str | None]:
    """Each backend mapped to ``None`` if it can run on this machine, else the reason it cannot (for an info CLI)."""
    reason = triton_available()
    if reason is None and not torch.cuda.is_available() and not interpreting():
        reason = "no CUDA device (on CPU, Triton runs only through its interpreter: TRITON_INTERPRET=1)"
    return {"triton": reason, "reference": None}
