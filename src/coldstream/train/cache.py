"""Frozen-feature cache: encode every decoded frame once, train the temporal module from stored features.

Layout of a cache directory::

    meta.json                       the cache key: encoder, weights, preprocessing, feature shape, format version
    shard-r{rank}-{seq:05d}.bin     raw bf16 rows, one row = one frame = ``[K, N, D]`` values, memory-mapped on read
    shard-r{rank}-{seq:05d}.json    the shard's index: which (video key, frame index) lives in which row

A *video key* names one decoded video under one sampling (see :func:`video_key`: content hash of the file plus the
sampling), and every frame is stored under ``(video key, frame index)``; overlapping clips, reversed clips and later
epochs reuse the same rows. Each rank writes its own shards, so extraction shards across ranks without locks. A shard
is written to a temporary file and renamed (its index last), so a killed extraction leaves only whole shards behind
and resumes where it stopped. Opening a cache whose ``meta.json`` differs from the requested key raises
:class:`StaleCacheError` that says which field differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from coldstream.atomic import atomic_write_bytes
from coldstream.errors import ColdstreamError, InputError, StaleCacheError

FORMAT_VERSION = 1
_CONTENT_HASH_FULL_LIMIT = 256 << 20  # files up to this size are hashed whole; larger ones by size + sampled blocks


@dataclass(frozen=True)
class CacheKey:
    """Everything that changes the stored features apart from the video itself."""

    encoder: str  # encoder name, e.g. "efficientnet_lite0"
    weights_id: str  # identifies the frozen weights (file hash or "random-seed-0")
    preprocess: dict = field(default_factory=dict)  # e.g. {"size": 128, "mean": [...], "std": [...]}
    feature_shape: tuple[int, int, int] = (1, 1, 1)  # (K depths, N tokens, D width) per frame
    dtype: str = "bfloat16"  # storage dtype
    version: int = FORMAT_VERSION  # on-disk format

    def to_json(self) -> dict:
        d = asdict(self)
        d["feature_shape"] = list(self.feature_shape)
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]


class CacheMissError(ColdstreamError, KeyError):
    """A frame that should be in the feature cache is not (extract it first)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


