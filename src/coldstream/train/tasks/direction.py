"""Direction of motion: a crop window sliding across a real photograph in one of 8 directions.

Each *trajectory* is a photo, a direction (0 = right, then counter-clockwise in 45° steps), a speed in pixels per
frame and a start point that keeps the whole path inside the photo. Its T crops are encoded once; the clip played
forward has label ``d`` and the same frames played backwards are a clip of the opposite direction ``(d + 4) % 8``,
so both reuse the same cached features and a direction and its opposite always show the same set of crops: a model
blind to frame order (mean-pooled features) cannot tell them apart and stays at <= 50%.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import torch

from coldstream.train.cache import file_content_hash, video_key
from coldstream.train.clips import ClipItem
from coldstream.train.packaged import Source, read_image

NUM_DIRECTIONS = 8
DIRECTION_NAMES = ["right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right"]


@dataclass(frozen=True)
class Trajectory:
    """One moving-crop video made from a photo."""

    source: str  # photo name (the split is by photo)
    path: str  # photo file
    direction: int  # 0..7, angle = direction * 45° (y up)
    speed: float  # pixels per frame in the resized photo
    x0: int  # top-left of the first crop
    y0: int
    scale_side: int  # the photo is resized so its short side is this many pixels

    def positions(self, frames: int) -> list[tuple[int, int]]:
        a = self.direction * math.pi / 4
        dx, dy = math.cos(a) * self.speed, -math.sin(a) * self.speed
        return [(int(round(self.x0 + t * dx)), int(round(self.y0 + t * dy))) for t in range(frames)]


@lru_cache(maxsize=8)
def _resized_photo(path: str, short_side: int) -> np.ndarray:
    img = read_image(path)
    h, w = img.shape[:2]
    s = short_side / min(h, w)
    size = (round(w * s), round(h * s))
    try:
        import cv2

        return cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    except ImportError:  # OpenCV is optional; Pillow comes with scikit-image
        from PIL import Image

        return np.asarray(Image.fromarray(img).resize(size, Image.BOX if s < 1 else Image.BILINEAR))


def render(traj: Trajectory, size: int, frames: int) -> np.ndarray:
    """The trajectory's crops: uint8 ``[T, size, size, 3]``."""
    img = _resized_photo(traj.path, traj.scale_side)
    return np.stack([img[y : y + size, x : x + size] for x, y in traj.positions(frames)])


def make_trajectories(
    photos: list[Source],
    per_photo: int,
    size: int,
    frames: int,
    seed: int = 0,
    speed: tuple[float, float] = (6, 12),
    photo_scale: float = 2.5,
) -> list[Trajectory]:
    """``per_photo`` trajectories per photo, directions balanced (each photo cycles through all 8); speeds uniform in
    ``speed`` pixels per frame; photos resized so their short side is ``photo_scale * size``."""
    rng = np.random.default_rng(seed)
    side = int(round(photo_scale * size))
    out = []
    for p in photos:
        img = _resized_photo(str(p.path), side)
        h, w = img.shape[:2]
        offset = int(rng.integers(8))
        dirs = [(i + offset) % 8 for i in range(per_photo)]
        for d in dirs:
            a = d * math.pi / 4
            room = min((w - size) / max(1e-9, abs(math.cos(a))), (h - size) / max(1e-9, abs(math.sin(a))))
            v = min(float(rng.uniform(*speed)), room / (frames - 1) - 1e-3)  # the whole path stays inside the photo
            span_x, span_y = math.cos(a) * v * (frames - 1), -math.sin(a) * v * (frames - 1)
            lo_x, hi_x = max(0, -span_x), (w - size) - max(0, span_x)
            lo_y, hi_y = max(0, -span_y), (h - size) - max(0, span_y)
            x0 = int(math.ceil(lo_x)) + int(rng.integers(0, max(1, int(hi_x - lo_x))))
            y0 = int(math.ceil(lo_y)) + int(rng.integers(0, max(1, int(hi_y - lo_y))))
            out.append(Trajectory(p.name, str(p.path), d, round(v, 3), x0, y0, side))
    return out


