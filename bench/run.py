"""``python bench/run.py``: run the ``bench/`` suites, print one table, write JSON (machine, versions, commit, every
figure) and a PNG plot. It runs from a checkout (the suites are not part of the installed package).

Each suite is a pytest-benchmark file ``bench/test_<suite>.py``. A case that fails its correctness gate is reported as
failed with no speed; a skipped case (no GPU, a missing optional backend) is listed with its reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from coldstream.atomic import atomic_write_text

SUITES = ("kernels", "encoder", "cores", "io", "end_to_end", "training", "tuning")
# a case whose id holds one of these anchors its group
BASELINE_MARKERS = ("reference", "eager", "naive", "torch", "default")
FIGURES = (  # (extra_info key, column title, format)
    ("frames_per_s", "frames/s", "{:,.0f}"),
    ("clips_per_s", "clips/s", "{:,.1f}"),
    ("GB_per_s", "GB/s", "{:,.0f}"),
    ("achieved_GBps", "GB/s", "{:,.0f}"),
    ("pct_hbm", "%HBM", "{:.0f}%"),
    ("pct_of_hbm_limit", "%HBM", "{:.0f}%"),
    ("speedup_vs_reference", "×eager-ref", "{:.1f}"),
    ("speedup_vs_compile", "×compiled-ref", "{:.2f}"),
    ("x_paper", "×paper path", "{:.2f}"),
    ("TFLOP_per_s", "TFLOP/s", "{:,.1f}"),
    ("mfu_pct", "MFU", "{:.1f}%"),
    ("peak_mem_mb", "peak MiB", "{:,.0f}"),
    ("streams_30fps", "streams@30fps", "{:d}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
)


def machine_info() -> dict:
    import torch

    info = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for mod in ("triton", "xformers", "nvidia.dali"):
        try:
            info[mod] = __import__(mod, fromlist=["__version__"]).__version__
        except Exception:
            info[mod] = None
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:
        info["commit"] = None
    return info


def run_suite(
    bench_dir: Path, suite: str, device: str, quick: bool, workdir: Path, timeout: float | None = None
) -> tuple[list[dict], int]:
    """Run one suite; return its rows (one per test case) and pytest's exit code."""
    path = bench_dir / f"test_{suite}.py"
    if not path.is_file():
        return [{"suite": suite, "case": "-", "status": "skipped", "reason": f"{path.name} does not exist yet"}], 0
    bjson, junit = workdir / f"{suite}.json", workdir / f"{suite}.xml"
    cmd = [sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider", f"--device={device}",
           f"--benchmark-json={bjson}", f"--junitxml={junit}", "--benchmark-disable-gc"]  # fmt: skip
    if quick:
        cmd.append("--quick")
    try:
        rc = subprocess.call(cmd, cwd=bench_dir.parent, timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = -1
    figures = {}
    try:  # a suite stopped by its time limit leaves an empty or partial file
        benchmarks = json.loads(bjson.read_text()).get("benchmarks", []) if bjson.is_file() else []
    except json.JSONDecodeError:
        benchmarks = []
    for b in benchmarks:
        figures[b["name"]] = {"group": b.get("group"), "median_s": b["stats"]["median"], **b.get("extra_info", {})}
    rows = []
    try:
        cases = list(ET.parse(junit).getroot().iter("testcase")) if junit.is_file() else []
    except ET.ParseError:
        cases = []
    if cases:
        for case in cases:
            name = case.get("name")
            row = {"suite": suite, "case": name, "status": "passed"}
            for tag in ("failure", "error", "skipped"):
                el = case.find(tag)
                if el is not None:
                    row["status"] = "skipped" if tag == "skipped" else "failed"
                    row["reason"] = (el.get("message") or "").splitlines()[0][:160] if el.get("message") else tag
            if row["status"] == "passed":
                row.update(figures.get(name, {}))
            rows.append(row)
    if rc == -1:
        rows.append({"suite": suite, "case": "-", "status": "failed", "reason": f"timed out after {timeout:.0f} s"})
    return rows, rc


def add_ratios(rows: list[dict]) -> None:
    """Within each benchmark group: speed-up against the group's reference case (or its slowest case)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("median_s") and r.get("group"):
            groups.setdefault(f"{r['suite']}/{r['group']}", []).append(r)
    for members in groups.values():
        if len(members) < 2 or any("speedup_vs_reference" in r for r in members):
            continue  # a suite that measures its own references (kernels) reports its own ratios
        anchors = [r for r in members if any(m in r["case"] for m in BASELINE_MARKERS)]
        base = max(anchors or members, key=lambda r: r["median_s"])
        for r in members:
            r["speedup"] = base["median_s"] / r["median_s"]
            r["speedup_vs"] = base["case"]


def collapse_skips(rows: list[dict]) -> list[dict]:
    """One table line per (suite, skip reason) instead of one per skipped case."""
    out, seen = [], {}
    for r in rows:
        if r["status"] != "skipped":
            out.append(r)
            continue
        key = (r["suite"], r.get("reason", ""))
        if key in seen:
            seen[key]["n"] += 1
        else:
            seen[key] = {**r, "n": 1}
            out.append(seen[key])
    for r in seen.values():
        r["case"] = f"({r['n']} case{'s' if r['n'] > 1 else ''})"
    return out


def table(rows: list[dict]) -> str:
    rows = collapse_skips(rows)
    titles = list(dict.fromkeys(t for k, t, _ in FIGURES if any(k in r for r in rows)))
    cols = ["suite", "case", "status", "ms", *titles, "×", "note"]
    lines = []
    for r in rows:
        cells = {"suite": r["suite"], "case": r["case"], "status": r["status"], "note": r.get("reason", "")}
        cells["ms"] = f"{r['median_s'] * 1e3:.3f}" if r.get("median_s") else ""
        for key, title, fmt in FIGURES:
            v = r.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool) and not cells.get(title):
                cells[title] = fmt.format(v)
            cells.setdefault(title, "")
        cells["×"] = f"{r['speedup']:.2f}" if "speedup" in r else ""
        if "speedup_vs" in r and r["speedup_vs"] != r["case"]:
            cells["note"] = (cells["note"] + f" vs {r['speedup_vs']}").strip()
        lines.append([cells[c] for c in cols])
    widths = [max(len(c), *(len(line[i]) for line in lines)) if lines else len(c) for i, c in enumerate(cols)]
    fmt_line = lambda cells: "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    out = [fmt_line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [fmt_line(line) for line in lines])


def plot(rows: list[dict], path: Path) -> str | None:
    """Bar chart of the speed-ups (or throughput) per group; ``None`` if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no plot written"
    timed = [r for r in rows if r.get("median_s")]
    if not timed:
        return "nothing was timed: no plot written"
    labels = [f"{r['suite']}: {r['case']}"[:70] for r in timed]
    values = [r.get("speedup", r.get("speedup_vs_reference", 1.0)) for r in timed]
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(timed) + 1.5))
    ax.barh(range(len(timed)), values, color=["tab:green" if v >= 1 else "tab:red" for v in values])
    ax.set_yticks(range(len(timed)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("speed-up vs the group's reference case, or the kernel's eager reference (same run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def parse_timeouts(text: str) -> dict[str, float]:
    """``"300"`` -> every suite 300 s; ``"kernels=200,cores=80"`` -> per suite (others unlimited)."""
    if "=" not in text:
        return {"*": float(text)}
    out = {}
    for part in text.split(","):
        name, _, sec = part.partition("=")
        if name not in SUITES:
            raise argparse.ArgumentTypeError(f"unknown suite {name!r} in --suite-timeout; suites: {', '.join(SUITES)}")
        out[name] = float(sec)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--suite", action="append", choices=SUITES, help="repeatable; default: all")
    p.add_argument("--quick", action="store_true", help="smallest shapes, fewest rounds")
    p.add_argument(
        "--suite-timeout",
        type=parse_timeouts,
        default={},
        help="seconds before a suite is stopped: one number for all, or suite=seconds,... (default: none)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON output (default: bench-<date>-<device>.json)")
    p.add_argument("--report", type=Path, default=None, help="re-render a saved JSON's table and plot")
    args = p.parse_args(argv)
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        rows = [{k: v for k, v in r.items() if k not in ("speedup", "speedup_vs")} for r in saved["rows"]]
        add_ratios(rows)
        saved["rows"] = rows
        return write_outputs(saved, args.report)

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("bench/run.py: --device cuda asked for, but no CUDA device is available; nothing to run.")
        return 0
    bench_dir = Path(__file__).resolve().parent
    info = machine_info()
    rows: list[dict] = []
    codes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for suite in args.suite or SUITES:
            limit = args.suite_timeout.get(suite, args.suite_timeout.get("*"))
            suite_rows, codes[suite] = run_suite(bench_dir, suite, device, args.quick, Path(tmp), limit)
            rows += suite_rows
    add_ratios(rows)
    stamp = dt.date.today().isoformat()
    gpu = (info["gpu"] or "cpu").replace(" ", "-")
    out = args.out or Path(f"bench-{stamp}-{gpu}.json")
    return write_outputs({"machine": info, "device": device, "quick": args.quick, "rows": rows}, out)


def write_outputs(result: dict, out: Path) -> int:
    """Write ``out`` (JSON, atomically), ``out.md`` (the table) and ``out.png`` (the plot); print the table."""
    info, rows = result["machine"], result["rows"]
    atomic_write_text(out, json.dumps(result, indent=1))
    text = table(rows)
    header = f"{info['gpu'] or 'CPU'} · torch {info['torch']} · triton {info['triton']} · commit {info['commit']}"
    out.with_suffix(".md").write_text(f"{header}\n\n{text}\n")
    print(text)
    note = plot(rows, out.with_suffix(".png"))
    print(f"\nwrote {out}, {out.with_suffix('.md')}" + (f"; {note}" if note else f", {out.with_suffix('.png')}"))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        print(f"{len(failed)} case(s) FAILED their correctness gate or errored: no speed is reported for them.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
