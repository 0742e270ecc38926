"""Run by tests/train/test_distributed.py under torchrun (2 gloo processes) or as one plain process.

Trains the tiny model of the trainer tests with a global batch of 8 and writes the final weights to argv[1].
"""

import sys

import torch

from coldstream.train.config import load_job_config
from coldstream.train.distributed import init_distributed, shutdown
from coldstream.train.tasks import ClassificationObjective
from coldstream.train.trainer import Trainer
from tests.train.test_trainer import TinyClipModel, _data


class NoDropout(TinyClipModel):
    """Dropout masks are drawn per rank, so the equality check uses a model without dropout."""

    def __init__(self):
        super().__init__()
        self.drop = torch.nn.Identity()


def main(out: str, run_dir: str) -> None:
    info = init_distributed("cpu")
    cfg = load_job_config(None, [f"train.out_dir={run_dir}", "train.epochs=2", "train.batch_size=8",
                                 "train.progress=false", "train.resume=false", "optim.lr=0.01"])  # fmt: skip
    torch.manual_seed(123)
    trainer = Trainer(NoDropout(), ClassificationObjective(3), _data(40, 0), _data(12, 1), cfg, dist=info)
    trainer.fit()
    if info.is_main:
        torch.save({"state": trainer.model.state_dict(), "history": trainer.history}, out)
    shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
