"""Split big files into parts that each fit one device call's carry, and join them back (stdlib only, Python >= 3.8).

The files are treated as one stream cut into parts of at most ``--part-mib`` MiB: ``ROOT/partNN/`` holds the pieces
(``<file>.partNN``) that fall into it plus a copy of ``manifest.json`` (size and sha256 of every original file and
every piece), so any one part is enough to know the whole plan. Used by ``bench/carry/dali.sh``; see its header.

    python3 parts.py split  --root .carry/dali --part-mib 60 FILE...   # idempotent: good pieces are kept
    python3 parts.py status --root .carry/dali                         # exit 0; 'missing'/'bad' lines say what to redo
    python3 parts.py join   --root .carry/dali --out DIR               # exit 3 if a part is missing or bad
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

MANIFEST = "manifest.json"
MIB = 1 << 20
CARRY_LIMIT_MIB = 64  # what one device call may carry, working tree included


def sha256(path: Path, offset: int = 0, length: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = os.path.getsize(path) - offset if length is None else length
        while left > 0:
            buf = f.read(min(left, 4 * MIB))
            if not buf:
                break
            h.update(buf)
            left -= len(buf)
    return h.hexdigest()


def _piece_ok(path: Path, piece: dict) -> bool:
    return path.is_file() and path.stat().st_size == piece["length"] and sha256(path) == piece["sha256"]


def cmd_split(a) -> int:
    root = Path(a.root)
    part_bytes = int(a.part_mib * MIB)
    files = [Path(f) for f in a.files]
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        sys.exit("split: two files with the same name")
    infos = [{"name": f.name, "size": f.stat().st_size, "sha256": sha256(f)} for f in files]
    parts: list[dict] = []
    room = 0
    for f, info in zip(files, infos, strict=True):
        off = 0
        while off < info["size"]:
            if room == 0:
                parts.append({"dir": f"part{len(parts) + 1:02d}", "bytes": 0, "pieces": []})
                room = part_bytes
            n = min(room, info["size"] - off)
            p = parts[-1]
            p["pieces"].append(
                {
                    "file": info["name"],
                    "name": f"{info['name']}.{p['dir']}",
                    "offset": off,
                    "length": n,
                    "sha256": sha256(f, off, n),
                }
            )
            p["bytes"] += n
            off += n
            room -= n
    plan = {"part_mib": a.part_mib, "files": infos, "parts": parts}
    plan_id = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]
    manifest = {"id": plan_id, **plan}
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    src = dict(zip(names, files, strict=True))
    root.mkdir(parents=True, exist_ok=True)
    for p in parts:
        d = root / p["dir"]
        d.mkdir(exist_ok=True)
        wanted = {pc["name"] for pc in p["pieces"]} | {MANIFEST}
        for stray in d.iterdir():
            if stray.name not in wanted:
                stray.unlink() if stray.is_file() else shutil.rmtree(stray)
        redone = 0
        for pc in p["pieces"]:
            out = d / pc["name"]
            if _piece_ok(out, pc):
                continue
            tmp = out.with_name(out.name + ".tmp")
            with open(src[pc["file"]], "rb") as fi, open(tmp, "wb") as fo:
                fi.seek(pc["offset"])
                left = pc["length"]
                while left:
                    buf = fi.read(min(left, 4 * MIB))
                    fo.write(buf)
                    left -= len(buf)
            if not _piece_ok(tmp, pc):
                sys.exit(f"split: {tmp} did not verify")
            os.replace(tmp, out)
            redone += 1
        (d / MANIFEST).write_text(text)
        print(f"{d}: {p['bytes'] / MIB:.1f} MiB, {len(p['pieces'])} pieces, {redone} written, rest already good")
    for old in root.glob("part[0-9]*"):  # parts of an earlier, longer plan
        if old.is_dir() and old.name not in {p["dir"] for p in parts}:
            shutil.rmtree(old)
            print(f"{old}: removed (not in this plan)")
    (root / MANIFEST).write_text(text)
    total = sum(i["size"] for i in infos) / MIB
    print(f"manifest {plan_id}: {len(infos)} files, {total:.1f} MiB in {len(parts)} parts")
    return 0


def load_manifest(root: Path) -> dict:
    """The plan, from ROOT/manifest.json or any part's copy; parts from different plans are an error."""
    found = {}
    for m in sorted(root.glob(f"part[0-9]*/{MANIFEST}")) + [root / MANIFEST]:
        if m.is_file():
            found[m] = json.loads(m.read_text())
    if not found:
        sys.exit(f"no {MANIFEST} under {root} (run prepare here, or carry a part to this machine)")
    ids = {v["id"] for v in found.values()}
    if len(ids) > 1:
        listing = ", ".join(f"{k.parent.name}={v['id']}" for k, v in found.items())
        sys.exit(f"parts under {root} come from different prepare runs ({listing}): re-carry them from one")
    return next(iter(found.values()))


