"""``coldstream info`` / ``python -m coldstream.info``: which backends can run here and, for each one that cannot,
why not and the exact command that installs it (in the spirit of ``python -m xformers.info``)."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable

from coldstream import optional


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

    def add(name: str, dependency: str, note: Callable[[str], str] | None = None) -> None:
        version = optional.version(dependency)
        if version is None:
            rows.append((name, "missing", optional.unavailable(dependency)))
        else:
            rows.append((name, version, note(version) if note else ""))

    add(
        "triton",
        "triton",
        lambda v: (
            "kernels run on CUDA tensors"
            if torch.cuda.is_available()
            else "no GPU: kernels run only through the interpreter (TRITON_INTERPRET=1); the reference backend is used"
        ),
    )
    from coldstream.model.layers.attention import xformers_unavailable_reason

    xf_version = optional.version("xformers")
    xf_reason = xformers_unavailable_reason()
    if xf_version is None:
        rows.append(("xformers", "missing", f"{xf_reason}"))
    else:
        rows.append(("xformers", xf_version, xf_reason or "memory-efficient attention (attention='xformers')"))
    add(
        "dali",
        "dali",
        lambda v: (
            "GPU (mixed) decoding available"
            if torch.cuda.is_available()
            else "CPU pipelines only (VP9, VP8, MJPEG); NVDEC needs a GPU"
        ),
    )
    add("pyav", "pyav")
    add("opencv", "opencv")
    add("torchcodec", "torchcodec")
    add("efficientnet_lite0", "efficientnet_weights", lambda v: "real ImageNet weights")
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
