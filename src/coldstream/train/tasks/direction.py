"""Direction of motion: a crop window sliding across a real photograph in one of 8 directions.

Each *trajectory* is a photo, a direction (0 = right, then counter-clockwise in 45° steps), a speed in pixels per
frame and a start point that keeps the whole path inside the photo. Its T crops are encoded once; the clip played
forward has label ``d`` and the same frames played backwards are a clip of the opposite direction ``(d + 4) % 8``,
so both reuse the same cached features and a direction and its opposite always show the same set of crops: a model
blind to frame order (mean-pooled features) cannot tell them apart and stays at <= 50%.

A trajectory can run over one of the 8 *views* of its photo (the symmetries of the square applied to the pixels
before cropping and encoding): new real content for the encoder at no cost in photos, with the split still by photo.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import torch

from coldstream.errors import DataError, InputError
from coldstream.train.cache import file_content_hash, video_key
from coldstream.train.clips import ClipItem
from coldstream.train.extract import FrameJob
from coldstream.train.packaged import Source, fetch_packaged_data, photo_sources, read_image
from coldstream.train.tasks.base import TASKS, Task, TaskData

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
    view: int = 0  # symmetry of the photo (bits: 1 transpose, 2 mirror left-right, 4 mirror up-down), see photo_view

    def positions(self, frames: int) -> list[tuple[int, int]]:
        a = self.direction * math.pi / 4
        dx, dy = math.cos(a) * self.speed, -math.sin(a) * self.speed
        return [(int(round(self.x0 + t * dx)), int(round(self.y0 + t * dy))) for t in range(frames)]


@lru_cache(maxsize=16)
def photo_view(path: str, short_side: int, view: int = 0) -> np.ndarray:
    """The photo resized so its short side is ``short_side``, then transformed by ``view`` (0..7: bit 1 transposes,
    bit 2 mirrors left-right, bit 4 mirrors up-down, in that order)."""
    img = _resized_photo(path, short_side)
    if view & 1:
        img = img.transpose(1, 0, 2)
    if view & 2:
        img = img[:, ::-1]
    if view & 4:
        img = img[::-1]
    return np.ascontiguousarray(img)


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
    img = photo_view(traj.path, traj.scale_side, traj.view)
    return np.stack([img[y : y + size, x : x + size] for x, y in traj.positions(frames)])


def make_trajectories(
    photos: list[Source],
    per_photo: int,
    size: int,
    frames: int,
    seed: int = 0,
    speed: tuple[float, float] = (6, 12),
    photo_scale: float = 2.5,
    views: int = 1,
) -> list[Trajectory]:
    """``per_photo`` trajectories per photo, spread evenly over its first ``views`` views (:func:`photo_view`),
    directions balanced (each view cycles through all 8 from a random start); speeds uniform in ``speed`` pixels per
    frame; photos resized so their short side is ``photo_scale * size``."""
    if not 1 <= views <= 8 or per_photo % views:
        raise InputError(f"views must be 1..8 and divide per_photo; got views={views}, per_photo={per_photo}")
    rng = np.random.default_rng(seed)
    side = int(round(photo_scale * size))
    out = []
    for p, view in itertools.product(photos, range(views)):
        img = photo_view(str(p.path), side, view)
        h, w = img.shape[:2]
        offset = int(rng.integers(8))
        dirs = [(i + offset) % 8 for i in range(per_photo // views)]
        for d in dirs:
            a = d * math.pi / 4
            room = min((w - size) / max(1e-9, abs(math.cos(a))), (h - size) / max(1e-9, abs(math.sin(a))))
            v = min(float(rng.uniform(*speed)), room / (frames - 1) - 1e-3)  # the whole path stays inside the photo
            span_x, span_y = math.cos(a) * v * (frames - 1), -math.sin(a) * v * (frames - 1)
            lo_x, hi_x = max(0, -span_x), (w - size) - max(0, span_x)
            lo_y, hi_y = max(0, -span_y), (h - size) - max(0, span_y)
            x0 = int(math.ceil(lo_x)) + int(rng.integers(0, max(1, int(hi_x - lo_x))))
            y0 = int(math.ceil(lo_y)) + int(rng.integers(0, max(1, int(hi_y - lo_y))))
            out.append(Trajectory(p.name, str(p.path), d, round(v, 3), x0, y0, side, view))
    return out


def trajectory_key(traj: Trajectory, size: int, frames: int) -> str:
    """Cache key: photo content + everything that places the crops."""
    sampling = {"task": "direction", "size": size, "frames": frames, "traj": [traj.direction, traj.speed, traj.x0,
                traj.y0, traj.scale_side, traj.view]}  # fmt: skip
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


@dataclass(frozen=True)
class DirectionOptions:
    """``data.options`` of the direction task."""

    per_photo: int = 48  # trajectories per photo (data.clips_per_source overrides it), spread over its views
    views: int = 8  # symmetries of each photo it is seen in (photo_view): more real content per photo
    traj_frames: int = 24  # frames per trajectory; every clip-length window of it is a clip, both ways
    window_step: int = 4  # frames between window starts
    speed: tuple[float, float] = (4.5, 9.0)  # crop speed range, pixels per frame (at the frame size)
    test_frac: float = 0.3  # fraction of photos held out
    min_side: int = 150  # photos smaller than this are left out
    photo_scale: float = 3.0  # photos are resized so their short side is this many frame sizes


@TASKS.register("direction")
class DirectionTask(Task):
    """Direction of motion (8 classes) on real photographs, split by photo (see the module docstring)."""

    Options = DirectionOptions

    def trajectories(self) -> tuple[list[Trajectory], set[str], list[str]]:
        """``(trajectories, held-out photo names, fetch problems)``: everything the clips are cut from."""
        d, o, size = self.data_cfg, self.options, self.frame_size
        root, problems = fetch_packaged_data(d.root or None, verbose=True)
        photos = [p for p in photo_sources(root) if min(read_image(p.path).shape[:2]) >= o.min_side]
        if len(photos) < 4:
            raise DataError(f"only {len(photos)} photos found; install scikit-image and/or fetch opencv-doc")
        _, test_names = split_by_source([p.name for p in photos], o.test_frac)
        trajs = make_trajectories(
            photos, d.clips_per_source or o.per_photo, size, self.traj_frames, seed=self.seed, speed=tuple(o.speed),
            photo_scale=o.photo_scale, views=o.views,
        )  # fmt: skip
        return trajs, test_names, problems

    @property
    def traj_frames(self) -> int:
        return max(self.data_cfg.frames, self.options.traj_frames)

    def jobs(self, trajs: list[Trajectory], encoder) -> list[FrameJob]:
        """One job per trajectory: its frames, rendered and encoded once (direction and crop tracks share them)."""
        size, tf = self.frame_size, self.traj_frames
        return [
            FrameJob(trajectory_key(t, size, tf), list(range(tf)), frame_loader(t, size, tf, encoder.mean, encoder.std),
                     t.source)
            for t in trajs
        ]  # fmt: skip

    def clips(self, trajs: list[Trajectory]) -> list[ClipItem]:
        return clip_items(trajs, self.frame_size, self.traj_frames, self.data_cfg.frames, self.options.window_step)

    def class_names(self) -> list[str]:
        return DIRECTION_NAMES

    def data(self, encoder) -> TaskData:
        trajs, test_names, problems = self.trajectories()
        items = self.clips(trajs)
        train = [i for i in items if i.source not in test_names]
        test = [i for i in items if i.source in test_names]
        notes = [f"could not fetch {p}" for p in problems]
        return TaskData(self.jobs(trajs, encoder), train, test, self.class_names(), notes=notes)
