"""Input formats of the dense tasks (box and point tracking, depth, camera pose): one annotation file next to each
video, named after the video without its extension (``clip01.mp4`` -> ``clip01.boxes.json``), validated on load.
The tasks that read them are in :mod:`coldstream.train.tasks.dense`.

All coordinates are normalised to [0, 1] in the *preprocessed* frame (short-side resize + centre crop);
``frame`` is the display-order index of the video frame (the same index the feature cache uses).

**Boxes** (box tracking), ``<video>.boxes.json``::

    {"tracks": [{"id": 0, "boxes": [[frame, cx, cy, w, h], ...]}, ...]}

one track per object (a clip is replicated once per track); ``w, h > 0``. Loaded as ``{track id: (frames [F] int64,
boxes [F, 4] float32 cxcywh)}``.

**Points** (point tracking), ``<video>.points.npz`` with arrays ``points`` float ``[Q, T, 2]`` (x, y),
``visible`` bool ``[Q, T]``, ``query_frame`` int ``[Q]`` (the point must be visible there), and ``frames`` int
``[T]`` (the video frame of each column).

**Depth**, ``<video>.depth.npz`` with ``depth`` float ``[T, H, W]`` in metres (0 = no measurement) and
``frames`` int ``[T]``; H, W are the preprocessed frame size.

**Camera poses**, ``<video>.poses.npz`` with ``poses`` float ``[T, 4, 4]`` camera-to-world (metres; last row
``0 0 0 1``; rotation orthonormal) and ``frames`` int ``[T]``. :func:`relative_pose_targets` turns them into the
readout's targets: frame t-1 -> t translation + 6-D rotation ``[T, 9]`` (frame 0 masked).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from coldstream.errors import DataError


class AnnotationError(DataError):
    """An annotation file that does not follow its documented format."""


def _need(cond: bool, path, msg: str) -> None:
    if not cond:
        raise AnnotationError(f"{path}: {msg}")


def _npz(path: str | os.PathLike, keys: list[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as z:
            missing = [k for k in keys if k not in z]
            _need(not missing, path, f"missing arrays {missing} (expected {keys})")
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise AnnotationError(f"{path}: not a readable .npz ({e})") from e


def _frames(arr: np.ndarray, t: int, path) -> torch.Tensor:
    _need(arr.shape == (t,), path, f"frames must be [T={t}], got {arr.shape}")
    _need(bool(np.all(np.diff(arr) > 0)) and arr.min() >= 0, path, "frames must be increasing non-negative indices")
    return torch.from_numpy(arr.astype(np.int64))


def load_boxes(path: str | os.PathLike) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Box tracks: ``{id: (frames [F], boxes [F, 4] cxcywh in [0, 1])}``."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AnnotationError(f"{path}: not readable JSON ({e})") from e
    _need(isinstance(doc, dict) and isinstance(doc.get("tracks"), list), path, 'expected {"tracks": [...]}')
    out = {}
    for tr in doc["tracks"]:
        arr = np.asarray(tr.get("boxes", []), dtype=np.float64)
        _need(arr.ndim == 2 and arr.shape[1] == 5 and len(arr) > 0, path, f"track {tr.get('id')}: boxes must be "
              f"[[frame, cx, cy, w, h], ...], got shape {arr.shape}")  # fmt: skip
        b = arr[:, 1:]
        _need(
            bool(np.all((b >= 0) & (b <= 1))), path, f"track {tr.get('id')}: coordinates must be normalised to [0, 1]"
        )
        _need(bool(np.all(b[:, 2:] > 0)), path, f"track {tr.get('id')}: widths and heights must be > 0")
        out[int(tr["id"])] = (_frames(arr[:, 0].astype(np.int64), len(arr), path), torch.from_numpy(b).float())
    return out


def load_points(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Point tracks: ``points [Q, T, 2]``, ``visible [Q, T]``, ``query_frame [Q]``, ``frames [T]``."""
    z = _npz(path, ["points", "visible", "query_frame", "frames"])
    p, v, q = z["points"], z["visible"].astype(bool), z["query_frame"].astype(np.int64)
    _need(p.ndim == 3 and p.shape[2] == 2, path, f"points must be [Q, T, 2], got {p.shape}")
    qn, t = p.shape[:2]
    _need(v.shape == (qn, t), path, f"visible must be [Q={qn}, T={t}], got {v.shape}")
    _need(q.shape == (qn,) and q.min() >= 0 and q.max() < t, path, f"query_frame must be [Q={qn}] in [0, {t})")
    _need(bool(v[np.arange(qn), q].all()), path, "every point must be visible at its query frame")
    _need(bool(np.all((p[v] >= 0) & (p[v] <= 1))), path, "visible points must be normalised to [0, 1]")
    return {"points": torch.from_numpy(p).float(), "visible": torch.from_numpy(v), "query_frame": torch.from_numpy(q),
            "frames": _frames(z["frames"], t, path)}  # fmt: skip


def load_depth(path: str | os.PathLike, size: int | None = None) -> dict[str, torch.Tensor]:
    """Depth maps: ``depth [T, H, W]`` metres (0 = invalid) and ``frames [T]``; ``size`` checks H = W = size."""
    z = _npz(path, ["depth", "frames"])
    d = z["depth"]
    _need(d.ndim == 3, path, f"depth must be [T, H, W], got {d.shape}")
    if size is not None:
        _need(
            d.shape[1:] == (size, size),
            path,
            f"depth maps are {d.shape[1]}x{d.shape[2]}, not {size}x{size} (the preprocessed frame)",
        )
    _need(bool(np.isfinite(d).all()) and d.min() >= 0, path, "depth must be finite and >= 0 (0 marks no measurement)")
    return {"depth": torch.from_numpy(d.astype(np.float32)), "frames": _frames(z["frames"], d.shape[0], path)}


def load_poses(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Camera-to-world poses ``[T, 4, 4]`` and ``frames [T]``."""
    z = _npz(path, ["poses", "frames"])
    m = z["poses"].astype(np.float64)
    _need(m.ndim == 3 and m.shape[1:] == (4, 4), path, f"poses must be [T, 4, 4], got {m.shape}")
    _need(np.allclose(m[:, 3], [0, 0, 0, 1], atol=1e-6), path, "the last row of every pose must be 0 0 0 1")
    r = m[:, :3, :3]
    _need(np.allclose(r @ r.transpose(0, 2, 1), np.eye(3), atol=1e-4), path, "rotations must be orthonormal")
    return {"poses": torch.from_numpy(m).float(), "frames": _frames(z["frames"], m.shape[0], path)}


def relative_pose_targets(poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-to-world ``[T, 4, 4]`` -> targets ``[T, 9]`` (t-1 -> t translation, 6-D rotation = the first two
    columns of the relative rotation) and a mask ``[T]`` that is False at frame 0 (no predecessor)."""
    rel = torch.linalg.inv(poses[:-1]) @ poses[1:]  # pose of frame t in the camera of frame t-1
    t9 = torch.cat([rel[:, :3, 3], rel[:, :3, 0], rel[:, :3, 1]], dim=-1)
    out = torch.cat([torch.zeros(1, 9, dtype=poses.dtype), t9])
    mask = torch.ones(poses.shape[0], dtype=torch.bool)
    mask[0] = False
    return out, mask