def file_content_hash(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (files over 256 MiB: size + 64 evenly spaced 1 MiB blocks, to stay fast)."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= _CONTENT_HASH_FULL_LIMIT:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            for i in range(64):
                f.seek(i * (size - (1 << 20)) // 63)
                h.update(f.read(1 << 20))
    return h.hexdigest()[:24]


def video_key(content: str, sampling: dict | None = None) -> str:
    """Cache key of one video under one sampling: ``content`` is :func:`file_content_hash` (or any string that
    changes when the pixels change, e.g. a generator's parameters); ``sampling`` holds fps/stride and the like."""
    blob = json.dumps({"content": content, "sampling": sampling or {}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _bf16_to_u16(x: torch.Tensor) -> np.ndarray:
    return x.to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint16)


class FeatureCache:
    """Sharded, memory-mapped bf16 store of frozen per-frame features, keyed by ``(video key, frame index)``.

    Args:
        root: cache directory (created if missing).
        key: the :class:`CacheKey` the caller expects. A cache built under another key raises
            :class:`StaleCacheError` unless ``rebuild=True``, which deletes its shards first.
        rank: the writer's rank; each rank writes its own shard files.
        shard_rows: rows per shard before a new shard is started (a killed extraction loses at most this many).
    """

    def __init__(
        self, root: str | os.PathLike, key: CacheKey, *, rank: int = 0, shard_rows: int = 4096, rebuild: bool = False
    ):
        self.root = Path(root)
        self.key = key
        self.rank = rank
        self.shard_rows = shard_rows
        self.row_numel = int(np.prod(key.feature_shape))
        self.root.mkdir(parents=True, exist_ok=True)
        meta = self.root / "meta.json"
        if meta.exists():
            found = json.loads(meta.read_text())
            if found != key.to_json():
                if not rebuild:
                    diff = {k: (found.get(k), v) for k, v in key.to_json().items() if found.get(k) != v}
                    lines = "; ".join(f"{k}: cache has {a!r}, requested {b!r}" for k, (a, b) in diff.items())
                    raise StaleCacheError(
                        f"feature cache {self.root} was built under another key ({lines}). Use another cache "
                        f"directory, or rebuild it (rebuild=True / cache.rebuild=true) to delete its shards."
                    )
                self._delete_shards()
        if not meta.exists() or json.loads(meta.read_text()) != key.to_json():
            if rank == 0:
                atomic_write_bytes(meta, json.dumps(key.to_json(), indent=1, sort_keys=True).encode())
        self._rows: dict[tuple[str, int], tuple[str, int]] = {}
        self._maps: dict[str, np.memmap] = {}
        self._pending: list[tuple[str, int, np.ndarray]] = []
        self._pending_rows = 0
        self.refresh()

    def _delete_shards(self) -> None:
        for p in self.root.glob("shard-*"):
            p.unlink()
        (self.root / "meta.json").unlink(missing_ok=True)

    def refresh(self) -> None:
        """Re-read every shard index on disk (e.g. after other ranks wrote theirs)."""
        self._rows.clear()
        for idx in sorted(self.root.glob("shard-*.json")):
            entry = json.loads(idx.read_text())
            name = entry["bin"]
            if not (self.root / name).exists():
                continue
            row = 0
            for vkey, frames in entry["videos"]:
                for fi in frames:
                    self._rows[(vkey, int(fi))] = (name, row)
                    row += 1

    def __len__(self) -> int:
        return len(self._rows)

    def has(self, vkey: str, frames: Iterable[int]) -> bool:
        """True when every ``(vkey, frame)`` is stored."""
        return all((vkey, int(f)) in self._rows for f in frames)

    def missing(self, vkey: str, frames: Iterable[int]) -> list[int]:
        """Frame indices of ``vkey`` not yet stored (in the given order, without duplicates)."""
        out, seen = [], set()
        for f in frames:
            f = int(f)
            if (vkey, f) not in self._rows and f not in seen:
                out.append(f)
                seen.add(f)
        return out

    def _map(self, name: str) -> np.memmap:
        m = self._maps.get(name)
        if m is None:
            m = np.memmap(self.root / name, dtype=np.uint16, mode="r").reshape(-1, self.row_numel)
            self._maps[name] = m
        return m

    def get(self, vkey: str, frames: Sequence[int]) -> torch.Tensor:
        """Stored features of the given frames: bf16 ``[T, K, N, D]`` (a copy; frames may repeat or run backwards)."""
        out = np.empty((len(frames), self.row_numel), dtype=np.uint16)
        for i, f in enumerate(frames):
            loc = self._rows.get((vkey, int(f)))
            if loc is None:
                raise CacheMissError(
                    f"frame {f} of video {vkey} is not in the feature cache {self.root}; extract it first"
                )
            out[i] = self._map(loc[0])[loc[1]]
        return torch.from_numpy(out).view(torch.bfloat16).view(len(frames), *self.key.feature_shape)

    def put(self, vkey: str, frames: Sequence[int], feats: torch.Tensor) -> None:
        """Queue features ``[T, K, N, D]`` of ``frames`` of ``vkey``; shards are written every ``shard_rows`` rows and
        on :meth:`flush`. Already-stored frames are ignored."""
        if tuple(feats.shape[1:]) != tuple(self.key.feature_shape) or feats.shape[0] != len(frames):
            raise InputError(
                f"features must be [T={len(frames)}, K, N, D] with (K, N, D) = {tuple(self.key.feature_shape)}, "
                f"got {tuple(feats.shape)}"
            )
        rows = _bf16_to_u16(feats.detach().cpu()).reshape(len(frames), -1)
        for f, r in zip(frames, rows, strict=True):
            if (vkey, int(f)) not in self._rows:
                self._pending.append((vkey, int(f), r))
        if len(self._pending) >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        """Write queued rows as one new shard: data first, then its index, each atomically."""
        if not self._pending:
            return
        existing = sorted(self.root.glob(f"shard-r{self.rank}-*.bin"))
        seq = int(existing[-1].stem.split("-")[-1]) + 1 if existing else 0
        name = f"shard-r{self.rank}-{seq:05d}"
        videos: list[list] = []
        for vkey, f, _ in self._pending:
            if videos and videos[-1][0] == vkey:
                videos[-1][1].append(f)
            else:
                videos.append([vkey, [f]])
        data = np.stack([r for _, _, r in self._pending])
        atomic_write_bytes(self.root / f"{name}.bin", data.tobytes())
        index = {"bin": f"{name}.bin", "rows": len(data), "videos": videos, "key": self.key.digest()}
        atomic_write_bytes(self.root / f"{name}.json", json.dumps(index).encode())
        row = 0
        for vkey, frames in videos:
            for f in frames:
                self._rows[(vkey, f)] = (f"{name}.bin", row)
                row += 1
        self._pending.clear()

    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("shard-*.bin"))
