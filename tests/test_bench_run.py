"""The benchmark runner (bench/run.py): ratios against each group's reference, failures without a speed."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).resolve().parents[1] / "bench" / "run.py")
bench_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_run)
add_ratios, collapse_skips, table = bench_run.add_ratios, bench_run.collapse_skips, bench_run.table


def test_ratios_are_against_the_groups_reference_case_and_failures_have_no_speed():
    rows = [
        {"suite": "kernels", "case": "scan[reference]", "status": "passed", "group": "g", "median_s": 0.010},
        {"suite": "kernels", "case": "scan[triton]", "status": "passed", "group": "g", "median_s": 0.001},
        {"suite": "kernels", "case": "scan[compile]", "status": "passed", "group": "g", "median_s": 0.004},
        {"suite": "kernels", "case": "blend[triton]", "status": "failed", "reason": "mismatch"},
        {"suite": "io", "case": "dali[a]", "status": "skipped", "reason": "DALI missing"},
        {"suite": "io", "case": "dali[b]", "status": "skipped", "reason": "DALI missing"},
    ]
    kernel = {"suite": "kernels", "status": "passed", "group": "h", "median_s": 1.0, "speedup_vs_reference": 3.0}
    own = [{**kernel, "case": c} for c in ("a", "b")]
    add_ratios(own)
    assert all("speedup" not in r for r in own)
    add_ratios(rows)
    assert rows[1]["speedup"] == 10.0 and rows[2]["speedup"] == 2.5 and rows[0]["speedup"] == 1.0
    assert "speedup" not in rows[3]
    assert [r["case"] for r in collapse_skips(rows) if r["status"] == "skipped"] == ["(2 cases)"]
    text = table(rows)
    failed_line = next(line for line in text.splitlines() if "blend[triton]" in line)
    assert "failed" in failed_line and "mismatch" in failed_line and "ms" not in failed_line
