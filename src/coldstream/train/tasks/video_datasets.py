"""Dataset adapters for labelled videos: Something-Something v2 and a generic CSV.

Formats
-------
**Something-Something v2** (``data.task=ssv2``): ``data.root`` holds the videos as ``<id>.webm`` (any extension
listed in ``VIDEO_EXTENSIONS`` is found); ``data.labels`` is SSv2's ``labels.json`` (``{"Template text": "17"}``);
``data.options.train`` / ``data.options.val`` are its ``train.json`` / ``validation.json`` (lists of
``{"id": "78687", "template": "Holding [something] next to [something]", ...}``; the label is the template with the
brackets removed).

**CSV** (``data.task=csv``): ``data.labels`` is a CSV file with a header and columns ``video,label`` plus optional
``start,end`` (seconds) and ``split`` (``train``/``val``; without it a hash of the video path puts 20% in val).
``video`` is relative to the CSV's folder (or ``data.root`` when set); ``label`` is any string (classes are the sorted
distinct labels) or an integer.

Every clip is T frames (stride ``max(1, round(native fps / data.fps))``, centred in [start, end]; a short video
repeats its last sampled frame; docs/video-io.md). A label
file that names no existing video is an error that says so; entries whose video is missing are skipped and counted;
videos that do not decode are skipped and counted at extraction.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from coldstream.errors import DataError
from coldstream.train.cache import file_content_hash, video_key
from coldstream.train.clips import ClipItem
from coldstream.train.extract import FrameJob
from coldstream.train.tasks.base import TASKS, Task, TaskData

VIDEO_EXTENSIONS = (".webm", ".mp4", ".avi", ".mkv", ".mov")


class LabelFileError(DataError):
    """A label file that does not match the videos it describes."""


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video (or a [start, end] segment of one)."""

    path: Path  # the video file
    label: int  # class index
    split: str  # "train" or "val"
    start: float | None = None  # seconds
    end: float | None = None  # seconds


@dataclass
class VideoDataset:
    """Records plus what was left out."""

    records: list[VideoRecord]
    class_names: list[str]
    missing: list[str]  # entries whose video file does not exist

    def split(self, name: str) -> list[VideoRecord]:
        return [r for r in self.records if r.split == name]

    def summary(self) -> str:
        s = f"{len(self.records)} videos ({len(self.split('train'))} train / {len(self.split('val'))} val), "
        s += f"{len(self.class_names)} classes"
        if self.missing:
            s += f"; {len(self.missing)} label entries without a video skipped (e.g. {self.missing[0]})"
        return s


def _find_video(root: Path, stem: str) -> Path | None:
    p = root / stem
    if p.suffix and p.exists():
        return p
    for ext in VIDEO_EXTENSIONS:
        q = root / f"{stem}{ext}"
        if q.exists():
            return q
    return None


def _check_any(records: list, missing: list[str], label_file: Path, root: Path) -> None:
    if not records:
        example = f" (e.g. {missing[0]})" if missing else ""
        raise LabelFileError(
            f"none of the {len(missing)} entries of {label_file} has a video under {root}{example}: "
            f"is data.root the folder that holds the videos, and does the label file belong to them?"
        )


