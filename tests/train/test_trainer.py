"""Trainer: parameter groups, schedule, exact resume after a kill, interrupted runs, foreign checkpoints."""

import json

import pytest
import torch
from torch import nn

from coldstream.errors import CheckpointError, NonFiniteError, TrainingInterrupted
from coldstream.train.checkpoint import load_model_weights
from coldstream.train.config import JobConfig, load_job_config
from coldstream.train.optim import cosine_with_warmup, param_groups
from coldstream.train.tasks import ClassificationObjective
from coldstream.train.trainer import Trainer


class TinyClipModel(nn.Module):
    """[B, T, D] -> logits, with a norm, a bias, dropout (exercises the RNG state) and a readout."""

    def __init__(self, d: int = 6, classes: int = 3, hidden: int = 8):
        super().__init__()
        self.proj = nn.Linear(d, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.readout = nn.Linear(hidden, classes)

    def forward(self, x):
        h, _ = self.gru(self.norm(self.proj(x)))
        return self.readout(self.drop(h[:, -1]))


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, 6, generator=g)
    y = (x[:, -1, 0] > x[:, 0, 0]).long() + (x[:, :, 1].sum(1) > 0).long()
    return [(x[i], y[i]) for i in range(n)]


def _cfg(tmp_path, name="run", **train):
    over = [
        f"train.out_dir={tmp_path / name}",
        "train.epochs=3",
        "train.batch_size=8",
        "train.progress=false",
        "optim.lr=0.01",
        "optim.readout_lr=0.03",
    ]
    over += [f"train.{k}={v}" for k, v in train.items()]
    return load_job_config(None, over)


def _run(tmp_path, name, on_step=None, **train):
    torch.manual_seed(123)
    model = TinyClipModel()
    t = Trainer(
        model, ClassificationObjective(3), _data(44, 0), _data(16, 1), _cfg(tmp_path, name, **train), on_step=on_step
    )
    return t, t.fit()


class HardKill(BaseException):
    """Stands for SIGKILL: nothing in the trainer catches it, so nothing is saved at the moment of death."""


def test_param_groups_decay_matrices_only():
    groups = {g["name"]: g for g in param_groups(TinyClipModel(), lr=1e-3, readout_lr=5e-3, weight_decay=0.05)}
    shapes = {k: sorted(tuple(p.shape) for p in g["params"]) for k, g in groups.items()}
    assert shapes["readout_decay"] == [(3, 8)] and shapes["readout_no_decay"] == [(3,)]
    assert (8, 6) in shapes["decay"] and all(len(s) == 2 for s in shapes["decay"])
    assert all(len(s) == 1 for s in shapes["no_decay"]) and len(shapes["no_decay"]) == 5  # biases + LN w/b
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    assert groups["readout_decay"]["lr"] == 5e-3 and groups["decay"]["lr"] == 1e-3


def test_mamba_a_log_and_d_are_not_weight_decayed():
    from coldstream.model import build_core

    core = build_core("gmmix", 16, num_layers=1)
    groups = {g["name"]: {id(p) for p in g["params"]} for g in param_groups(core, lr=1e-3)}
    mamba = core.mamba_blocks[0].mamba
    assert id(mamba.A_log) in groups["no_decay"] and id(mamba.D) in groups["no_decay"]  # mamba-ssm's convention
    assert id(mamba.in_proj.weight) in groups["decay"] and id(mamba.x_proj.weight) in groups["decay"]


def test_cosine_with_warmup_shape():
    lrs = [cosine_with_warmup(s, 100, 10) for s in range(100)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0 and max(lrs) == pytest.approx(1.0, abs=1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False)) and lrs[-1] < 1e-3


