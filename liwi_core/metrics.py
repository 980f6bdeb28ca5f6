"""Layer decomposition metrics, one per function (LayerD's protocol plus what LiWi needs).

Inputs are ``[B,C,H,W]`` float tensors in [0,1]; each function returns a Python float
(pixels of all batch elements pooled). Lower is better except for IoU and PSNR. The stack
matchings (:func:`match_stacks`, :func:`match_layers_by_alpha`) return their pairs.
"""

from __future__ import annotations

import torch

__all__ = ["rgb_l1", "alpha_soft_iou", "background_l1_in_hole", "shadow_l1", "shadow_l1_outside", "false_shadow",
           "recompose_psnr", "stack_layers", "merge_layers", "group_top_layers", "layer_cost", "dtw_path", "dtw_align",
           "match_stacks", "match_layers_by_alpha", "touching_order_right", "photo_object_layer",
           "merged_layers"]


def rgb_l1(pred_rgb: torch.Tensor, gt_rgb: torch.Tensor, gt_alpha: torch.Tensor) -> float:
    """RGB L1 inside the ground truth (LayerD's ``RGBL1``)::

        sum_p [gt_alpha_p > 0] * mean_c |pred_cp - gt_cp|  /  sum_p [gt_alpha_p > 0]

    Args:
        pred_rgb, gt_rgb: ``[B,3,H,W]`` straight (not premultiplied) colour.
        gt_alpha: ``[B,1,H,W]`` ground-truth alpha.

    Returns:
        The mean absolute error in [0, 1]; 0 when the ground-truth alpha is empty.
    """
    inside = (gt_alpha > 0).expand_as(gt_rgb)
    if not bool(inside.any()):
        return 0.0
    return float((pred_rgb - gt_rgb).abs()[inside].mean())


def alpha_soft_iou(pred_alpha: torch.Tensor, gt_alpha: torch.Tensor) -> float:
    """Alpha soft IoU (LayerD's ``AlphaIoU``): ``sum_p min(a_pred, a_gt) / sum_p max(a_pred, a_gt)``.

    Args:
        pred_alpha, gt_alpha: ``[B,1,H,W]`` alpha in [0, 1].

    Returns:
        IoU in [0, 1]; 1 when both alphas are empty (LayerD gives 0 there).
    """
    union = torch.maximum(pred_alpha, gt_alpha).sum()
    if float(union) == 0:
        return 1.0
    return float(torch.minimum(pred_alpha, gt_alpha).sum() / union)


def background_l1_in_hole(pred_bg: torch.Tensor, gt_bg: torch.Tensor, hole: torch.Tensor) -> float:
    """Background L1 in the hole: mean of ``|pred - gt|`` over RGB and the pixels where
    ``hole > 0.5`` (the part of the background hidden by the objects in the input).

    Args:
        pred_bg, gt_bg: ``[B,3,H,W]`` clean backgrounds.
        hole: ``[B,1,H,W]`` ground-truth hole.

    Returns:
        Mean absolute error in [0, 1]; 0 for an empty hole.
    """
    inside = (hole > 0.5).expand_as(gt_bg)
    if not bool(inside.any()):
        return 0.0
    return float((pred_bg - gt_bg).abs()[inside].mean())


def shadow_l1(pred_shadow: torch.Tensor, gt_shadow: torch.Tensor, threshold: float = 0.95) -> float:
    """Shadow-map L1 inside the shadow: mean of ``|pred - gt|`` over the pixels where the
    ground-truth map (mean over channels) is below ``threshold`` (at least 5% of the light
    removed), and over channels.

    Args:
        pred_shadow, gt_shadow: ``[B,1|3,H,W]`` multiplicative maps (1 = no shadow). When the
            channel counts differ both are reduced to their channel mean.
        threshold: ground-truth value below which a pixel is in the shadow.

    Returns:
        Mean absolute error in [0, 1]; 0 when there is no ground-truth shadow.
    """
    return _shadow_l1(pred_shadow, gt_shadow, threshold)


