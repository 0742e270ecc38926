"""Run by tests/train/test_distributed.py under torchrun (2 gloo processes) or as one plain process.

Trains a model with a global batch of 8 and writes the final weights to argv[1]: the tiny model of the trainer tests,
or (argv[3] == "video") a VideoModel, frozen encoder included, from features.
"""

import sys

import torch

from coldstream.model import ModelConfig, VideoModel
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


def video_model() -> VideoModel:
    config = ModelConfig(encoder="efficientnet_lite0_s16", frame_size=32, core="gmmix", core_dim=16, core_layers=1,
                         core_options={"spatial_dropout": 0.0, "mamba_dropout": 0.0, "drop_path": 0.0},
                         readout_options={"num_classes": 3})  # fmt: skip
    return VideoModel.from_config(config)


def feature_data(n: int, seed: int):
    """Clips of cached-feature shape [T=4, K=1, N=5, D=112] (efficientnet_lite0_s16 at 32 px) with labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 1, 5, 112, generator=g)
    y = (x[:, -1, 0, 0, 0] > x[:, 0, 0, 0, 0]).long() + (x[:, :, 0, 1, 1].sum(1) > 0).long()
    return [({"features": x[i]}, y[i]) for i in range(n)]


def main(out: str, run_dir: str, kind: str = "tiny") -> None:
    info = init_distributed("cpu")
    cfg = load_job_config(None, [f"train.out_dir={run_dir}", "train.epochs=2", "train.batch_size=8",
                                 "train.progress=false", "train.resume=false", "optim.lr=0.01"])  # fmt: skip
    torch.manual_seed(123)
    if kind == "video":
        model, train, test = video_model(), feature_data(40, 0), feature_data(12, 1)
    else:
        model, train, test = NoDropout(), _data(40, 0), _data(12, 1)
    trainer = Trainer(model, ClassificationObjective(3), train, test, cfg, dist=info)
    trainer.fit()
    if info.is_main:
        torch.save({"state": trainer.model.state_dict(), "history": trainer.history}, out)
    shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