def tree_mib() -> float | None:
    """MiB of what a device call sends besides `carry` (tracked + untracked-not-ignored files); None without git."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    total = sum(os.path.getsize(p) for p in out.decode().split("\0") if p and os.path.isfile(p))
    if os.path.isdir("shared"):
        total += sum(f.stat().st_size for f in Path("shared").rglob("*") if f.is_file())
    return total / MIB


def check(root: Path, m: dict) -> dict[str, str]:
    """Part dir -> 'ok' | 'missing' | 'bad (...)'."""
    state = {}
    for p in m["parts"]:
        d = root / p["dir"]
        if not d.is_dir():
            state[p["dir"]] = "missing"
            continue
        bad = [pc["name"] for pc in p["pieces"] if not _piece_ok(d / pc["name"], pc)]
        state[p["dir"]] = f"bad ({', '.join(bad)})" if bad else "ok"
    return state


def cmd_status(a) -> int:
    root = Path(a.root)
    m = load_manifest(root)
    state = check(root, m)
    tree = tree_mib()
    print(f"manifest {m['id']}: {len(m['files'])} files, {len(m['parts'])} parts of <= {m['part_mib']} MiB")
    for f in m["files"]:
        print(f"  file {f['name']}  {f['size'] / MIB:.1f} MiB  sha256 {f['sha256'][:16]}...")
    for p in m["parts"]:
        extra = ""
        if tree is not None:
            total = tree + p["bytes"] / MIB
            extra = f"  (+ working tree {tree:.1f} MiB = {total:.1f} MiB{' > 64 MiB: TOO BIG' if total > 64 else ''})"
        print(f"  {root / p['dir']}  {p['bytes'] / MIB:.1f} MiB  {state[p['dir']]}{extra}")
    todo = [d for d, s in state.items() if s != "ok"]
    print(f"parts ok: {len(state) - len(todo)}/{len(state)}" + (f"; not ok: {' '.join(todo)}" if todo else ""))
    return 1 if a.strict and todo else 0


def cmd_join(a) -> int:
    root, out = Path(a.root), Path(a.out)
    m = load_manifest(root)
    state = check(root, m)
    todo = {d: s for d, s in state.items() if s != "ok"}
    if todo:
        for d, s in todo.items():
            print(f"join: {root / d} is {s}: carry it in a call first", file=sys.stderr)
        return 3
    out.mkdir(parents=True, exist_ok=True)
    pieces: dict[str, list] = {f["name"]: [] for f in m["files"]}
    for p in m["parts"]:
        for pc in p["pieces"]:
            pieces[pc["file"]].append(root / p["dir"] / pc["name"])
    for f in m["files"]:
        dest = out / f["name"]
        if dest.is_file() and dest.stat().st_size == f["size"] and sha256(dest) == f["sha256"]:
            print(f"{dest}: already joined and verified", file=sys.stderr)
        else:
            tmp = dest.with_name(dest.name + ".tmp")
            with open(tmp, "wb") as fo:
                for piece in pieces[f["name"]]:
                    with open(piece, "rb") as fi:
                        shutil.copyfileobj(fi, fo, 4 * MIB)
            if sha256(tmp) != f["sha256"]:
                tmp.unlink()
                sys.exit(f"join: {f['name']} does not match its sha256 after joining")
            os.replace(tmp, dest)
            print(f"{dest}: joined, sha256 ok", file=sys.stderr)
        print(dest)  # stdout: the joined files, one per line
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("--root", required=True)
    s.add_argument("--part-mib", type=float, default=60)
    s.add_argument("files", nargs="+")
    s = sub.add_parser("status")
    s.add_argument("--root", required=True)
    s.add_argument("--strict", action="store_true", help="exit 1 unless every part is present and verified")
    s = sub.add_parser("id", help="print the manifest's id")
    s.add_argument("--root", required=True)
    s = sub.add_parser("join")
    s.add_argument("--root", required=True)
    s.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.cmd == "id":
        print(load_manifest(Path(a.root))["id"])
        return 0
    return {"split": cmd_split, "status": cmd_status, "join": cmd_join}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