def load_ssv2(root: str | os.PathLike, labels: str | os.PathLike, train: str | os.PathLike, val: str | os.PathLike):
    """Something-Something v2 from its JSON files (see the module docstring)."""
    root, labels = Path(root), Path(labels)
    try:
        classes = json.loads(labels.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LabelFileError(f"cannot read the SSv2 labels file {labels}: {e}") from e
    if not isinstance(classes, dict):
        raise LabelFileError(f"{labels} must map template text to class index, like SSv2's labels.json")
    index = {k: int(v) for k, v in classes.items()}
    names = [n for n, _ in sorted(index.items(), key=lambda kv: kv[1])]
    records, missing = [], []
    for split, path in (("train", Path(train)), ("val", Path(val))):
        try:
            entries = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LabelFileError(f"cannot read the SSv2 split file {path}: {e}") from e
        for e in entries:
            if "id" not in e or "template" not in e:
                raise LabelFileError(f"{path}: entry {e!r} lacks 'id' or 'template' (SSv2 format)")
            text = e["template"].replace("[", "").replace("]", "")
            if text not in index:
                raise LabelFileError(f"{path}: template {text!r} of video {e['id']} is not in {labels}")
            video = _find_video(root, str(e["id"]))
            if video is None:
                missing.append(str(e["id"]))
                continue
            records.append(VideoRecord(video, index[text], split))
    _check_any(records, missing, labels, root)
    return VideoDataset(records, names, missing)


def _split_of(path: str, val_frac: float = 0.2) -> str:
    h = int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_frac else "train"


def load_csv(labels: str | os.PathLike, root: str | os.PathLike | None = None) -> VideoDataset:
    """A generic CSV of ``video,label[,start,end][,split]`` (see the module docstring)."""
    labels = Path(labels)
    root = Path(root) if root else labels.parent
    try:
        with open(labels, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise LabelFileError(f"cannot read the label CSV {labels}: {e}") from e
    if not rows or "video" not in rows[0] or "label" not in rows[0]:
        raise LabelFileError(
            f"{labels} needs a header with at least the columns video,label (optional start,end,split)"
        )
    raw = [r["label"].strip() for r in rows]
    if all(x.lstrip("-").isdigit() for x in raw):
        n = max(int(x) for x in raw) + 1
        names, to_idx = [str(i) for i in range(n)], {str(i): i for i in range(n)}
    else:
        names = sorted(set(raw))
        to_idx = {n: i for i, n in enumerate(names)}
    records, missing = [], []
    for line, r in enumerate(rows, start=2):
        video = root / r["video"].strip()
        if not video.exists():
            missing.append(r["video"])
            continue

        def num(key, line=line, r=r):
            v = (r.get(key) or "").strip()
            try:
                return float(v) if v else None
            except ValueError:
                raise LabelFileError(f"{labels}:{line}: {key}={v!r} is not a number of seconds") from None

        start, end = num("start"), num("end")
        if start is not None and end is not None and end <= start:
            raise LabelFileError(f"{labels}:{line}: end {end} is not after start {start}")
        split = (r.get("split") or "").strip() or _split_of(r["video"])
        if split not in ("train", "val"):
            raise LabelFileError(f"{labels}:{line}: split must be train or val, got {split!r}")
        records.append(VideoRecord(video, to_idx[r["label"].strip()], split, start, end))
    _check_any(records, missing, labels, root)
    return VideoDataset(records, names, missing)


def video_clips(records: list[VideoRecord], frames: int, fps: float, frame_size: int, encoder):
    """One centred clip per labelled video: ``(jobs, {record index: ClipItem}, unreadable)``; a video that cannot be
    opened is skipped and counted, never fatal."""
    from coldstream.io import centered_clip_indices, clip_stride, open_video

    jobs, items, bad = [], {}, []
    for i, r in enumerate(records):
        try:
            with open_video(r.path) as src:
                info = src.info
        except Exception as e:  # noqa: BLE001 - unreadable video: skipped and counted
            bad.append((str(r.path), str(e)))
            continue
        stride = clip_stride(info.fps, fps or None)
        lo = int(r.start * info.fps) if r.start is not None and info.fps else 0
        hi = min(info.num_frames, int(r.end * info.fps) + 1) if r.end is not None and info.fps else info.num_frames
        idx = [lo + k for k in centered_clip_indices(max(1, hi - lo), frames, stride)]
        job = video_job(r.path, idx, frame_size, encoder)
        jobs.append(job)
        items[i] = ClipItem(job.vkey, tuple(idx), r.label, str(r.path))
    return jobs, items, bad


def video_job(path: str | os.PathLike, frames, frame_size: int, encoder) -> FrameJob:
    """The job that encodes ``frames`` (display-order indices) of the video at ``path``, preprocessed to
    ``frame_size`` with ``encoder``'s normalisation; its ``vkey`` is the video's cache key."""
    from coldstream.io import open_video

    vkey = video_key(file_content_hash(path), {"decode": "native-frame-index"})

    def load(ix, path=str(path)):
        with open_video(path, output="float", size=frame_size, mean=encoder.mean, std=encoder.std) as s:
            return s.get_frames(ix).data

    return FrameJob(vkey, sorted(set(int(f) for f in frames)), load, str(path))


class _VideoDatasetTask(Task):
    def dataset(self) -> VideoDataset:
        raise NotImplementedError

    def data(self, encoder) -> TaskData:
        d = self.data_cfg
        ds = self.dataset()
        jobs, items, bad = video_clips(ds.records, d.frames, d.fps, self.frame_size, encoder)
        train = [items[i] for i, r in enumerate(ds.records) if i in items and r.split == "train"]
        val = [items[i] for i, r in enumerate(ds.records) if i in items and r.split == "val"]
        return TaskData(jobs, train, val, ds.class_names, bad, notes=[ds.summary()])


@TASKS.register("csv")
class CSVTask(_VideoDatasetTask):
    """Labelled videos listed in a CSV (``data.labels``; see the module docstring)."""

    def dataset(self) -> VideoDataset:
        return load_csv(self.data_cfg.labels, self.data_cfg.root or None)


@dataclass(frozen=True)
class SSv2Options:
    """``data.options`` of the ssv2 task."""

    train: str = ""  # SSv2's train.json
    val: str = ""  # SSv2's validation.json


@TASKS.register("ssv2")
class SSv2Task(_VideoDatasetTask):
    """Something-Something v2 (174 classes) from its JSON files (see the module docstring)."""

    Options = SSv2Options

    def dataset(self) -> VideoDataset:
        o = self.options
        if not o.train or not o.val:
            raise LabelFileError("ssv2 needs data.options.train=<train.json> and data.options.val=<validation.json>")
        return load_ssv2(self.data_cfg.root, self.data_cfg.labels, o.train, o.val)
