"""Layer decomposition metrics, one per function (LayerD's protocol plus what LiWi needs).

Inputs are ``[B,C,H,W]`` float tensors in [0,1]; each function returns a Python float
averaged over the batch.
"""

from __future__ import annotations

import torch

__all__ = ["rgb_l1", "alpha_soft_iou", "background_l1_in_hole", "shadow_l1", "recompose_psnr", "stack_layers",
           "merge_layers", "layer_cost", "dtw_align", "match_stacks"]


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


# --------------------------------------------------------------------------- stack matching
#
# LayerD's protocol compares a predicted and a ground-truth stack of RGBA layers (back to
# front, the background being the bottom layer with alpha 1): the two sequences are aligned
# by dynamic time warping, scored on the aligned pairs, and up to five "merge edits" (two
# adjacent layers of either stack composited into one) are allowed, each chosen greedily
# as the one that lowers the DTW cost most; scores are reported per number of edits.


def stack_layers(stack) -> list[torch.Tensor]:
    """A :class:`~liwi_core.layers.LayerStack` as RGBA layers back to front, ``[B,4,H,W]``,
    with the background first (alpha 1). Shadows are not layers here (see :func:`shadow_l1`)."""
    bg = torch.cat([stack.background, torch.ones_like(stack.background[:, :1])], dim=1)
    return [bg] + [layer.rgba for layer in stack.layers]


def merge_layers(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Merge edit: ``upper`` over ``lower`` as one straight-alpha RGBA layer ``[B,4,H,W]``.

    ``a = a_u + a_l (1 - a_u)``, ``F = (a_u F_u + (1 - a_u) a_l F_l) / a`` (0 where a = 0).
    """
    au, al = upper[:, 3:4], lower[:, 3:4]
    alpha = au + al * (1 - au)
    colour = au * upper[:, :3] + (1 - au) * al * lower[:, :3]
    rgb = torch.where(alpha > 0, colour / alpha.clamp_min(1e-8), torch.zeros_like(colour))
    return torch.cat([rgb, alpha], dim=1)


def layer_cost(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Distance of two RGBA layers: ``(RGB L1 + (1 - alpha soft IoU)) / 2``, in [0, 1]."""
    return (rgb_l1(pred[:, :3], gt[:, :3], gt[:, 3:4]) + 1.0 - alpha_soft_iou(pred[:, 3:4], gt[:, 3:4])) / 2.0


def dtw_align(pred: list[torch.Tensor], gt: list[torch.Tensor]) -> tuple[float, list[tuple[int, int]]]:
    """Order-preserving alignment of two back-to-front layer lists by dynamic time warping.

    Each step pairs the next layers of both lists or repeats one of them; the first and
    the last layers are always paired. Returns the mean :func:`layer_cost` along the
    cheapest path and the path as ``(pred index, gt index)`` pairs.
    """
    n, m = len(pred), len(gt)
    cost = [[layer_cost(p, g) for g in gt] for p in pred]
    inf = float("inf")
    total = [[inf] * (m + 1) for _ in range(n + 1)]
    steps = [[0] * (m + 1) for _ in range(n + 1)]
    total[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            options = [(total[i - 1][j - 1], steps[i - 1][j - 1]), (total[i - 1][j], steps[i - 1][j]),
                       (total[i][j - 1], steps[i][j - 1])]
            best, count = min(options, key=lambda o: o[0])
            total[i][j] = best + cost[i - 1][j - 1]
            steps[i][j] = count + 1
    path, i, j = [], n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        moves = [(total[i - 1][j - 1], i - 1, j - 1), (total[i - 1][j], i - 1, j), (total[i][j - 1], i, j - 1)]
        _, i, j = min(moves, key=lambda o: o[0])
    return total[n][m] / steps[n][m], path[::-1]


def _merge_at(layers: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    return layers[:k] + [merge_layers(layers[k], layers[k + 1])] + layers[k + 2:]


def match_stacks(pred: list[torch.Tensor], gt: list[torch.Tensor], max_edits: int = 5) -> list[dict]:
    """DTW scores of two stacks after 0..``max_edits`` greedy merge edits.

    At each edit, every merge of two adjacent layers in either stack is tried and the one
    giving the lowest DTW cost is kept (stopping early when a stack is down to one layer or
    no merge lowers the cost; later counts then repeat the last result).

    Returns:
        One dict per edit count: ``edits``, ``cost`` (mean DTW cost), ``rgb_l1`` and
        ``alpha_iou`` (means over the aligned pairs), ``pairs`` (the alignment).
    """
    results = []
    for edits in range(max_edits + 1):
        cost, path = dtw_align(pred, gt)
        results.append({
            "edits": edits, "cost": cost, "pairs": path,
            "rgb_l1": sum(rgb_l1(pred[i][:, :3], gt[j][:, :3], gt[j][:, 3:4]) for i, j in path) / len(path),
            "alpha_iou": sum(alpha_soft_iou(pred[i][:, 3:4], gt[j][:, 3:4]) for i, j in path) / len(path),
        })
        if edits == max_edits:
            break
        candidates = [(dtw_align(_merge_at(pred, k), gt)[0], "pred", k) for k in range(len(pred) - 1)]
        candidates += [(dtw_align(pred, _merge_at(gt, k))[0], "gt", k) for k in range(len(gt) - 1)]
        if not candidates or min(candidates)[0] >= cost:
            results += [dict(results[-1], edits=e) for e in range(edits + 1, max_edits + 1)]
            break
        _, side, k = min(candidates, key=lambda c: c[0])
        if side == "pred":
            pred = _merge_at(pred, k)
        else:
            gt = _merge_at(gt, k)
    return results
