"""NuScenes camera pose: token mean-pool -> MLP -> relative translation + 6-D rotation per frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coldstream.errors import InputError
from coldstream.model.readouts.base import READOUTS, StatelessReadout


@READOUTS.register("nuscenes", aliases=("pose", "camera_pose"))
class CameraPoseReadout(StatelessReadout):
    """Per frame: mean over the N tokens of ``proj(o_t)`` -> LN -> Linear(1024->512) -> GELU -> Linear(512->9).

    Output ``[B, T, 9]`` = pose of frame t relative to t−1: translation (dx, dy, dz) in metres, then the 6-D
    rotation (first column of R in out[3:6], second in out[6:9]; ``rotation_6d_to_matrix``). Frame 0 has no
    predecessor (masked in loss and metric). Keys ``pose_head.{0,1,3}`` (+ ``proj_to_readout`` if D != 1024).
    """

    task = "nuscenes"

    def __init__(self, dim: int, width: int = 1024, hidden: int = 512, attention: str = "sdpa"):
        super().__init__(dim, attention)
        self.proj_to_readout = nn.Linear(dim, width) if dim != width else nn.Identity()
        self.pose_head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, 9))

    def frame(self, o: torch.Tensor) -> torch.Tensor:
        """``[F, N, D] -> [F, 9]``."""
        return self.pose_head(self.proj_to_readout(o).mean(dim=1))


def rotation_6d_to_matrix(r6: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zhou et al. (2019): ``[..., 6]`` = the first two columns ``(a1 = r[:3], a2 = r[3:])`` -> ``[..., 3, 3]``.

    Gram–Schmidt: ``b1 = a1/|a1|``, ``b2 = normalise(a2 − (b1·a2) b1)``, ``b3 = b1 × b2``; R = [b1 b2 b3] (columns).
    """
    a1, a2 = r6[..., :3], r6[..., 3:6]
    b1 = F.normalize(a1, dim=-1, eps=eps)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=eps)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(rot: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3] -> [..., 6]``: the first two columns, concatenated."""
    return torch.cat([rot[..., :, 0], rot[..., :, 1]], dim=-1)


def rotation_angle(r_pred: torch.Tensor, r_gt: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (radians) between rotation matrices ``[..., 3, 3]``, as ``atan2(sin, cos)`` of the relative
    rotation (exact and with finite gradients at 0, unlike ``acos`` of a clamped trace)."""
    rel = r_pred.transpose(-1, -2) @ r_gt
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    skew = rel - rel.transpose(-1, -2)
    sin = torch.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], dim=-1).norm(dim=-1) / 2
    return torch.atan2(sin, cos)


def _frames_mask(shape: torch.Size, valid: torch.Tensor | None, device) -> torch.Tensor:
    m = torch.ones(shape, dtype=torch.bool, device=device)
    m[:, 0] = False  # frame 0 has no predecessor
    return m if valid is None else m & valid.bool()


