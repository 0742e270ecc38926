"""Distributed runs: ``torchrun --nproc_per_node=N -m coldstream.train ...`` (NCCL on GPU, gloo on CPU).

The global batch is fixed by the config; each of the ``world`` ranks takes every ``world``-th clip of each global
batch, and DistributedDataParallel averages gradients, so N processes take the same steps as one process with the
same global batch (exactly, for models without batch statistics; BatchNorm becomes SyncBatchNorm on GPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from coldstream.errors import BackendError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(pref: str = "auto", local_rank: int = 0) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cuda":
        if not torch.cuda.is_available():
            raise BackendError("device=cuda was asked for but no CUDA GPU is available (use train.device=cpu)")
        return torch.device("cuda", local_rank)
    return torch.device(pref)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); otherwise a single-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world=world, local_rank=local, device=dev)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel when world > 1 (SyncBatchNorm on GPU), the model itself otherwise."""
    if info.world <= 1:
        return model
    if info.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[info.device.index])
    return nn.parallel.DistributedDataParallel(model)


def all_reduce_sums(sums: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Sum a dict of floats over ranks (identity in a single process)."""
    if info.world <= 1 or not sums:
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist(), strict=True))


def barrier(info: DistInfo) -> None:
    if info.world > 1 and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
