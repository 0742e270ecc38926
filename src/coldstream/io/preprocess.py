"""Frame preprocessing for the encoders: scale to [0, 1], short-side bilinear resize, centre crop, normalise.

Runs on whatever device the frames are on (a GPU tensor stays on the GPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from coldstream.errors import InputError, InputTypeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_float_nchw(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` (decoder layout) or float ``[T, 3, H, W]`` in [0, 1] -> float32 ``[T, 3, H, W]``."""
    if not isinstance(frames, torch.Tensor):
        raise InputTypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
    if frames.dim() == 3:
        raise InputError(
            f"frames must be a batch: uint8 [T, H, W, 3] or float [T, 3, H, W]; got a single image of shape "
            f"{tuple(frames.shape)} (add a leading dimension)"
        )
    if frames.dim() != 4:
        raise InputError(
            f"frames must have rank 4 (uint8 [T, H, W, 3] or float [T, 3, H, W]), got {tuple(frames.shape)}"
        )
    if frames.dtype == torch.uint8:
        if frames.shape[-1] != 3:
            raise InputError(f"uint8 frames must be [T, H, W, 3] (RGB, channels last), got {tuple(frames.shape)}")
        return frames.permute(0, 3, 1, 2).float().div_(255.0)
    if frames.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        if frames.shape[1] != 3:
            raise InputError(f"float frames must be [T, 3, H, W] (RGB, channels first), got {tuple(frames.shape)}")
        if not torch.isfinite(frames).all():
            raise InputError(f"frames must be finite, got {int((~torch.isfinite(frames)).sum())} NaN or Inf values")
        return frames.float()
    raise InputTypeError(f"frames must be uint8 [T, H, W, 3] or float [T, 3, H, W] in [0, 1], got dtype {frames.dtype}")


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (align_corners=False, no antialias) resize so the short side equals ``size``. ``[T,3,H,W]``."""
    h, w = frames.shape[-2:]
    if min(h, w) == size:
        return frames
    # The long side is rounded to the nearest pixel (int(round(.))) and never falls below `size`.
    if h <= w:
        new_h, new_w = size, max(size, int(round(w * size / h)))
    else:
        new_h, new_w = max(size, int(round(h * size / w))), size
    return F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop ``[..., H, W]`` to ``size × size``."""
    h, w = frames.shape[-2:]
    if h < size or w < size:
        raise InputError(f"cannot centre-crop {size}x{size} from frames of size {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return frames[..., top : top + size, left : left + size]


def preprocess_frames(
    frames: torch.Tensor,
    size: int = 224,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> torch.Tensor:
    """Scale to [0, 1], resize the short side to ``size`` (bilinear, ``align_corners=False``, no antialias), centre
    crop ``size x size``, normalise ``(x - mean) / std``.

    Args:
        frames: uint8 ``[T, H, W, 3]`` (0..255, as decoders return them) or float ``[T, 3, H, W]`` in [0, 1].
        size: output side S (224; 256 for Waymo).
        mean, std: per-channel normalisation; ``None`` leaves pixels in [0, 1] (for encoders trained on such input).

    Returns:
        float32 ``[T, 3, S, S]`` on the frames' device.
    """
    if size <= 0:
        raise InputError(f"size must be positive, got {size}")
    x = center_crop(resize_short_side(_as_float_nchw(frames), size), size)
    if mean is not None:
        m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x - m) / s
    return x.contiguous()
