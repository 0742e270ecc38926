"""AdamW with the reference code's parameter groups and a cosine learning-rate schedule with linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from coldstream.errors import InputError

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.RMSNorm)


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    readout_lr: float | None = None,
    weight_decay: float = 0.05,
    readout_prefixes: Sequence[str] = ("readout", "head"),
) -> list[dict]:
    """Parameter groups: weight decay on matrices (ndim >= 2) only; none on biases, norm parameters, 1-D tensors,
    position embeddings and tensors marked ``_no_weight_decay`` (mamba-ssm's convention, which Mamba's ``A_log`` and
    ``D`` carry: decaying ``A_log`` towards 0 would pull every channel's decay rate towards ``A = -1`` and erase the
    spread of time scales its initialisation sets); the readout (parameters whose name starts with one of
    ``readout_prefixes``) in its own pair of groups with its own learning rate. Frozen parameters are left out. Each
    group carries a ``name`` for logs and checkpoints."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORM_TYPES) for p in m.parameters(recurse=False)}
    buckets: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": [], "readout_decay": [], "readout_no_decay": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bare = name.removeprefix("module.")
        is_readout = any(bare == r or bare.startswith(r + ".") for r in readout_prefixes)
        decays = (
            p.ndim >= 2
            and id(p) not in norm_params
            and not bare.endswith("pos_embed")
            and not getattr(p, "_no_weight_decay", False)
        )
        buckets[("readout_" if is_readout else "") + ("decay" if decays else "no_decay")].append(p)
    rl = lr if readout_lr is None else readout_lr
    spec = {
        "decay": (lr, weight_decay),
        "no_decay": (lr, 0.0),
        "readout_decay": (rl, weight_decay),
        "readout_no_decay": (rl, 0.0),
    }
    return [
        {"name": k, "params": v, "lr": spec[k][0], "initial_lr": spec[k][0], "weight_decay": spec[k][1]}
        for k, v in buckets.items()
        if v
    ]


def build_optimizer(model: nn.Module, cfg) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` from an :class:`~coldstream.train.config.OptimConfig`."""
    groups = param_groups(model, lr=cfg.lr, readout_lr=cfg.readout_lr, weight_decay=cfg.weight_decay)
    if not groups:
        raise InputError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def cosine_with_warmup(step: int, total: int, warmup: int, min_frac: float = 0.0) -> float:
    """Multiplier of the peak lr at ``step`` (0-based): linear from 1/(warmup+1) to 1, then cosine down to min_frac."""
    if warmup > 0 and step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return min_frac + (1.0 - min_frac) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine schedule with ``cfg.warmup_frac`` of ``total_steps`` as linear warm-up, per parameter group."""
    warmup = int(round(cfg.warmup_frac * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, total_steps, warmup, cfg.min_lr_frac)
    )
