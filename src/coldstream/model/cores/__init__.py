"""Temporal cores (SPEC §3): ``build_core(kind, dim, **options)``, their state, and reference-weight loading."""

from __future__ import annotations

from coldstream.model.cores.base import TemporalCore
from coldstream.model.cores.gmmix import GatedMambaMixCore
from coldstream.model.cores.identity import IdentityCore
from coldstream.model.cores.loading import guess_core_kind, load_reference_state_dict, load_rvm_core_init
from coldstream.model.cores.mamba import MambaCore
from coldstream.model.cores.mambamix import MambaMixCore
from coldstream.model.cores.rvmrnn import RVMRNNCore
from coldstream.model.cores.state import CoreState

CORES: dict[str, type[TemporalCore]] = {
    "rvmrnn": RVMRNNCore,
    "mamba": MambaCore,
    "mambamix": MambaMixCore,
    "gmmix": GatedMambaMixCore,
    "identity": IdentityCore,
}
ALIASES = {
    "m": "mamba",
    "mmix": "mambamix",
    "gatedmambamix": "gmmix",
    "none": "identity",
    "dinov3_rvmrnn": "rvmrnn",
    "dinov3_mamba": "mamba",
    "dinov3_mambamix": "mambamix",
    "dinov3_gatedmambamix": "gmmix",
}
RVM_HEADS_BY_WIDTH = {1024: 16, 768: 12, 384: 8}  # RVMRNN heads scale with the encoder size (SPEC §3.0)


def build_core(kind: str, dim: int, **options) -> TemporalCore:
    """Build a temporal core with the paper's defaults (SPEC §3.0), overridable by keyword.

    Args:
        kind: ``rvmrnn``, ``mamba`` (M), ``mambamix`` (MMix), ``gmmix`` (GMMix) or ``identity``
            (aliases ``m``, ``mmix``, ``gatedmambamix``, ``none`` and the reference ``dinov3_*`` names).
        dim: core width D (= the encoder width in the paper).
        **options: per-core options, e.g. ``num_layers``, ``num_heads`` (rvmrnn; default 16/12/8 for D =
            1024/768/384, else D/64), ``d_state``, ``expand``, ``d_conv``, ``mamba_dropout``, ``spatial_heads``,
            ``drop_path``, and ``in_dim`` for an input projection ``in_dim -> dim``.

    Returns:
        the core: ``core(x [B, T, N, in_dim]) -> [B, T, N, dim]``; ``core.init_state(B, N)``; ``core.step``.
    """
    key = ALIASES.get(kind.lower(), kind.lower()) if isinstance(kind, str) else kind
    if key not in CORES:
        raise ValueError(f"unknown core kind {kind!r}; expected one of {sorted(CORES)} (or aliases {sorted(ALIASES)})")
    cls = CORES[key]
    if key == "rvmrnn" and "num_heads" not in options:
        if dim in RVM_HEADS_BY_WIDTH:
            options["num_heads"] = RVM_HEADS_BY_WIDTH[dim]
        elif dim % 64 == 0:
            options["num_heads"] = dim // 64
        else:
            raise ValueError(f"rvmrnn: no default head count for D={dim}; pass num_heads=")
    try:
        return cls(dim, **options)
    except TypeError as err:
        import inspect

        accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "dim", "options")]
        if key in ("gmmix",):
            accepted += [p for p in inspect.signature(MambaMixCore.__init__).parameters if p not in ("self", "dim")]
        raise TypeError(
            f"{key} core: bad options {sorted(options)} ({err}); accepted: {sorted(set(accepted))}"
        ) from err


__all__ = [
    "ALIASES",
    "CORES",
    "CoreState",
    "GatedMambaMixCore",
    "IdentityCore",
    "MambaCore",
    "MambaMixCore",
    "RVMRNNCore",
    "TemporalCore",
    "build_core",
    "guess_core_kind",
    "load_reference_state_dict",
    "load_rvm_core_init",
]
