"""The training loop: AdamW groups, cosine warm-up, bf16 autocast on GPU, clipping, full BPTT, eval each epoch,
JSON-lines metrics, a progress bar, atomic checkpoints and exact resume.

The model is called as ``model(**inputs)`` when a dataset item's inputs are a dict (a ``VideoModel`` gets
``{"features": [T, K, N, D]}`` from the feature cache, plus any task inputs), else as ``model(inputs)``.

Determinism: the order of clips in epoch ``e`` is a permutation drawn from a generator seeded with ``(seed, e)``,
so it does not depend on how the run got there; the global RNG states (dropout, augmentation) are saved in each
checkpoint. A run killed mid-epoch and resumed from its last checkpoint therefore takes exactly the steps of an
uninterrupted run (on CPU in deterministic mode; ``tests/train/test_trainer.py`` checks it bit for bit).
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import default_collate

from coldstream.config import save_config, to_dict
from coldstream.errors import InputError, NonFiniteError, TrainingInterrupted
from coldstream.train.checkpoint import load_model_weights, rng_state, save_checkpoint, set_rng_state
from coldstream.train.config import JobConfig
from coldstream.train.distributed import DistInfo, all_reduce_sums, barrier, wrap_model
from coldstream.train.loader import Prefetcher, to_device
from coldstream.train.metrics import MetricsLog
from coldstream.train.optim import build_optimizer, build_scheduler
from coldstream.train.progress import progress


class Objective(Protocol):
    """What the trainer needs from a task: its loss and metrics (``coldstream.train.tasks.Objective``). An objective
    that is also an ``nn.Module`` with parameters (learned loss weights) is optimised with the model: its parameters
    form the optimiser's ``objective`` group (no weight decay) and its state travels in the checkpoint."""

    def loss(self, outputs, targets) -> torch.Tensor: ...

    def metric_sums(self, outputs, targets) -> dict[str, float]: ...  # additive over batches, includes "n"

    def summarize(self, sums: dict[str, float]) -> dict[str, float]: ...  # e.g. {"accuracy": correct / n}