class CameraPoseLoss(nn.Module):
    """Kendall & Cipolla (2017) homoscedastic weighting of translation and rotation::

        L = exp(−s_t) L_t + s_t + exp(−s_r) L_r + s_r

    with learned ``s_t``, ``s_r`` (init 0 and −3, the PoseNet values; the reference stores them under ``loss_fn.*``,
    ignored when loading). Per-term losses are not published; our choice: ``L_t`` = L1 on the relative
    translation (metres, summed over xyz), ``L_r`` = geodesic angle (radians) after Gram–Schmidt. Frame 0 is masked.
    """

    def __init__(self, init_translation: float = 0.0, init_rotation: float = -3.0):
        super().__init__()
        self.log_var_translation = nn.Parameter(torch.tensor(init_translation))
        self.log_var_rotation = nn.Parameter(torch.tensor(init_rotation))

    def forward(
        self,
        pred: torch.Tensor,
        target_translation: torch.Tensor,
        target_rotation: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``pred`` ``[B, T, 9]``; targets ``[B, T, 3]`` and ``[B, T, 3, 3]`` (pose of t relative to t−1)."""
        if pred.ndim != 3 or pred.shape[-1] != 9:
            raise InputError(f"expected pose predictions [B, T, 9], got {tuple(pred.shape)}")
        m = _frames_mask(pred.shape[:2], valid, pred.device).float()
        denom = m.sum().clamp(min=1)
        pred = pred.float()
        l_t = ((pred[..., :3] - target_translation.float()).abs().sum(-1) * m).sum() / denom
        l_r = (rotation_angle(rotation_6d_to_matrix(pred[..., 3:]), target_rotation.float()) * m).sum() / denom
        s_t, s_r = self.log_var_translation, self.log_var_rotation
        return torch.exp(-s_t) * l_t + s_t + torch.exp(-s_r) * l_r + s_r


def rpe_translation(pred: torch.Tensor, target_translation: torch.Tensor, valid: torch.Tensor | None = None):
    """RPE_tr in millimetres: mean over frames t >= 1 of ``|t̂_t − t_t|`` (relative translations, metres in)."""
    m = _frames_mask(pred.shape[:2], valid, pred.device).float()
    err = (pred[..., :3].float() - target_translation.float()).norm(dim=-1)
    return 1000.0 * (err * m).sum() / m.sum().clamp(min=1)


def rpe_errors(
    pred: torch.Tensor, target_translation: torch.Tensor, target_rotation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative pose error per frame (Sturm et al. 2012 with a one-frame step): the error of the predicted t−1 -> t
    motion against the true one, ``E_t = Q_t^{-1} P_t``; returns ``(|trans(E_t)|`` in the input unit ``[B, T]``,
    ``angle(rot(E_t))`` in degrees ``[B, T])``. ``|trans(E_t)| = |t̂_t − t_t|`` (a rotation keeps lengths), so the
    translation error is :func:`rpe_translation`'s. Frame 0 (no predecessor) is the caller's to mask."""
    pred = pred.float()
    trans = (pred[..., :3] - target_translation.float()).norm(dim=-1)
    rot = torch.rad2deg(rotation_angle(rotation_6d_to_matrix(pred[..., 3:]), target_rotation.float()))
    return trans, rot


def compose_relative(translation: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Camera positions ``[B, T, 3]`` in frame 0's camera from relative poses (t−1 -> t; frame 0's is ignored):
    ``P_0 = I``, ``P_t = P_{t−1} [R_t | t_t]``. ``translation`` ``[B, T, 3]``, ``rotation`` ``[B, T, 3, 3]``."""
    b, t = translation.shape[:2]
    rot = torch.eye(3, dtype=translation.dtype, device=translation.device).expand(b, 3, 3)
    pos = translation.new_zeros(b, 3)
    out = [pos]
    for k in range(1, t):
        pos = pos + (rot @ translation[:, k, :, None])[..., 0]
        rot = rot @ rotation[:, k]
        out.append(pos)
    return torch.stack(out, dim=1)


def rigid_align(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``src`` ``[B, T, 3]`` moved by the rotation and translation that best fit it to ``dst`` in least squares
    (Umeyama 1991 without scale; a reflection is never used)."""
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.transpose(1, 2) @ xs / src.shape[1]  # [B, 3, 3]
    u, _, vh = torch.linalg.svd(cov)
    s = torch.ones(src.shape[0], 3, dtype=src.dtype, device=src.device)
    s[:, 2] = torch.sign(torch.linalg.det(u @ vh))
    s[:, 2] = torch.where(s[:, 2] == 0, torch.ones_like(s[:, 2]), s[:, 2])
    rot = u @ torch.diag_embed(s) @ vh
    return (rot @ xs.transpose(1, 2)).transpose(1, 2) + mu_d


def absolute_trajectory_error(
    pred: torch.Tensor, target_translation: torch.Tensor, target_rotation: torch.Tensor
) -> torch.Tensor:
    """ATE per clip ``[B]`` (input unit): both trajectories are composed from their relative poses
    (:func:`compose_relative`), the predicted camera positions rigidly aligned to the true ones (rotation and
    translation, no scale: the readout predicts metres), then the RMSE of the position differences over the T
    frames (Sturm et al. 2012)."""
    pred = pred.float()
    p = compose_relative(pred[..., :3], rotation_6d_to_matrix(pred[..., 3:]))
    g = compose_relative(target_translation.float(), target_rotation.float())
    return (rigid_align(p, g) - g).norm(dim=-1).pow(2).mean(1).sqrt()