def _shadow_l1(pred_shadow: torch.Tensor, gt_shadow: torch.Tensor, threshold: float,
               gt_alpha: torch.Tensor | None = None) -> float:
    """:func:`shadow_l1`, and with ``gt_alpha`` :func:`shadow_l1_outside`."""
    if pred_shadow.shape[1] != gt_shadow.shape[1]:
        pred_shadow, gt_shadow = pred_shadow.mean(1, keepdim=True), gt_shadow.mean(1, keepdim=True)
    inside = gt_shadow.mean(dim=1, keepdim=True) < threshold
    if gt_alpha is not None:
        inside &= gt_alpha < 0.5
    inside = inside.expand_as(gt_shadow)
    if not bool(inside.any()):
        return 0.0
    return float((pred_shadow - gt_shadow).abs()[inside].mean())


def shadow_l1_outside(pred_shadow: torch.Tensor, gt_shadow: torch.Tensor, gt_alpha: torch.Tensor,
                      threshold: float = 0.95) -> float:
    """Shadow-map L1 where the true shadow darkens the scene, outside the object (the learned-
    engine issue's and the independent evaluation's definition): mean of ``|pred - gt|`` over
    the pixels where the ground-truth map (mean over channels) is below ``threshold`` and the
    layer's true alpha is below 0.5, and over channels. :func:`shadow_l1` also counts the
    pixels under the object, where its shadow is hidden by it.

    Args:
        pred_shadow, gt_shadow: ``[B,1|3,H,W]`` multiplicative maps (1 = no shadow). When the
            channel counts differ both are reduced to their channel mean.
        gt_alpha: ``[B,1,H,W]`` the layer's true alpha.
        threshold: ground-truth value below which a pixel is in the shadow.

    Returns:
        Mean absolute error in [0, 1]; 0 when no true shadow lies outside the object.
    """
    return _shadow_l1(pred_shadow, gt_shadow, threshold, gt_alpha)


def false_shadow(pred_shadow: torch.Tensor, gt_shadow: torch.Tensor, gt_alpha: torch.Tensor,
                 threshold: float = 0.95) -> float:
    """False shadow: the darkening a predicted shadow map puts where the truth has none, as a
    share of the true darkening::

        sum_p [gt_p >= t and gt_alpha_p < 0.5] * (1 - pred_p)  /  sum_p [gt_p < t] * (1 - gt_p)

    with maps reduced to their channel mean. :func:`shadow_l1` looks only inside the true
    shadow, so a map that darkens everything near the object scores well there; this is the
    other half: 0 means no false darkening, 1 as much false darkening as there is true shadow.
    Pixels under the layer's own object are left out (its shadow there is hidden by it).

    Args:
        pred_shadow, gt_shadow: ``[B,1|3,H,W]`` multiplicative maps (1 = no shadow).
        gt_alpha: ``[B,1,H,W]`` the layer's true alpha.
        threshold: ground-truth value below which a pixel is in the shadow (as :func:`shadow_l1`).

    Returns:
        The ratio (0 or more); 0 when there is no ground-truth shadow.
    """
    pred, gt = pred_shadow.mean(1, keepdim=True), gt_shadow.mean(1, keepdim=True)
    inside = gt < threshold
    true_dark = float((1 - gt)[inside].sum())
    if true_dark == 0:
        return 0.0
    outside = ~inside & (gt_alpha < 0.5)
    return float((1 - pred).clamp(min=0)[outside].sum()) / true_dark