def call_model(model: nn.Module, inputs):
    """``model(**inputs)`` for a dict of inputs, ``model(inputs)`` otherwise."""
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def autocast_context(amp: str, device: torch.device):
    """bf16 autocast for ``amp="bf16"``, or ``"auto"`` on CUDA; no autocast otherwise."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    objective: Objective,
    dataset: Sequence | None,
    *,
    batch_size: int = 32,
    dist: DistInfo | None = None,
    amp: str = "auto",
) -> dict[str, float]:
    """``objective``'s metrics of ``model`` over ``dataset`` (a sequence of ``(inputs, target)``), in eval mode,
    sharded over ranks and summed; ``{}`` for an empty or missing dataset."""
    if dataset is None or len(dataset) == 0:
        return {}
    dist = dist or DistInfo()
    model.eval()
    sums: dict[str, float] = {}
    mine = list(range(len(dataset)))[dist.rank :: dist.world]
    for k in range(0, len(mine), batch_size):
        x, y = default_collate([dataset[i] for i in mine[k : k + batch_size]])
        x, y = to_device(x, dist.device, torch.float32), to_device(y, dist.device)
        with autocast_context(amp, dist.device):
            out = call_model(model, x)
        for name, v in objective.metric_sums(out, y).items():
            sums[name] = sums.get(name, 0.0) + v
    return objective.summarize(all_reduce_sums(sums, dist))


def objective_parameters(objective) -> list[nn.Parameter]:
    """The trainable parameters of an objective that is an ``nn.Module`` (none otherwise)."""
    return [p for p in objective.parameters() if p.requires_grad] if isinstance(objective, nn.Module) else []


def average_gradients(params: Sequence[nn.Parameter], dist: DistInfo) -> None:
    """Average the gradients of ``params`` over ranks (parameters outside DistributedDataParallel)."""
    import torch.distributed as tdist

    for p in params:
        if p.grad is not None:
            tdist.all_reduce(p.grad)
            p.grad.div_(dist.world)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The clip order of one epoch: a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


class Trainer:
    """Trains ``model`` on ``train_set`` (a sequence of ``(inputs, target)``) and evaluates on ``eval_set``.

    Args:
        model: maps a collated batch of inputs to outputs (see the module docstring); the readout's parameters are
            named ``readout.*``.
        objective: loss and metrics (:class:`Objective`).
        cfg: the resolved :class:`~coldstream.train.config.JobConfig` (optim + train sections are used here).
        dist: rank/world/device (single CPU process by default).
        on_step: called as ``on_step(trainer, global_step)`` after every optimizer step (tests use it to kill a run).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        train_set: Sequence,
        eval_set: Sequence | None,
        cfg: JobConfig,
        *,
        dist: DistInfo | None = None,
        on_step: Callable[[Trainer, int], None] | None = None,
    ):
        self.cfg = cfg
        self.tc = cfg.train
        self.dist = dist or DistInfo()
        self.objective = objective
        self.train_set = train_set
        self.eval_set = eval_set
        self.on_step = on_step
        self.out_dir = Path(self.tc.out_dir)
        if self.tc.batch_size % self.dist.world:
            raise InputError(f"global batch {self.tc.batch_size} must be divisible by the {self.dist.world} ranks")
        if len(train_set) == 0:
            raise InputError("the training set is empty")
        torch.manual_seed(self.tc.seed)
        if self.tc.deterministic and self.dist.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.model = model.to(self.dist.device)
        self.ddp_model = wrap_model(self.model, self.dist)
        self.steps_per_epoch = max(1, len(train_set) // self.tc.batch_size)
        self.total_steps = self.steps_per_epoch * self.tc.epochs
        self.optimizer = build_optimizer(self.model, cfg.optim)
        if isinstance(objective, nn.Module):
            objective.to(self.dist.device)
        self.objective_params = objective_parameters(objective)
        if self.objective_params:
            lr = cfg.optim.lr
            self.optimizer.add_param_group(
                {"name": "objective", "params": self.objective_params, "lr": lr, "initial_lr": lr, "weight_decay": 0.0}
            )
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, cfg.optim)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict] = []
        self.log = MetricsLog(self.out_dir / "metrics.jsonl", enabled=self.dist.is_main)
        self._stop_signal: int | None = None

    # ----------------------------------------------------------------------------------------------- checkpoints
    @property
    def ckpt_path(self) -> Path:
        return self.out_dir / "last.pt"

    def model_config(self) -> dict:
        """The model's own config (a ``VideoModel`` built from one), else the job's model section."""
        config = getattr(self.model, "config", None)
        return to_dict(config if config is not None else self.cfg.model)

    def save(self, path: Path | None = None) -> Path | None:
        if not self.dist.is_main:
            return None
        extra = {"objective": self.objective.state_dict()} if isinstance(self.objective, nn.Module) else {}
        return save_checkpoint(
            path or self.ckpt_path,
            self.model,
            model_config=self.model_config(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            step=self.step,
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
            rng=rng_state(),
            history=self.history,
            config=to_dict(self.cfg),
            **extra,
        )

    def resume(self, path: Path | None = None) -> bool:
        """Load ``path`` (default ``out_dir/last.pt``) when it exists; True when resumed."""
        path = path or self.ckpt_path
        if not path.exists():
            return False
        blob = load_model_weights(path, self.model, self.model_config())
        if isinstance(self.objective, nn.Module) and "objective" in blob:
            self.objective.load_state_dict(blob["objective"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        self.step, self.epoch, self.batch_in_epoch = blob["step"], blob["epoch"], blob["batch_in_epoch"]
        self.history = list(blob.get("history", []))
        set_rng_state(blob["rng"])
        self.log.truncate_after(self.step)
        return True

    # ------------------------------------------------------------------------------------------------ the loop
    def _local(self, idx: list[int]) -> list[int]:
        return idx[self.dist.rank :: self.dist.world]

    def train_step(self, inputs, targets) -> torch.Tensor:
        """One optimizer step; returns the loss as a 0-d tensor on the device (reading it is a host sync)."""
        self.ddp_model.train()
        with autocast_context(self.tc.amp, self.dist.device):
            out = call_model(self.ddp_model, inputs)
            loss = self.objective.loss(out, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # full back-propagation through the whole clip
        if self.objective_params and self.dist.world > 1:  # not under DDP: average their gradients by hand
            average_gradients(self.objective_params, self.dist)
        if self.cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def evaluate(self, dataset: Sequence | None = None, batch_size: int | None = None) -> dict[str, float]:
        """Task metrics over ``dataset`` (default: the eval set), sharded over ranks and summed."""
        dataset = self.eval_set if dataset is None else dataset
        return evaluate(
            self.model, self.objective, dataset, batch_size=batch_size or self.tc.batch_size, dist=self.dist,
            amp=self.tc.amp,
        )  # fmt: skip

    def _write_losses(self, pending: list, bar) -> None:
        """Read the pending steps' losses back (one host sync for all), log them, stop at a non-finite one."""
        if not pending:
            return
        values = torch.stack([loss.float() for *_, loss in pending]).tolist()
        for (epoch, step, lr, _), loss in zip(pending, values, strict=True):
            if not math.isfinite(loss):
                raise NonFiniteError(f"loss is {loss} at step {step}; lower optim.lr")
            self.log.write("train", epoch=epoch, step=step, loss=loss, lr=lr)
        bar.set_postfix(loss=f"{values[-1]:.3f}", epoch=pending[-1][0])
        pending.clear()

    def _handle_signal(self, signum, frame):
        self._stop_signal = signum

    def fit(self) -> dict:
        """Train to the end (resuming first when ``train.resume`` and a checkpoint exist); returns the summary."""
        if self.dist.is_main:
            save_config(self.cfg, self.out_dir / "config.yaml")
        resumed = self.tc.resume and self.resume()
        if not resumed:
            self.log.truncate_after(-1)  # a fresh run starts a fresh log
        if resumed and self.dist.is_main:
            print(f"resumed from {self.ckpt_path} at epoch {self.epoch}, step {self.step}/{self.total_steps}")
        old = signal.signal(signal.SIGTERM, self._handle_signal) if self.dist.is_main else None
        bar = progress(self.total_steps, desc="train", unit="step", enabled=self.tc.progress and self.dist.is_main)
        bar.update(self.step)
        t0, clips = time.perf_counter(), 0
        pending: list[tuple[int, int, float, torch.Tensor]] = []  # (epoch, step, lr, loss on the device)
        read_every = self.tc.log_every or (1 if self.dist.device.type == "cpu" else 20)
        try:
            while self.epoch < self.tc.epochs:
                order = epoch_order(len(self.train_set), self.tc.seed, self.epoch)
                b = self.tc.batch_size
                batches = [
                    self._local(order[k * b : (k + 1) * b]) for k in range(self.batch_in_epoch, self.steps_per_epoch)
                ]
                for x, y in Prefetcher(self.train_set, batches, self.dist.device, depth=self.tc.prefetch):
                    x, y = to_device(x, self.dist.device, torch.float32), to_device(y, self.dist.device)
                    loss = self.train_step(x, y)
                    self.step += 1
                    self.batch_in_epoch += 1
                    clips += b
                    bar.update(1)
                    pending.append((self.epoch, self.step, self.scheduler.get_last_lr()[0], loss))
                    checkpoint = self.tc.ckpt_every and self.step % self.tc.ckpt_every == 0
                    if checkpoint or self.step % read_every == 0:
                        self._write_losses(pending, bar)
                    if checkpoint:
                        self.save()
                    if self.on_step is not None:
                        self.on_step(self, self.step)
                    if self._stop_signal is not None:
                        raise KeyboardInterrupt
                self._write_losses(pending, bar)
                self.epoch += 1
                self.batch_in_epoch = 0
                every = self.tc.eval_every
                if self.epoch == self.tc.epochs or (every and self.epoch % every == 0):
                    rec = {"epoch": self.epoch, "step": self.step, **self.evaluate()}
                    self.history.append(rec)
                    self.log.write("eval", **rec)
                self.save()
                barrier(self.dist)
        except KeyboardInterrupt:
            self._write_losses(pending, bar)
            path = self.save()
            raise TrainingInterrupted(
                f"interrupted at epoch {self.epoch}, step {self.step}/{self.total_steps}; progress saved to {path}. "
                f"Run the same command again to resume."
            ) from None
        finally:
            bar.close()
            if old is not None:
                signal.signal(signal.SIGTERM, old)
        seconds = time.perf_counter() - t0
        summary = {
            "steps": self.step,
            "epochs": self.epoch,
            "train_seconds": seconds,
            "clips_per_s": clips / seconds if seconds > 0 and clips else float("nan"),
            "final": self.history[-1] if self.history else {},
        }
        if self.dist.is_main:
            self.log.write("summary", step=self.step, **{k: v for k, v in summary.items() if k != "final"})
        return summary