def trajectory_key(traj: Trajectory, size: int, frames: int) -> str:
    """Cache key: photo content + everything that places the crops."""
    sampling = {"task": "direction", "size": size, "frames": frames, "traj": [traj.direction, traj.speed, traj.x0,
                traj.y0, traj.scale_side]}  # fmt: skip
    return video_key(_photo_hash(traj.path), sampling)


@cache
def _photo_hash(path: str) -> str:
    return file_content_hash(path)


def clip_items(trajs: list[Trajectory], size: int, traj_frames: int, clip_frames: int, step: int = 1) -> list[ClipItem]:
    """Clips of ``clip_frames`` frames from trajectories of ``traj_frames`` frames: every window (started every
    ``step`` frames) forward (label d) and reversed (label d + 4 mod 8), all reading the same cached frames.

    Longer trajectories give many clips per encoded frame, and a frame that ends a forward window also ends a
    reversed one, so the last frame alone does not give the label away."""
    items = []
    for t in trajs:
        k = trajectory_key(t, size, traj_frames)
        for a in range(0, traj_frames - clip_frames + 1, step):
            fwd = tuple(range(a, a + clip_frames))
            items.append(ClipItem(k, fwd, t.direction, t.source))
            items.append(ClipItem(k, fwd[::-1], (t.direction + 4) % NUM_DIRECTIONS, t.source))
    return items


def split_by_source(names: list[str], test_frac: float, seed: int = 0) -> tuple[set[str], set[str]]:
    """Deterministic split of source names: (train, test), by a hash of (seed, name)."""
    ranked = sorted(names, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())
    n_test = max(1, round(test_frac * len(ranked)))
    return set(ranked[n_test:]), set(ranked[:n_test])


def frame_loader(traj: Trajectory, size: int, frames: int, mean, std):
    """Loader for :class:`~coldstream.train.extract.FrameJob`: normalised float ``[len(idx), 3, S, S]``."""
    from coldstream.io.preprocess import preprocess_frames

    def load(idx: list[int]) -> torch.Tensor:
        crops = torch.from_numpy(render(traj, size, frames)[idx])
        return preprocess_frames(crops, size=size, mean=mean, std=std)

    return load


def dihedral(feats: torch.Tensor, label: int, op: int, prefix_tokens: int) -> tuple[torch.Tensor, int]:
    """Apply one of the 8 symmetries of the square to the token grid of a clip and map its direction label.

    ``feats`` ``[T, K, N, D]`` with ``N = prefix + side²`` (row-major grid, rows downwards); ``op`` bits:
    1 = transpose, 2 = mirror left-right, 4 = mirror up-down (applied in that order). The motion of the content
    across the grid transforms with the grid, so the label follows exactly; the grid's content no longer matches any
    training photo, which keeps the model from memorising photos instead of learning motion. Prefix tokens (pooled
    over the grid) are invariant and left as they are.
    """
    t, k, n, d = feats.shape
    side = int(round((n - prefix_tokens) ** 0.5))
    grid = feats[:, :, prefix_tokens:].reshape(t, k, side, side, d)
    if op & 1:
        grid, label = grid.transpose(2, 3), (6 - label) % NUM_DIRECTIONS
    if op & 2:
        grid, label = grid.flip(3), (4 - label) % NUM_DIRECTIONS
    if op & 4:
        grid, label = grid.flip(2), (-label) % NUM_DIRECTIONS
    out = torch.cat([feats[:, :, :prefix_tokens], grid.reshape(t, k, side * side, d)], dim=2)
    return out, label


# --- Lattice trajectories: every crop shared by many clips --------------------------------------------------------
# With a few independent trajectories per photo, a temporal core can memorise each training photo (which content
# goes with which label) instead of learning motion. Here every photo's crops sit on a lattice (step ``step`` pixels)
# and every clip is a straight path on that lattice (8 directions, ``speed`` lattice steps per frame): each encoded
# crop appears in clips of every direction, at every position in the clip, so no single frame (and no photo's
# content) tells the label, and the number of distinct clips per photo is large for the same encoding cost. A path
# and its reverse read the same crops, so a mean-pooled, order-blind model still cannot pass 50%.