def recompose_psnr(recomposed: torch.Tensor, image: torch.Tensor) -> float:
    """Recomposition PSNR in dB: ``10 log10(1 / MSE)``, the MSE over all pixels and channels
    (float64).

    Args:
        recomposed: ``[B,3,H,W]`` the stack recomposed (:meth:`LayerStack.composite`).
        image: ``[B,3,H,W]`` the input image.

    Returns:
        PSNR in dB; ``inf`` when the two are equal.
    """
    mse = float(((recomposed.double() - image.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * float(torch.log10(torch.tensor(1.0 / mse)))


# --------------------------------------------------------------------------- stack matching
#
# LayerD's protocol (Suzuki et al., ICCV 2025, github.com/CyberAgentAILab/LayerD,
# ``layerd/evaluation``), as LiWi computes it:
#
# 1. Both stacks are lists of straight-alpha RGBA layers, back to front. A LiWi stack's
#    background is layer 0 with alpha 1 everywhere (:func:`stack_layers`); shadow maps are
#    not layers (they are scored by :func:`shadow_l1`).
# 2. Each list is grouped by occlusion (:func:`group_top_layers`): layers that no layer
#    in front of them overlaps form the top group, and so on down; each group is merged
#    into one layer. Non-overlapping objects therefore compare the same in any order.
# 3. The lists are aligned by dynamic time warping (:func:`dtw_align`) with the cost of
#    :func:`layer_cost`; the scores are means over the aligned pairs.
# 4. Up to ``max_edits`` merge edits (:func:`merge_layers`: two adjacent layers of either
#    list composited into one) are applied one at a time, and the scores are reported
#    after each (0..5 edits).
#
# Where LiWi differs from LayerD's code (documented, deliberate):
# * The edit chosen is the one adjacent merge, in either list, after which the DTW mean
#   cost is lowest (ties: the predicted list first, then the lower index); edits stop when
#   no merge lowers the cost. LayerD ranks merges by a local gain over the layers matched
#   to the pair and keeps merging while that local gain is positive, even when the whole
#   alignment gets no better. Ours makes "score after k edits" a non-increasing cost.
# * Tensors are float, not 8-bit; "alpha > 0" in the grouping means alpha > 0.5/255
#   (what survives 8-bit quantisation), so float predictions are not penalised for
#   alpha dust. The soft IoU of two empty alphas is 1 (LayerD: 0).
# * Like LayerD, a list of two layers or fewer is never merged further (``min_layers``),
#   so the trivial "merge everything into one layer on both sides" cannot score.

ALPHA_EPS = 0.5 / 255.0  # alpha above this is "present" for grouping (8-bit alpha > 0)


def stack_layers(stack) -> list[torch.Tensor]:
    """A :class:`~liwi_core.layers.LayerStack` as the RGBA list the protocol compares.

    Args:
        stack: a stack of batch 1.

    Returns:
        ``[background with alpha 1, layer_0, ..., layer_n-1]``, each ``[1,4,H,W]``, back to front.
    """
    bg = torch.cat([stack.background, torch.ones_like(stack.background[:, :1])], dim=1)
    return [bg] + [layer.rgba for layer in stack.layers]


def merge_layers(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Merge edit: ``upper`` composited over ``lower`` into one straight-alpha layer.

    The ``over`` rule (as PIL's ``alpha_composite``, which LayerD uses)::

        a = a_u + a_l (1 - a_u)
        F = (a_u F_u + (1 - a_u) a_l F_l) / a        (F = 0 where a = 0)

    Args:
        lower, upper: ``[B,4,H,W]`` straight-alpha RGBA, ``upper`` in front.

    Returns:
        ``[B,4,H,W]`` straight-alpha RGBA.
    """
    au, al = upper[:, 3:4], lower[:, 3:4]
    alpha = au + al * (1 - au)
    colour = au * upper[:, :3] + (1 - au) * al * lower[:, :3]
    rgb = torch.where(alpha > 0, colour / alpha.clamp_min(1e-8), torch.zeros_like(colour))
    return torch.cat([rgb, alpha], dim=1)


def group_top_layers(layers: list[torch.Tensor], eps: float = ALPHA_EPS) -> list[torch.Tensor]:
    """LayerD's occlusion grouping of a back-to-front list.

    Repeatedly, the remaining layers that no remaining layer in front of them overlaps
    (overlap: both alphas > ``eps`` at a pixel) form a group and are removed; groups are
    found front first and returned back to front, each merged (:func:`merge_layers`, in
    back-to-front order) into one layer.

    Args:
        layers: ``[B,4,H,W]`` RGBA layers, back to front.
        eps: alpha above which a pixel counts as covered.

    Returns:
        The merged groups, ``[B,4,H,W]`` each, back to front.
    """
    masks = [layer[:, 3] > eps for layer in layers]
    remaining, groups = list(range(len(layers))), []
    while remaining:
        top = [i for k, i in enumerate(remaining)
               if not any(bool((masks[i] & masks[j]).any()) for j in remaining[k + 1:])]
        groups.append(top)
        remaining = [i for i in remaining if i not in top]
    merged = []
    for group in reversed(groups):
        layer = layers[group[0]]
        for i in group[1:]:
            layer = merge_layers(layer, layers[i])
        merged.append(layer)
    return merged


def layer_cost(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Distance of a predicted and a ground-truth RGBA layer, in [0, 1]:
    ``(rgb_l1(pred, gt, gt alpha) + 1 - alpha_soft_iou(pred alpha, gt alpha)) / 2``.

    Args:
        pred, gt: ``[B,4,H,W]`` straight-alpha RGBA (the order matters: RGB L1 is taken
            where the ground truth is present).
    """
    l1, iou = _pair_scores(pred, gt)
    return (l1 + 1.0 - iou) / 2.0


def _pair_scores(pred: torch.Tensor, gt: torch.Tensor) -> tuple[float, float]:
    """``(rgb_l1, alpha_soft_iou)`` of one layer pair."""
    return rgb_l1(pred[:, :3], gt[:, :3], gt[:, 3:4]), alpha_soft_iou(pred[:, 3:4], gt[:, 3:4])


def dtw_path(cost: list[list[float]]) -> tuple[float, list[tuple[int, int]]]:
    """Cheapest monotone path through a cost matrix (dynamic time warping).

    The path starts at ``(0, 0)``, ends at ``(n-1, m-1)`` and each step moves to
    ``(i+1, j+1)``, ``(i+1, j)`` or ``(i, j+1)``; its total is the sum of the costs it
    visits. Backtracking prefers the diagonal, then ``(i-1, j)``, then ``(i, j-1)`` on ties.

    Args:
        cost: ``n x m`` non-negative costs, ``n, m >= 1``.

    Returns:
        ``(mean cost along the path, [(i, j), ...] from (0, 0) to (n-1, m-1))``.
    """
    n, m = len(cost), len(cost[0])
    inf = float("inf")
    acc = [[inf] * (m + 1) for _ in range(n + 1)]
    acc[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i][j] = cost[i - 1][j - 1] + min(acc[i - 1][j - 1], acc[i - 1][j], acc[i][j - 1])
    path, i, j = [(n - 1, m - 1)], n, m
    while (i, j) != (1, 1):
        moves = [(acc[i - 1][j - 1], i - 1, j - 1), (acc[i - 1][j], i - 1, j), (acc[i][j - 1], i, j - 1)]
        _, i, j = min(moves, key=lambda o: o[0])  # first minimum: diagonal wins ties
        path.append((i - 1, j - 1))
    path.reverse()
    return sum(cost[a][b] for a, b in path) / len(path), path


def dtw_align(pred: list[torch.Tensor], gt: list[torch.Tensor]) -> tuple[float, list[tuple[int, int]]]:
    """Align two back-to-front RGBA lists by :func:`dtw_path` over :func:`layer_cost`.

    Args:
        pred, gt: non-empty lists of ``[B,4,H,W]`` layers.

    Returns:
        ``(mean layer cost along the path, [(pred index, gt index), ...])``.
    """
    return dtw_path([[layer_cost(p, g) for g in gt] for p in pred])


class _Scores:
    """Pairwise ``(rgb_l1, iou)`` of two lists, updated in place as merge edits apply."""

    def __init__(self, pred: list[torch.Tensor], gt: list[torch.Tensor]) -> None:
        self.pred, self.gt = list(pred), list(gt)
        self.table = [[_pair_scores(p, g) for g in self.gt] for p in self.pred]

    def cost(self, table=None) -> list[list[float]]:
        return [[(l1 + 1.0 - iou) / 2.0 for l1, iou in row] for row in (table or self.table)]

    def merged(self, side: str, k: int) -> tuple[list[torch.Tensor], list[list[tuple[float, float]]]]:
        """The list of ``side`` with layers ``k, k+1`` merged, and the table that goes with it."""
        layers = self.pred if side == "pred" else self.gt
        layer = merge_layers(layers[k], layers[k + 1])
        new = layers[:k] + [layer] + layers[k + 2:]
        if side == "pred":
            row = [_pair_scores(layer, g) for g in self.gt]
            return new, self.table[:k] + [row] + self.table[k + 2:]
        table = [r[:k] + [_pair_scores(p, layer)] + r[k + 2:] for p, r in zip(self.pred, self.table)]
        return new, table

    def result(self, edits: int, merge: tuple[str, int] | None) -> dict:
        cost, path = dtw_path(self.cost())
        return {"edits": edits, "cost": cost, "pairs": path, "merge": merge,
                "rgb_l1": sum(self.table[i][j][0] for i, j in path) / len(path),
                "alpha_iou": sum(self.table[i][j][1] for i, j in path) / len(path),
                "pred_layers": len(self.pred), "gt_layers": len(self.gt)}


def match_stacks(pred: list[torch.Tensor], gt: list[torch.Tensor], max_edits: int = 5, group: bool = True,
                 min_layers: int = 2) -> list[dict]:
    """LayerD's layer matching: DTW scores of two stacks after 0..``max_edits`` merge edits.

    See the section comment above for the protocol. Each edit tries every merge of two
    adjacent layers in either list (a list of ``min_layers`` or fewer is not merged) and
    keeps the one with the lowest DTW mean cost; when none lowers the cost, later edit
    counts repeat the last result (as LayerD's aggregation does).

    Args:
        pred, gt: RGBA layers ``[1,4,H,W]``, back to front (see :func:`stack_layers`).
        max_edits: merge edits allowed (LayerD: 5).
        group: apply :func:`group_top_layers` to both lists first (LayerD: yes).
        min_layers: a list this short is not merged further (LayerD: 2).

    Returns:
        ``max_edits + 1`` dicts, for 0..``max_edits`` edits: ``edits``; ``cost``, ``rgb_l1`` and
        ``alpha_iou`` (means over the aligned pairs; lower, lower, higher is better);
        ``pairs`` (the alignment, ``(pred index, gt index)`` into the edited lists);
        ``merge`` (the edit just taken: ``("pred" | "gt", index)`` or ``None``);
        ``pred_layers`` and ``gt_layers`` (lengths of the edited lists).
    """
    if not pred or not gt:
        raise ValueError("match_stacks needs at least one layer on each side")
    if group:
        pred, gt = group_top_layers(pred), group_top_layers(gt)
    scores = _Scores(pred, gt)
    results = [scores.result(0, None)]
    while len(results) <= max_edits:
        best = None
        for side, layers in (("pred", scores.pred), ("gt", scores.gt)):
            if len(layers) <= min_layers:
                continue
            for k in range(len(layers) - 1):
                new, table = scores.merged(side, k)
                cost = dtw_path(scores.cost(table))[0]
                if best is None or cost < best[0]:
                    best = (cost, side, k, new, table)
        if best is None or best[0] >= results[-1]["cost"] - 1e-12:
            break
        _, side, k, new, scores.table = best
        setattr(scores, side, new)
        results.append(scores.result(len(results), (side, k)))
    return results + [dict(results[-1], edits=e, merge=None) for e in range(len(results), max_edits + 1)]


# --------------------------------------------------------------------------- object matching
#
# For the automatic flavour (the engine finds the objects itself): which predicted layer is
# which ground-truth object, by alpha alone, one to one (no grouping, no merge edits).


def match_layers_by_alpha(pred_alphas: list[torch.Tensor], gt_alphas: list[torch.Tensor],
                          min_iou: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one matching of predicted to ground-truth layers by alpha soft IoU.

    With ``iou[i][j] = alpha_soft_iou(pred_alphas[i], gt_alphas[j])``, a pair is *admissible*
    when ``iou >= min_iou`` (and ``iou > 0``). The matching is the set of admissible pairs,
    each predicted and each ground-truth layer in at most one, whose total IoU is largest
    (the assignment problem on ``w = iou if admissible else 0``, solved exactly by the
    Hungarian algorithm, :func:`_max_weight_assignment`; pairs of weight 0 are dropped). Ties
    between equally good matchings go to whichever the algorithm meets first (deterministic).

    Empty predicted layers (alpha sum 0) take no part: they are never matched (and callers
    should not count them as spurious). An empty ground-truth layer therefore matches nothing.

    Derived per-sample scores (:func:`liwi_core.eval.score_sample`, automatic flavour):
    matched IoU = ``sum of the pairs' IoU / len(gt_alphas)`` (an unmatched ground-truth
    layer scores 0), missed = ground-truth layers in no pair, spurious = non-empty predicted
    layers in no pair.

    Args:
        pred_alphas, gt_alphas: ``[B,1,H,W]`` alphas in [0, 1], any order.
        min_iou: smallest IoU of a match (0.5, the usual object-detection threshold).

    Returns:
        ``[(pred index, gt index, iou), ...]`` sorted by ground-truth index.
    """
    live = [i for i, a in enumerate(pred_alphas) if float(a.sum()) > 0]
    if not live or not gt_alphas:
        return []
    iou = [[alpha_soft_iou(pred_alphas[i], g) for g in gt_alphas] for i in live]
    weight = [[v if v >= min_iou and v > 0 else 0.0 for v in row] for row in iou]
    pairs = [(live[r], c, iou[r][c]) for r, c in _max_weight_assignment(weight) if weight[r][c] > 0]
    return sorted(pairs, key=lambda p: p[1])


TOUCH_ALPHA = 0.05  # where a layer is, for touching_order_right
TOUCH_PX = 3  # two layers closer than this touch


def touching_order_right(pairs: list[tuple[int, int, float]], gt_alphas: list[torch.Tensor]) -> float | None:
    """Share of the matched objects that touch which are stacked in the right order.

    Of the matched pairs ``(pred index, gt index, iou)`` of :func:`match_layers_by_alpha`
    (both stacks back to front, as ``LayerStack.layers``), take every two whose ground-truth
    objects touch: pixels with alpha above ``TOUCH_ALPHA`` (0.05) of one within ``TOUCH_PX``
    (3) px of the other's. Their order is right when the predicted layers are stacked as the
    true ones are (``pred_a < pred_b`` exactly when ``gt_a < gt_b``). Objects apart are left
    out: their order changes no pixel, and the truth's order of them is arbitrary.

    Returns:
        right pairs / touching pairs, in [0, 1]; None when no two matched objects touch.
    """
    from .filters import dilate

    near = {j: dilate((gt_alphas[j] > TOUCH_ALPHA).float(), TOUCH_PX) > 0.5 for _, j, _ in pairs}
    right = total = 0
    for a, (pa, ga, _) in enumerate(pairs):
        for pb, gb, _ in pairs[a + 1:]:
            if bool((near[ga] & (gt_alphas[gb] > TOUCH_ALPHA)).any()):
                total += 1
                right += (pa < pb) == (ga < gb)
    return right / total if total else None


PHOTO_OBJECT_INSIDE = 0.8  # share of a layer's alpha on the photo's object mask
PHOTO_OBJECT_COVER = 1 / 3  # share of the object's visible part the layer covers (masks are rough)


def photo_object_layer(pred_alphas: list[torch.Tensor], candidates: list[int], object_mask: torch.Tensor,
                       gt_alphas: list[torch.Tensor]) -> int | None:
    """Which unmatched predicted layer, if any, is the background photo's own main object.

    A scene made by placing objects on a real photo keeps the photo's own subject (an
    astronaut, a cup) in its ground-truth background, yet that subject is an object and
    automatic mode is right to find it. Given the photo's rough object mask ``M`` (cropped
    into the scene; :func:`liwi_core.benchmark_scenes.photo_object_mask`) and its part ``V =
    M * prod_j (1 - gt_alpha_j)`` that the placed objects leave visible, a candidate layer
    ``a`` qualifies when::

        sum(a * M) / sum(a) >= PHOTO_OBJECT_INSIDE (0.8)   and   sum(a * V) / sum(V) >= PHOTO_OBJECT_COVER (1/3)

    (the masks have 6-15 px of slack, so a layer on the object covers only part of the mask
    on a thin one). At most one layer is the object: the qualifying one covering most of ``V``.

    Args:
        pred_alphas: ``[B,1,H,W]`` predicted alphas.
        candidates: indices into ``pred_alphas`` of the non-empty layers no ground-truth layer matched.
        object_mask: ``[B,1,H,W]`` the photo's object mask in {0, 1}.
        gt_alphas: ``[B,1,H,W]`` the ground-truth layers' alphas (the placed objects).

    Returns:
        The index of that layer, or None.
    """
    visible = object_mask.float()
    for g in gt_alphas:
        visible = visible * (1 - g)
    total = float(visible.sum())
    if total <= 0:
        return None
    best, best_cover = None, PHOTO_OBJECT_COVER
    for i in candidates:
        a = pred_alphas[i]
        mass = float(a.sum())
        if mass <= 0 or float((a * object_mask).sum()) / mass < PHOTO_OBJECT_INSIDE:
            continue
        cover = float((a * visible).sum()) / total
        if cover >= best_cover:
            best, best_cover = i, cover
    return best


MERGED_COVER = 0.5  # share of a missed object's alpha one predicted layer holds, for merged_layers
MERGED_SIZE = 2.0  # that layer's alpha mass over the object's


def merged_layers(pred_alphas: list[torch.Tensor], gt_alphas: list[torch.Tensor],
                  pairs: list[tuple[int, int, float]]) -> list[int]:
    """The missed ground-truth layers that were found, but inside a larger layer: merged with
    something else (another object, or the photo the objects stand on).

    A ground-truth layer ``g`` in none of ``pairs`` (:func:`match_layers_by_alpha`) is merged
    when some non-empty predicted layer ``a`` holds most of it and is much larger::

        sum(min(a, g)) / sum(g) >= MERGED_COVER (0.5)   and   sum(a) > MERGED_SIZE (2) * sum(g)

    Each such layer counts once, whichever predicted layer holds it (a predicted layer may hold
    several). The other missed layers were not found, or found in part.

    Args:
        pred_alphas, gt_alphas: ``[B,1,H,W]`` alphas in [0, 1].
        pairs: the matching, ``[(pred index, gt index, iou), ...]``.

    Returns:
        The indices into ``gt_alphas`` of the merged layers, ascending.
    """
    matched = {j for _, j, _ in pairs}
    pred_masses = [float(a.sum()) for a in pred_alphas]
    merged = []
    for j, g in enumerate(gt_alphas):
        mass = float(g.sum())
        if j in matched or mass <= 0:
            continue
        if any(m > MERGED_SIZE * mass and float(torch.minimum(a, g).sum()) >= MERGED_COVER * mass
               for a, m in zip(pred_alphas, pred_masses)):
            merged.append(j)
    return merged


def _max_weight_assignment(weight: list[list[float]]) -> list[tuple[int, int]]:
    """Rows and columns paired one to one with the largest total weight (Hungarian algorithm,
    Kuhn-Munkres with potentials, O(n^2 m); exact). Every row of the smaller side is paired.

    Args:
        weight: ``n x m`` weights, ``n, m >= 1``.

    Returns:
        ``[(row, column), ...]``, ``min(n, m)`` pairs.
    """
    n, m = len(weight), len(weight[0])
    if n > m:
        return [(r, c) for c, r in _max_weight_assignment([list(col) for col in zip(*weight)])]
    cost = [[-w for w in row] for row in weight]  # minimise; rows 1..n, columns 1..m, 0 = none
    inf = float("inf")
    u, v, owner, way = [0.0] * (n + 1), [0.0] * (m + 1), [0] * (m + 1), [0] * (m + 1)
    for i in range(1, n + 1):
        owner[0], j0 = i, 0
        slack, used = [inf] * (m + 1), [False] * (m + 1)
        while owner[j0]:
            used[j0], i0, delta, j1 = True, owner[j0], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < slack[j]:
                        slack[j], way[j] = reduced, j0
                    if slack[j] < delta:
                        delta, j1 = slack[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    slack[j] -= delta
            j0 = j1
        while j0:  # augment along the alternating path
            j1 = way[j0]
            owner[j0], j0 = owner[j1], j1
    return sorted((owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j])
