"""Tiny stand-ins shared by the training tests (fast on 2 CPU cores)."""

from __future__ import annotations

import torch
from torch import nn


class TinyEncoder(nn.Module):
    """A frozen conv encoder with the ``features`` contract: ``[B, 3, S, S] -> [K, B, N, D]``."""

    name = "tiny"
    weights_id = "tiny-seed-0"

    def __init__(self, dim: int = 8, depths: int = 2, patch: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.convs = nn.ModuleList(nn.Conv2d(3 if k == 0 else dim, dim, 1) for k in range(depths))
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
            p.requires_grad_(False)
        self.patch = patch
        self.dim = dim
        self.num_depths = depths
        self.calls = 0

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += x.shape[0]
        x = nn.functional.avg_pool2d(x, self.patch)
        outs = []
        for conv in self.convs:
            x = torch.tanh(conv(x))
            outs.append(x.flatten(2).transpose(1, 2))  # [B, N, D]
        return torch.stack(outs)


DENSE_SUFFIX = {"box_tracking": ".boxes.json", "point_tracking": ".points.npz", "depth": ".depth.npz",
                "camera_pose": ".poses.npz"}  # fmt: skip


def write_annotation(path, task: str, frames: list[int], size: int = 32, seed: int = 0) -> None:
    """A valid annotation file of ``task`` for ``frames`` of a video: a box sliding right, three points (one hidden
    in the middle frames), depth maps of a tilted plane, a camera moving forward and turning slowly."""
    import json
    import math

    import numpy as np

    rng = np.random.default_rng(seed)
    t = len(frames)
    if task == "box_tracking":
        tracks = [{"id": k, "boxes": [[f, 0.3 + 0.03 * i + 0.1 * k, 0.5, 0.2, 0.25] for i, f in enumerate(frames)]}
                  for k in range(2)]  # fmt: skip
        path.write_text(json.dumps({"tracks": tracks}))
    elif task == "point_tracking":
        start = rng.uniform(0.2, 0.5, (3, 1, 2))
        points = start + np.linspace(0, 0.3, t)[None, :, None] * np.array([1.0, 0.5])
        visible = np.ones((3, t), dtype=bool)
        visible[2, t // 3 : 2 * t // 3] = False
        np.savez(path, points=points, visible=visible, query_frame=np.array([0, 1, 0]), frames=np.array(frames))
    elif task == "depth":
        ramp = np.linspace(1.0, 3.0, size, dtype=np.float32)
        depth = np.stack([ramp[None, :].repeat(size, 0) + 0.05 * i for i in range(t)])
        depth[:, :2, :2] = 0  # no measurement there
        np.savez(path, depth=depth, frames=np.array(frames))
    elif task == "camera_pose":
        poses = np.tile(np.eye(4), (t, 1, 1))
        for i in range(t):
            a = 0.05 * i
            poses[i, :3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
            poses[i, :3, 3] = [0.1 * i * math.sin(a), 0.0, 0.5 * i]
        np.savez(path, poses=poses, frames=np.array(frames))
    else:
        raise ValueError(task)


def write_dense_dataset(root, task: str, train: int = 3, val: int = 1, frames: int = 10, size: int = 32):
    """``root/train`` and ``root/val`` with index videos of ``frames`` frames and their ``task`` annotations (every
    frame but the first annotated)."""
    from coldstream.testing import write_index_video

    for split, n in (("train", train), ("val", val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            v = write_index_video(root / split / f"v{i}.mp4", frames, height=size, width=size, fps=10)
            write_annotation(v.with_suffix(DENSE_SUFFIX[task]), task, list(range(1, frames)), size, seed=i)
    return root