_STEPS = [(1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)]  # (dx, dy) per direction, y down


@dataclass(frozen=True)
class Lattice:
    """The crops of one photo at lattice points ``(x0 + i*step, y0 + j*step)``, frame index ``j * nx + i``."""

    source: str
    path: str
    scale_side: int
    step: int
    x0: int
    y0: int
    nx: int
    ny: int

    def positions(self) -> list[tuple[int, int]]:
        return [(self.x0 + i * self.step, self.y0 + j * self.step) for j in range(self.ny) for i in range(self.nx)]


def make_lattice(photo: Source, size: int, step: int, max_points: int, photo_scale: float) -> Lattice:
    """Centred lattice of at most ``max_points`` points per axis that keeps every crop inside the resized photo."""
    side = int(round(photo_scale * size))
    h, w = _resized_photo(str(photo.path), side).shape[:2]
    nx, ny = min(max_points, (w - size) // step + 1), min(max_points, (h - size) // step + 1)
    x0, y0 = (w - size - (nx - 1) * step) // 2, (h - size - (ny - 1) * step) // 2
    return Lattice(photo.name, str(photo.path), side, step, x0, y0, nx, ny)


def lattice_key(lat: Lattice, size: int) -> str:
    sampling = {"task": "direction-lattice", "size": size, "lattice": [lat.scale_side, lat.step, lat.x0, lat.y0,
                lat.nx, lat.ny]}  # fmt: skip
    return video_key(_photo_hash(lat.path), sampling)


def render_lattice(lat: Lattice, size: int, idx: list[int]) -> np.ndarray:
    img = _resized_photo(lat.path, lat.scale_side)
    pos = lat.positions()
    return np.stack([img[pos[k][1] : pos[k][1] + size, pos[k][0] : pos[k][0] + size] for k in idx])


def lattice_frame_loader(lat: Lattice, size: int, mean, std):
    from coldstream.io.preprocess import preprocess_frames

    def load(idx: list[int]) -> torch.Tensor:
        return preprocess_frames(torch.from_numpy(render_lattice(lat, size, idx)), size=size, mean=mean, std=std)

    return load


def lattice_paths(lat: Lattice, frames: int, direction: int, speed: int) -> list[tuple[int, ...]]:
    """Every straight path of ``frames`` lattice points in ``direction`` at ``speed`` steps per frame."""
    dx, dy = _STEPS[direction]
    out = []
    for j in range(lat.ny):
        for i in range(lat.nx):
            ie, je = i + dx * speed * (frames - 1), j + dy * speed * (frames - 1)
            if 0 <= ie < lat.nx and 0 <= je < lat.ny:
                out.append(tuple((j + dy * speed * t) * lat.nx + i + dx * speed * t for t in range(frames)))
    return out


def lattice_clip_items(
    lat: Lattice, size: int, frames: int, per_direction: int, speeds=(1,), seed: int = 0
) -> list[ClipItem]:
    """Up to ``per_direction`` random paths per direction (balanced over the 8 directions; speeds drawn from
    ``speeds``), each paired with its reverse, which is a path of the opposite direction over the same crops."""
    key = lattice_key(lat, size)
    rng = np.random.default_rng([seed, int(hashlib.sha256(lat.source.encode()).hexdigest()[:8], 16)])
    items = []
    for d in range(4):  # the reverse of direction d is direction d + 4
        paths = [p for s in speeds for p in lattice_paths(lat, frames, d, s)]
        if not paths:
            continue
        pick = rng.choice(len(paths), size=min(per_direction, len(paths)), replace=False)
        for k in sorted(pick.tolist()):
            items.append(ClipItem(key, paths[k], d, lat.source))
            items.append(ClipItem(key, paths[k][::-1], d + 4, lat.source))
    return items
