"""Two gloo processes under torchrun take the same steps as one process with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", COLDSTREAM_NO_PROGRESS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def test_two_cpu_processes_match_one(tmp_path):
    worker = str(ROOT / "tests" / "train" / "ddp_worker.py")
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, worker, str(one), str(tmp_path / "r1")], check=True, env=_env(), timeout=120)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", worker, str(two),
           str(tmp_path / "r2")]  # fmt: skip
    r = subprocess.run(cmd, env=_env(), timeout=180, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = torch.load(one), torch.load(two)
    for k in a["state"]:
        torch.testing.assert_close(a["state"][k], b["state"][k], atol=1e-5, rtol=1e-4, msg=k)
    # evaluation is sharded over the ranks and summed: the same accuracy over the same 12 clips
    assert [h["accuracy"] for h in a["history"]] == [h["accuracy"] for h in b["history"]]
    assert b["history"][-1]["n"] == 12
