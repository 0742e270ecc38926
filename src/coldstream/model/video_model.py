"""The video model: frozen encoder -> trainable enrichment -> temporal core -> task readout, causal in time.

One class from training to streaming: the trainer fits it from cached features, evaluation and ``coldstream stream``
run it, the benchmarks time it, and its checkpoints rebuild it with one call (``VideoModel.from_checkpoint``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coldstream.errors import InputError, InputTypeError
from coldstream.model.config import ModelConfig
from coldstream.model.cores import CORES, CoreState, TemporalCore, build_core
from coldstream.model.encoders import build_encoder, build_enrichment
from coldstream.model.encoders.frozen import FrozenEncoder
from coldstream.model.readouts import Readout, ReadoutState, build_readout

ENCODER_PREFIX = "encoder."  # the frozen part of the state dict: never trained, never stored in checkpoints


@dataclass
class StreamState:
    """Everything a batch of streams carries from frame to frame: the core's state (fp32 tensors at fixed
    addresses) and the readout's per-stream extras (Waymo's previous box, the point queries, the frame index)."""

    core: CoreState
    readout: ReadoutState

    @property
    def batch(self) -> int:
        return self.core.batch


class VideoModel(nn.Module):
    """``frames -> frozen encoder features [K] -> enrichment -> (token pooling, position embedding) -> core ->
    readout``.

    Three ways in, all giving the same outputs (eval mode, fp32, up to float rounding):

    * ``model(clip [B, T, 3, H, W], **task_inputs)``: the whole clip (the core runs over time in parallel where it
      can);
    * ``model(features=feats [B, T, K, N, D], **task_inputs)`` (= ``forward_features``): the same from precomputed
      frozen features (what the feature cache stores, ``encoder.features``), so training never runs the backbone;
    * ``state = model.init_state(B)``, ``out_t, state = model.step(frame [B, 3, H, W], state, reset=...)``, or
      ``model.stream(frames)``: frame by frame, B independent streams, each restartable with ``reset`` ``[B]``.

    Task inputs: ``init_box`` ``[B, 4]`` (waymo), ``query_points`` ``[B, (Q,) 2]`` and ``query_frames`` (pt).

    Args:
        encoder: a frozen encoder (``build_encoder``): ``dim``, ``num_depths``, ``features``.
        core: a temporal core (``build_core``); its ``in_dim`` must equal ``encoder.dim``.
        readout: a task readout (``build_readout``) of width ``core.dim``.
        enrichment: the trainable ``[K, B, N, D] -> [B, N, D]`` module; default ``build_enrichment(encoder)``.
        token_grid: > 0 average-pools the square patch grid to ``token_grid x token_grid`` tokens before the core
            (the prefix tokens are kept as they are).
        pos_embed: add a learned embedding per token position before the core (N(0, 0.02²) init): convolutional
            features carry no position, and every core treats a frame's tokens as a set. Needs ``frame_size`` (or
            ``token_grid``) to know N.
        frame_size: the frame side S the model works at (preprocessing, ``init_state``, the position embedding).
    """

    def __init__(
        self,
        encoder: FrozenEncoder,
        core: TemporalCore,
        readout: Readout,
        enrichment: nn.Module | None = None,
        *,
        token_grid: int = 0,
        pos_embed: bool = False,
        frame_size: int | None = None,
    ):
        super().__init__()
        if core.in_dim != encoder.dim:
            raise InputError(
                f"the core takes D={core.in_dim} tokens but the encoder gives D={encoder.dim}; "
                f"build the core with in_dim={encoder.dim}"
            )
        if readout.dim != core.dim:
            raise InputError(f"the readout reads D={readout.dim} but the core outputs D={core.dim}")
        if token_grid < 0:
            raise InputError(f"token_grid must be >= 0 (0 keeps every token), got {token_grid}")
        self.encoder = encoder
        self.enrichment = build_enrichment(encoder) if enrichment is None else enrichment
        self.core = core
        self.readout = readout
        self.token_grid = token_grid
        self.frame_size = frame_size
        self.config: ModelConfig | None = None  # set by from_config; what checkpoints store
        self.meta: dict = {}  # plain values that travel with the model in its checkpoints (e.g. class_names)
        self.encoder_batch_size: int | None = None  # frames per encoder call in clip mode (memory only)
        self._compiled_head = None  # compile_clip: the compiled enrichment + core + readout (not a submodule)
        self.pos_embed = None
        if pos_embed:
            if frame_size is None and not token_grid:
                raise InputError("pos_embed=True needs frame_size (or token_grid) to know how many tokens there are")
            self.pos_embed = nn.Parameter(torch.randn(self.num_tokens(), encoder.dim) * 0.02)

    # ------------------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(cls, config: ModelConfig, encoder: FrozenEncoder | None = None) -> VideoModel:
        """Build the model ``config`` describes. ``encoder``: an already built frozen encoder of that name (the
        training pipeline passes the one it extracted features with)."""
        if not isinstance(config, ModelConfig):
            raise InputTypeError(f"expected a ModelConfig, got {type(config).__name__}")
        if encoder is None:
            encoder = build_encoder(config.encoder, weights=config.encoder_weights, attention=config.attention)
        elif encoder.name != config.encoder:
            raise InputError(f"the encoder given is {encoder.name!r} but the config asks for {config.encoder!r}")
        dim = config.core_dim or encoder.dim
        options = dict(config.core_options)
        if dim != encoder.dim:
            options["in_dim"] = encoder.dim
        if config.core_layers is not None and CORES.accepts(config.core, "num_layers"):
            options.setdefault("num_layers", config.core_layers)
        options.setdefault("attention", config.attention)
        core = build_core(config.core, dim, **options)
        readout_options = {"attention": config.attention, **config.readout_options}
        readout = build_readout(config.readout, dim, **readout_options)
        model = cls(
            encoder,
            core,
            readout,
            build_enrichment(encoder, config.enrichment),
            token_grid=config.token_grid,
            pos_embed=config.pos_embed,
            frame_size=config.frame_size,
        )
        model.config = config
        return model

    @classmethod
    def build(
        cls,
        encoder: str = "dinov3_vitl16",
        core: str = "gmmix",
        task: str = "ssv2",
        weights: str | None = None,
        core_dim: int | None = None,
        attention: str = "sdpa",
        core_options: dict | None = None,
        readout_options: dict | None = None,
        frame_size: int = 224,
        enrichment: str = "mlp",
    ) -> VideoModel:
        """The paper's model from names: ``VideoModel.build("dinov3_vitl16", "gmmix", "ssv2", weights=PATH)``.

        Core depth and widths are the paper's unless ``core_options`` / ``readout_options`` say otherwise;
        ``core_dim``: a core narrower than the encoder, behind an input projection (e.g. 256 for EfficientNet's 1280).
        """
        config = ModelConfig(
            encoder=encoder,
            encoder_weights=weights,
            attention=attention,
            frame_size=frame_size,
            enrichment=enrichment,
            pos_embed=False,
            core=core,
            core_dim=core_dim,
            core_layers=None,
            core_options=dict(core_options or {}),
            readout=task,
            readout_options=dict(readout_options or {}),
        )
        return cls.from_config(config)

    def train(self, mode: bool = True) -> VideoModel:
        super().train(mode)
        self.encoder.eval()  # frozen, always (DINOv3's RoPE jitter must never switch on)
        return self

    def parameter_count(self) -> dict[str, int]:
        """Parameters per part; ``paper`` = encoder + enrichment + core, the paper's counting convention."""
        n = {
            name: sum(p.numel() for p in getattr(self, name).parameters())
            for name in ("encoder", "enrichment", "core", "readout")
        }
        n["paper"] = n["encoder"] + n["enrichment"] + n["core"]
        n["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return n

    # ------------------------------------------------------------------------------------------------- tokens
    def num_tokens(self, frame_size: int | tuple[int, int] | None = None) -> int:
        """Tokens per frame that reach the core, for frames of ``frame_size`` (default: the model's)."""
        if self.token_grid:
            return self.encoder.num_prefix_tokens + self.token_grid**2
        size = self.frame_size if frame_size is None else frame_size
        if size is None:
            raise InputError("the model has no frame_size: pass frame_size=(H, W) or tokens=N")
        h, w = (size, size) if isinstance(size, int) else size
        return self.encoder.num_tokens(h, w)

    def _check_clip(self, clip: torch.Tensor) -> None:
        if not isinstance(clip, torch.Tensor) or clip.ndim != 5 or clip.shape[2] != 3:
            shape = tuple(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__
            raise InputError(f"expected a clip [B, T, 3, H, W] of normalised frames, got {shape}")
        if clip.shape[1] == 0:
            raise InputError(f"the clip has T=0 frames (shape {tuple(clip.shape)})")

    def _check_features(self, feats: torch.Tensor, layout: str) -> None:
        k, d = self.encoder.num_depths, self.encoder.dim
        rank = 5 if layout.startswith("[B, T") else 4
        if not isinstance(feats, torch.Tensor) or feats.ndim != rank or feats.shape[-3] != k or feats.shape[-1] != d:
            shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise InputError(f"expected features {layout.replace('K', f'K={k}').replace('D]', f'D={d}]')}, got {shape}")
        if rank == 5 and feats.shape[1] == 0:
            raise InputError(f"the features have T=0 frames (shape {tuple(feats.shape)})")

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        """Frozen features of a clip: ``[B, T, 3, H, W] -> [B, T, K, N, D]`` (no gradient; what a cache stores)."""
        self._check_clip(clip)
        b, t = clip.shape[:2]
        frames = clip.flatten(0, 1)
        step = self.encoder_batch_size or frames.shape[0]
        feats = torch.cat([self.encoder.features(frames[i : i + step]) for i in range(0, frames.shape[0], step)], 1)
        return feats.unflatten(1, (b, t)).permute(1, 2, 0, 3, 4)

    def _core_tokens(self, feats: torch.Tensor) -> torch.Tensor:
        """Frames' features ``[K, F, N, D]`` -> the core's input tokens ``[F, N', D]``."""
        x = self.enrichment(feats)
        if self.token_grid:
            x = self._pool(x)
        if self.pos_embed is not None:
            if x.shape[1] != self.pos_embed.shape[0]:
                raise InputError(
                    f"the position embedding has {self.pos_embed.shape[0]} tokens but these frames give {x.shape[1]}: "
                    f"frames must be {self.frame_size}x{self.frame_size}, the size the model was built for"
                )
            x = x + self.pos_embed.to(x.dtype)
        return x

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        f, n, d = x.shape
        p = self.encoder.num_prefix_tokens
        side = round((n - p) ** 0.5)
        if side * side != n - p:
            raise InputError(f"token_grid needs a square patch grid; got {n - p} patch tokens after {p} prefix tokens")
        grid = x[:, p:].reshape(f, side, side, d).permute(0, 3, 1, 2)
        pooled = F.adaptive_avg_pool2d(grid, self.token_grid).flatten(2).transpose(1, 2)
        return torch.cat([x[:, :p], pooled], dim=1)

    def tokens(self, feats: torch.Tensor) -> torch.Tensor:
        """The core's input: ``[B, T, K, N, D] -> [B, T, N', D]`` (BatchNorm statistics over all B·T frames)."""
        self._check_features(feats, "[B, T, K, N, D]")
        b, t = feats.shape[:2]
        return self._core_tokens(feats.permute(2, 0, 1, 3, 4).flatten(1, 2)).unflatten(0, (b, t))

    # ------------------------------------------------------------------------------------------------- clips
    def forward_features(self, feats: torch.Tensor, state: StreamState | None = None, **task_inputs) -> Any:
        """Clip from precomputed features ``[B, T, K, N, D]``; with ``state`` the clip continues that state (core
        state handed over in place; the readout restarts from ``task_inputs``)."""
        self._check_features(feats, "[B, T, K, N, D]")
        if state is None and self._compiled_head is not None:
            return self._compiled_head(feats, **task_inputs)
        return self._head(feats, state, **task_inputs)

    def _head(self, feats: torch.Tensor, state: StreamState | None = None, **task_inputs) -> Any:
        """Everything after the frozen encoder: enrichment, core, readout."""
        o = self.core(self.tokens(feats), None if state is None else state.core)
        return self.readout(o, **task_inputs)

    def compile_clip(self, **kwargs) -> VideoModel:
        """``torch.compile`` the clip path in place: the frozen encoder (``FrozenEncoder.compile``) and, as one
        graph, everything after it (enrichment, core, readout) for clips that start from a zero state. Streaming
        (``step``) is unchanged: it has its own CUDA-graph path (``coldstream.model.cuda_graph``). ``kwargs`` go to
        ``torch.compile`` (e.g. ``mode="max-autotune-no-cudagraphs"``, ``dynamic=False``). The first call at each
        new shape compiles; run it under ``torch.inference_mode()`` (and bf16 autocast on a GPU) for inference."""
        self.encoder.compile(**kwargs)
        self._compiled_head = torch.compile(self._head, **kwargs)
        return self

    @property
    def compiled(self) -> bool:
        """Whether :meth:`compile_clip` was called."""
        return self._compiled_head is not None

    def forward(self, clip: torch.Tensor | None = None, *, features: torch.Tensor | None = None, **task_inputs) -> Any:
        """Whole clip ``[B, T, 3, H, W]``, or its frozen ``features`` ``[B, T, K, N, D]`` -> the task output
        (``[B, T, ...]`` or a dict of them)."""
        if (clip is None) == (features is None):
            raise InputError("pass either a clip [B, T, 3, H, W] or features=[B, T, K, N, D], not both or neither")
        return self.forward_features(self.encode(clip) if features is None else features, **task_inputs)

    # ------------------------------------------------------------------------------------------------- streaming
    def init_state(
        self,
        batch: int,
        tokens: int | None = None,
        frame_size: int | tuple[int, int] | None = None,
        device: torch.device | str | None = None,
        **task_inputs,
    ) -> StreamState:
        """Zero state for ``batch`` streams of frames of ``frame_size`` (default: the model's), or of ``tokens``
        tokens per frame."""
        if tokens is None:
            if frame_size is None and self.frame_size is None:
                raise InputError("init_state needs tokens=N or frame_size=(H, W) to size the core state")
            tokens = self.num_tokens(frame_size)
        if device is None:
            device = next(self.core.parameters(), torch.empty(0)).device
        return StreamState(
            self.core.init_state(batch, tokens, device=device),
            self.readout.init_state(batch, device, **task_inputs),
        )

    def frame_tokens(self, frame: torch.Tensor) -> torch.Tensor:
        """The core's input for one frame of B streams: ``[B, 3, H, W] -> [B, N', D]`` (what ``step`` feeds the
        core: encoder, enrichment, pooling, position embedding)."""
        return self._core_tokens(self.encoder.features(frame))

    def step_features(
        self, feats_t: torch.Tensor, state: StreamState, reset: torch.Tensor | None = None, **task_inputs
    ) -> tuple[Any, StreamState]:
        """One frame from its frozen features ``[B, K, N, D]``; see ``step``."""
        self._check_features(feats_t, "[B, K, N, D]")
        if not isinstance(state, StreamState):
            raise InputTypeError(f"state must come from model.init_state(...), got {type(state).__name__}")
        o, _ = self.core.step(self._core_tokens(feats_t.transpose(0, 1)), state.core, reset=reset)
        if reset is not None:
            self.readout.reset_state(state.readout, reset, **task_inputs)
        out, _ = self.readout.step(o, state.readout)
        return out, state

    def step(
        self, frame: torch.Tensor, state: StreamState, reset: torch.Tensor | None = None, **task_inputs
    ) -> tuple[Any, StreamState]:
        """One frame ``[B, 3, H, W]`` of B streams -> (output for this frame, the same state updated in place).

        ``reset`` ``[B]`` bool: streams where a new video starts with this frame (their state is zeroed first);
        ``task_inputs`` then give those streams' new task inputs (all B rows; only the reset rows are used).
        """
        if not isinstance(frame, torch.Tensor) or frame.ndim != 4:
            shape = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
            raise InputError(f"step expects one frame per stream [B, 3, H, W], got {shape}")
        return self.step_features(self.encoder.features(frame).transpose(0, 1), state, reset, **task_inputs)

    def stream(self, frames: torch.Tensor, state: StreamState | None = None, **task_inputs) -> Any:
        """Frame-by-frame over a clip ``[B, T, 3, H, W]`` (fresh state unless given); same layout as ``forward``."""
        self._check_clip(frames)
        if state is None:
            state = self.init_state(
                frames.shape[0], frame_size=tuple(frames.shape[-2:]), device=frames.device, **task_inputs
            )
        outs = [self.step(frames[:, t], state)[0] for t in range(frames.shape[1])]
        return self.readout.stack_steps(outs, state.readout)

    # ------------------------------------------------------------------------------------------------- checkpoints
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict without the frozen encoder: what training changes and checkpoints store."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(ENCODER_PREFIX)}

    def load_trainable_state_dict(self, state_dict: dict[str, torch.Tensor], what: str = "state dict") -> None:
        """Strictly load :meth:`trainable_state_dict`'s tensors (the encoder keeps its weights)."""
        from coldstream.model.loading import load_strict

        load_strict(self, state_dict, what, ignore=(ENCODER_PREFIX,))

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint that :meth:`from_checkpoint` rebuilds this model from (atomically), ``meta`` included.
        Needs a model built from a config (``from_config`` / ``build``)."""
        from coldstream.model.checkpoints import save_checkpoint

        if self.config is None:
            raise InputError("only a model built from a ModelConfig (from_config / build) can be saved and rebuilt")
        save_checkpoint(path, self)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        encoder_weights: str | os.PathLike | None = None,
        map_location: str | torch.device = "cpu",
    ) -> VideoModel:
        """The model a coldstream checkpoint (``coldstream train``'s ``last.pt``, or :meth:`save`) holds, strictly.

        The frozen encoder is rebuilt from the checkpoint's config (``encoder_weights`` overrides its weights file,
        e.g. on another machine) and must have the weights the model was trained with (checked by content hash).
        A file of another format or another model raises ``CheckpointError`` saying what it is.
        """
        from coldstream.model.checkpoints import load_model

        return load_model(path, encoder_weights=encoder_weights, map_location=map_location)

    def load_checkpoint(self, path: str | os.PathLike) -> dict:
        """Load a coldstream checkpoint into this model, strictly: its config must equal ``self.config`` (the error
        names each field that differs) and its tensors must fit. Returns the checkpoint's ``meta``."""
        from coldstream.model.checkpoints import load_into

        return load_into(self, path)
