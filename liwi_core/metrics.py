"""Layer decomposition metrics, one per function (LayerD's protocol plus what LiWi needs).

Inputs are ``[B,C,H,W]`` float tensors in [0,1]; each function returns a Python float
averaged over the batch. Stack matching (DTW with merge edits) is not here yet.
"""

from __future__ import annotations

import torch

__all__ = ["rgb_l1", "alpha_soft_iou", "background_l1_in_hole", "shadow_l1", "recompose_psnr"]


def rgb_l1(pred_rgb: torch.Tensor, gt_rgb: torch.Tensor, gt_alpha: torch.Tensor) -> float:
    """RGB L1: mean over the RGB channels of ``|pred - gt|``, averaged over pixels where the
    ground-truth alpha is above 0. Returns 0 when no pixel qualifies."""
    inside = (gt_alpha > 0).expand_as(gt_rgb)
    if not bool(inside.any()):
        return 0.0
    return float((pred_rgb - gt_rgb).abs()[inside].mean())


def alpha_soft_iou(pred_alpha: torch.Tensor, gt_alpha: torch.Tensor) -> float:
    """Alpha soft IoU: ``sum(min(a_pred, a_gt)) / sum(max(a_pred, a_gt))``; 1 when both are empty."""
    union = torch.maximum(pred_alpha, gt_alpha).sum()
    if float(union) == 0:
        return 1.0
    return float(torch.minimum(pred_alpha, gt_alpha).sum() / union)


def background_l1_in_hole(pred_bg: torch.Tensor, gt_bg: torch.Tensor, hole: torch.Tensor) -> float:
    """Background L1 in the hole: mean ``|pred - gt|`` over RGB where ``hole > 0.5`` (the part of the
    background hidden by objects in the input). Returns 0 for an empty hole."""
    inside = (hole > 0.5).expand_as(gt_bg)
    if not bool(inside.any()):
        return 0.0
    return float((pred_bg - gt_bg).abs()[inside].mean())


def shadow_l1(pred_shadow: torch.Tensor, gt_shadow: torch.Tensor, threshold: float = 0.95) -> float:
    """Shadow-map L1 inside the shadow: mean ``|pred - gt|`` where the ground-truth map (mean over
    channels) is below ``threshold``. One-channel maps are compared against the channel mean of
    three-channel ones. Returns 0 when there is no ground-truth shadow."""
    if pred_shadow.shape[1] != gt_shadow.shape[1]:
        pred_shadow, gt_shadow = pred_shadow.mean(1, keepdim=True), gt_shadow.mean(1, keepdim=True)
    inside = (gt_shadow.mean(dim=1, keepdim=True) < threshold).expand_as(gt_shadow)
    if not bool(inside.any()):
        return 0.0
    return float((pred_shadow - gt_shadow).abs()[inside].mean())


def recompose_psnr(recomposed: torch.Tensor, image: torch.Tensor) -> float:
    """Recomposition PSNR in dB: ``10 log10(1 / MSE)`` over all pixels and channels; inf if equal."""
    mse = float(((recomposed.double() - image.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * float(torch.log10(torch.tensor(1.0 / mse)))
