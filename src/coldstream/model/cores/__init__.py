"""Temporal cores: ``build_core(kind, dim, **options)`` builds one by name from the :data:`CORES` registry.

Every core maps ``[B, T, N, D_in] -> [B, T, N, D]``, strictly causal in t from a zero state, and has an in-place
single-frame ``step`` on a preallocated :class:`CoreState` (see ``base.py``). Cores: ``rvmrnn`` (RVM's gated
transformer core), ``mamba`` (M), ``mambamix`` (MMix), ``gmmix`` (GMMix), and the baselines ``identity`` (one frame
at a time) and ``meanpool`` (the running mean of the frames, blind to their order).
"""

from __future__ import annotations

from coldstream.model.cores import gmmix, identity, mamba, mambamix, meanpool, rvmrnn  # noqa: F401  (registration)
from coldstream.model.cores.base import CORES, TemporalCore
from coldstream.model.cores.gmmix import GatedMambaMixCore
from coldstream.model.cores.identity import IdentityCore
from coldstream.model.cores.mamba import MambaCore
from coldstream.model.cores.mambamix import MambaMixCore
from coldstream.model.cores.meanpool import MeanPoolCore
from coldstream.model.cores.rvmrnn import RVMRNNCore
from coldstream.model.cores.state import CoreState


def build_core(kind: str, dim: int, **options) -> TemporalCore:
    """Build a temporal core with the paper's defaults (4 layers; d_state 16, expand 2, conv 4; dropout as the
    paper), overridable by keyword.

    Args:
        kind: a name of :data:`CORES` (``rvmrnn``, ``mamba``, ``mambamix``, ``gmmix``, ``identity``, ``meanpool``) or
            an alias (``m``, ``mmix``, ``gatedmambamix``, ``none``, the reference's ``dinov3_*`` names).
        dim: core width D (= the encoder width in the paper).
        **options: the core's keyword arguments, e.g. ``num_layers``, ``num_heads`` (rvmrnn), ``d_state``,
            ``expand``, ``d_conv``, ``mamba_dropout``, ``spatial_heads``, ``drop_path``, ``in_dim`` (an input
            projection ``in_dim -> dim``), ``attention``. An unknown option is refused with the accepted ones.

    Returns:
        the core: ``core(x [B, T, N, in_dim]) -> [B, T, N, dim]``; ``core.init_state(B, N)``; ``core.step``.
    """
    return CORES.create(kind, dim, **options)


__all__ = [
    "CORES",
    "CoreState",
    "GatedMambaMixCore",
    "IdentityCore",
    "MambaCore",
    "MambaMixCore",
    "MeanPoolCore",
    "RVMRNNCore",
    "TemporalCore",
    "build_core",
]
