"""Progress bars for long work (tqdm when installed and enabled, otherwise a silent stand-in)."""

from __future__ import annotations

import os
import sys


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True):
    """A tqdm bar on stderr, or a no-op object when disabled (``COLDSTREAM_NO_PROGRESS=1`` disables all bars)."""
    if not enabled or os.environ.get("COLDSTREAM_NO_PROGRESS", "0") == "1":
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)
