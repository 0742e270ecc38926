"""``ModelConfig``: everything that defines a :class:`~coldstream.model.VideoModel`. A model built from a config
keeps it (``model.config``), and every checkpoint stores it, so ``VideoModel.from_checkpoint(path)`` rebuilds the
same model. The defaults are the offline CPU defaults of ``coldstream train`` (EfficientNet-Lite0, one narrow core
layer, a linear head); ``VideoModel.build`` has the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelConfig:
    """The frozen encoder, the trainable enrichment, core and readout, and the frame size they work at."""

    encoder: str = "efficientnet_lite0"  # frozen encoder (coldstream.model.encoders.ENCODERS)
    encoder_weights: str | None = None  # weights file; None = the packaged weights (Lite0) or random (DINOv3)
    attention: str = "sdpa"  # the backend of every attention in the model: sdpa | xformers | math
    frame_size: int = 128  # frame side S after preprocessing (short-side resize, centre crop)
    enrichment: str = "last"  # how the encoder's K feature depths become one token set: mlp | mean | last
    token_grid: int = 0  # > 0: average-pool the patch grid to token_grid x token_grid tokens before the core
    pos_embed: bool = True  # a learned embedding per token position before the core (conv features carry none)
    core: str = "gmmix"  # temporal core (CORES): rvmrnn | mamba | mambamix | gmmix | identity | meanpool
    core_dim: int | None = 128  # core width (None = the encoder's); an input projection maps to it when they differ
    core_layers: int | None = 1  # core depth for cores with layers (None = the core's default, the paper's 4)
    core_options: dict = field(default_factory=dict)  # other keyword arguments of the core (coldstream.model.cores)
    readout: str = "linear"  # task readout (READOUTS): linear | ssv2 | waymo | pt | scannet | nuscenes
    readout_options: dict = field(default_factory=dict)  # keyword arguments of the readout (e.g. num_classes)