@pytest.mark.parametrize("log_every", [0, 4])  # losses read back every step, or every 4 (as on a GPU)
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, log_every):
    ref, ref_summary = _run(tmp_path, "ref")

    def kill(trainer, step):
        if step == 7:  # mid-epoch 1 (5 steps per epoch); last checkpoint at step 6
            raise HardKill

    with pytest.raises(HardKill):
        _run(tmp_path, "killed", on_step=kill, ckpt_every=3, log_every=log_every)
    resumed, summary = _run(tmp_path, "killed", ckpt_every=3, log_every=log_every)
    assert summary["steps"] == ref_summary["steps"] == 15
    for (k, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert resumed.history == ref.history
    steps = [r["step"] for r in resumed.log.read() if r["kind"] == "train"]
    assert steps == list(range(1, 16))  # the log reads like an uninterrupted run's


def test_prefetching_and_delayed_loss_readback_change_nothing(tmp_path):
    ref, _ = _run(tmp_path, "ref", prefetch=0)
    other, _ = _run(tmp_path, "other", prefetch=3, log_every=4)
    assert all(torch.equal(a, b) for a, b in zip(ref.model.parameters(), other.model.parameters(), strict=True))

    def losses(t):
        return [(r["step"], r["loss"], r["lr"]) for r in t.log.read() if r["kind"] == "train"]

    assert losses(ref) == losses(other)


def test_a_non_finite_loss_stops_the_run_naming_its_step(tmp_path):
    def poison(trainer, step):
        if step == 2:
            with torch.no_grad():
                trainer.model.readout.bias.fill_(float("nan"))

    with pytest.raises(NonFiniteError, match="at step 3"):
        _run(tmp_path, "nan", on_step=poison, log_every=4)


def test_interrupted_run_saves_its_progress(tmp_path):
    def ctrl_c(trainer, step):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="step 4/15.*resume"):
        _run(tmp_path, "int", on_step=ctrl_c)
    blob = torch.load(tmp_path / "int" / "last.pt", weights_only=True)  # plain values and tensors only
    assert blob["step"] == 4
    ref, _ = _run(tmp_path, "ref")
    resumed, _ = _run(tmp_path, "int")
    assert all(torch.equal(a, b) for a, b in zip(ref.model.parameters(), resumed.model.parameters(), strict=True))


def test_outputs_metrics_config_and_learning(tmp_path):
    t, summary = _run(tmp_path, "out", epochs=8)
    out = tmp_path / "out"
    assert (out / "config.yaml").exists() and load_job_config(out / "config.yaml").train.epochs == 8
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert len(evals) == 8 and all(0 <= r["accuracy"] <= 1 for r in evals)
    losses = [r["loss"] for r in recs if r["kind"] == "train"]
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])  # it learns
    assert recs[-1]["kind"] == "summary"


@pytest.mark.parametrize(("every", "evaluated"), [(0, [5]), (2, [2, 4, 5])])
def test_eval_every_evaluates_those_epochs_and_always_the_last(tmp_path, every, evaluated):
    _, summary = _run(tmp_path, "ev", epochs=5, eval_every=every)
    recs = [json.loads(x) for x in (tmp_path / "ev" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs if r["kind"] == "eval"] == evaluated
    assert summary["final"]["epoch"] == 5 and "accuracy" in summary["final"]


def test_checkpoint_from_another_model_is_refused(tmp_path):
    t, _ = _run(tmp_path, "a", epochs=1)
    with pytest.raises(CheckpointError, match="mis-shaped .* key"):
        load_model_weights(t.ckpt_path, TinyClipModel(hidden=16))
    cfg = t.model_config()
    with pytest.raises(CheckpointError, match="core: checkpoint 'gmmix', this run 'rvmrnn'"):
        load_model_weights(t.ckpt_path, TinyClipModel(), {**cfg, "core": "rvmrnn"})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model_weights(tmp_path / "junk.pt", TinyClipModel())


def test_config_overrides_and_unknown_keys(tmp_path):
    cfg = load_job_config(None, ["optim.lr=3e-4", "model.core=rvmrnn", "optim.betas=[0.9, 0.95]"])
    assert cfg.optim.lr == 3e-4 and cfg.model.core == "rvmrnn" and cfg.optim.betas == (0.9, 0.95)
    assert isinstance(cfg, JobConfig)
    with pytest.raises(ValueError, match="unknown key"):
        load_job_config(None, ["train.epoch=3"])
    with pytest.raises(ValueError, match="key=value"):
        load_job_config(None, ["train.epochs"])
