import math

import pytest
import torch

from helpers import scene
from liwi_core import Layer, LayerStack
from liwi_core.metrics import (_max_weight_assignment, alpha_soft_iou, background_l1_in_hole, dtw_align, dtw_path,
                               group_top_layers, layer_cost, match_layers_by_alpha, match_stacks, merge_layers,
                               recompose_psnr, rgb_l1, shadow_l1, shadow_l1_outside, false_shadow,
                               stack_layers)

# --------------------------------------------------------------------------- per-layer metrics


def test_identical_is_perfect():
    rgb, alpha = torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8)
    assert rgb_l1(rgb, rgb, alpha) == 0.0
    assert alpha_soft_iou(alpha, alpha) == 1.0
    assert recompose_psnr(rgb, rgb) == math.inf
    assert layer_cost(torch.cat([rgb, alpha], 1), torch.cat([rgb, alpha], 1)) == 0.0


def test_rgb_l1_counts_only_ground_truth_alpha():
    gt = torch.zeros(1, 3, 2, 2)
    pred = gt.clone()
    pred[..., 0, 0] = 0.3  # inside
    pred[..., 1, 1] = 1.0  # outside: ignored
    alpha = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    assert abs(rgb_l1(pred, gt, alpha) - 0.15) < 1e-6  # (0.3 + 0) / 2 pixels
    assert rgb_l1(pred, gt, torch.zeros_like(alpha)) == 0.0


def test_soft_iou_known_shift():
    gt = torch.zeros(1, 1, 4, 4)
    gt[..., :, :2] = 1.0
    pred = torch.roll(gt, 1, dims=-1)  # columns 1-2: overlap 1 column of 3 in the union
    assert abs(alpha_soft_iou(pred, gt) - 1 / 3) < 1e-6
    assert abs(alpha_soft_iou(gt * 0.5, gt) - 0.5) < 1e-6
    assert alpha_soft_iou(gt * 0, gt * 0) == 1.0


def test_background_and_shadow_l1_hand_computed():
    gt = torch.full((1, 3, 2, 2), 0.5)
    pred = gt.clone()
    pred[..., 0, 0] = 0.7
    hole = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert abs(background_l1_in_hole(pred, gt, hole) - 0.1) < 1e-6
    assert background_l1_in_hole(pred, gt, hole * 0) == 0.0
    gs = torch.ones(1, 1, 2, 2)
    gs[..., 0, 0] = 0.5
    ps = torch.ones(1, 1, 2, 2)
    ps[..., 0, 0] = 0.6
    ps[..., 1, 1] = 0.2  # outside the ground-truth shadow: ignored
    assert abs(shadow_l1(ps, gs) - 0.1) < 1e-6
    assert abs(shadow_l1(ps.expand(1, 3, 2, 2), gs) - 0.1) < 1e-6


def test_false_shadow_counts_darkening_outside_the_true_shadow_and_object():
    gt = torch.ones(1, 1, 2, 3)
    gt[..., 0, 0] = 0.5  # the true shadow: 0.5 of darkening in all
    alpha = torch.zeros(1, 1, 2, 3)
    alpha[..., 1, 2] = 1.0  # the object itself
    pred = gt.clone()
    assert false_shadow(pred, gt, alpha) == 0.0  # the truth has no false shadow
    pred[..., 0, 1] = 0.8  # 0.2 of false darkening
    pred[..., 1, 2] = 0.0  # under the object: hidden, not counted
    pred[..., 0, 0] = 1.0  # missing the true shadow is shadow_l1's business
    assert abs(false_shadow(pred, gt, alpha) - 0.4) < 1e-6
    assert abs(false_shadow(pred.expand(1, 3, 2, 3), gt, alpha) - 0.4) < 1e-6
    assert false_shadow(pred, torch.ones_like(gt), alpha) == 0.0  # no true shadow


def test_psnr_known_value():
    a = torch.zeros(1, 3, 4, 4)
    assert abs(recompose_psnr(a + 0.1, a) - 20.0) < 1e-5


def _layer(y0, y1, x0, x1, colour, h=20, w=20, alpha=1.0):
    t = torch.zeros(1, 4, h, w)
    t[:, :3, y0:y1, x0:x1] = torch.tensor(colour).view(1, 3, 1, 1)
    t[:, 3, y0:y1, x0:x1] = alpha
    return t


def test_layer_cost_of_a_known_shift():
    gt = _layer(2, 6, 2, 6, [1.0, 0, 0], 8, 8)
    pred = _layer(2, 6, 4, 8, [1.0, 0, 0], 8, 8)  # moved 2 px right: overlap 8 px, union 24 px
    # RGB L1: 8 of the 16 ground-truth pixels are black in pred, error 1/3 each -> 1/6
    assert abs(rgb_l1(pred[:, :3], gt[:, :3], gt[:, 3:]) - 1 / 6) < 1e-6
    assert abs(alpha_soft_iou(pred[:, 3:], gt[:, 3:]) - 1 / 3) < 1e-6
    assert abs(layer_cost(pred, gt) - (1 / 6 + 2 / 3) / 2) < 1e-6


def test_merge_layers_is_the_over_rule():
    lower = _layer(0, 4, 0, 4, [0, 0, 1.0], 4, 4, alpha=0.5)
    upper = _layer(0, 4, 0, 2, [1.0, 0, 0], 4, 4, alpha=0.5)
    merged = merge_layers(lower, upper)
    # both present: a = .5 + .5 * .5 = .75, F = (.5 red + .25 blue) / .75
    assert torch.allclose(merged[0, :, 0, 0], torch.tensor([2 / 3, 0, 1 / 3, 0.75]))
    assert torch.allclose(merged[0, :, 0, 3], torch.tensor([0, 0, 1.0, 0.5]))  # lower only
    empty = torch.zeros(1, 4, 4, 4)
    assert torch.equal(merge_layers(empty, empty), empty)  # no colour where a = 0


# --------------------------------------------------------------------------- DTW and merge edits

BG = torch.cat([torch.full((1, 3, 20, 20), 0.5), torch.ones(1, 1, 20, 20)], 1)
RED, BLUE = _layer(2, 8, 2, 8, [1.0, 0, 0]), _layer(10, 18, 10, 18, [0, 0, 1.0])
# overlaps RED, so grouping keeps the two apart and their order matters
GREEN = _layer(5, 12, 5, 12, [0, 1.0, 0])


def test_dtw_path_on_a_hand_matrix():
    mean, path = dtw_path([[0.0, 5.0], [5.0, 0.0], [5.0, 1.0]])
    assert path == [(0, 0), (1, 1), (2, 1)] and abs(mean - 1 / 3) < 1e-12
    mean, path = dtw_path([[0.5]])
    assert path == [(0, 0)] and mean == 0.5
    mean, path = dtw_path([[0.0, 0.0, 0.0]])  # one layer against three: matched to all
    assert path == [(0, 0), (0, 1), (0, 2)] and mean == 0.0


def test_identical_stacks_match_perfectly():
    for group in (True, False):
        first, *rest = match_stacks([BG, RED, GREEN], [BG, RED, GREEN], group=group)
        assert first["cost"] == 0.0 and first["rgb_l1"] == 0.0 and first["alpha_iou"] == 1.0
        assert first["pairs"] == [(0, 0), (1, 1), (2, 2)]
        assert len(rest) == 5 and all(r["cost"] == 0.0 and r["merge"] is None for r in rest)


def test_dtw_aligns_a_stack_with_an_extra_layer():
    extra = _layer(0, 1, 0, 1, [0, 1.0, 0])  # a tiny spurious layer between RED and BLUE
    cost, path = dtw_align([BG, RED, extra, BLUE], [BG, RED, BLUE])
    assert path[0] == (0, 0) and (1, 1) in path and (3, 2) in path and len(path) == 4
    assert cost > 0
    scores = match_stacks([BG, RED, extra, BLUE], [BG, RED, BLUE], group=False)
    assert scores[1]["cost"] < scores[0]["cost"] and scores[1]["merge"][0] == "pred"
    assert scores[1]["alpha_iou"] > 0.99


def test_grouping_makes_the_order_of_separate_objects_irrelevant():
    # RED and BLUE do not overlap: any order is the same picture
    assert match_stacks([BG, BLUE, RED], [BG, RED, BLUE])[0]["cost"] == 0.0
    assert len(group_top_layers([BG, RED, BLUE])) == 2
    assert len(group_top_layers([BG, RED, GREEN])) == 3
    # without grouping DTW keeps the order and the swap costs something at 0 edits
    assert match_stacks([BG, BLUE, RED], [BG, RED, BLUE], group=False)[0]["cost"] > 0.1


def test_the_order_of_overlapping_objects_matters():
    swapped = match_stacks([BG, GREEN, RED], [BG, RED, GREEN], group=True)
    assert swapped[0]["cost"] > 0.1 and swapped[0]["pairs"] == [(0, 0), (1, 1), (2, 2)]
    # merging the two objects on both sides forgives the split but not the order: the
    # overlap shows a different colour
    assert swapped[2]["gt_layers"] == swapped[2]["pred_layers"] == 2
    assert swapped[2]["alpha_iou"] == 1.0 and swapped[2]["rgb_l1"] > 0.01


def test_merge_edit_repairs_a_split_layer():
    whole = _layer(2, 18, 2, 18, [0, 1.0, 0])
    top, bottom = _layer(2, 10, 2, 18, [0, 1.0, 0]), _layer(10, 18, 2, 18, [0, 1.0, 0])
    scores = match_stacks([BG, top, bottom], [BG, whole], group=False)
    assert scores[0]["alpha_iou"] < 1.0
    assert scores[1]["cost"] < scores[0]["cost"] and scores[1]["merge"] == ("pred", 1)
    assert scores[1]["alpha_iou"] == 1.0 and scores[1]["rgb_l1"] == 0.0 and scores[1]["cost"] == 0.0
    assert len(scores) == 6 and scores[5]["cost"] == 0.0 and scores[5]["edits"] == 5
    # the ground truth is editable too: a prediction that missed a split
    scores = match_stacks([BG, whole], [BG, top, bottom], group=False)
    assert scores[0]["cost"] > 0 and scores[1]["merge"] == ("gt", 1) and scores[1]["cost"] == 0.0


def test_edits_never_make_the_cost_worse_and_stop_at_two_layers():
    g = torch.Generator().manual_seed(1)
    pred = [BG] + [torch.rand(1, 4, 20, 20, generator=g) for _ in range(4)]
    gt = [BG, RED, GREEN]
    scores = match_stacks(pred, gt, group=False)
    costs = [s["cost"] for s in scores]
    assert costs == sorted(costs, reverse=True) and costs[-1] < costs[0]
    assert all(s["pred_layers"] >= 2 and s["gt_layers"] >= 2 for s in scores)
    # two layers each: nothing may be merged, even though merging both into one would match
    scores = match_stacks([BG, RED], [BG, BLUE], group=False)
    assert all(s["merge"] is None and s["cost"] == scores[0]["cost"] for s in scores)


def test_max_edits_and_empty_input():
    whole = _layer(2, 18, 2, 18, [0, 1.0, 0])
    assert len(match_stacks([BG, whole], [BG, whole], max_edits=2)) == 3
    with pytest.raises(ValueError):
        match_stacks([], [BG])


def test_a_real_stack_against_itself_and_a_shifted_copy():
    image, bg, alpha, shadow, _ = scene(48, 64)
    fg = torch.tensor([0.1, 0.2, 0.8]).view(1, 3, 1, 1).expand(1, 3, 48, 64)
    stack = LayerStack(background=bg, layers=[Layer(torch.cat([fg, alpha], 1), shadow, "disc", 0)])
    layers = stack_layers(stack)
    assert len(layers) == 2 and torch.equal(layers[0][:, 3], torch.ones(1, 48, 64))
    perfect = match_stacks(layers, layers)
    assert all(s["cost"] == 0.0 and s["alpha_iou"] == 1.0 and s["rgb_l1"] == 0.0 for s in perfect)
    moved = [layers[0], torch.roll(layers[1], 3, dims=-1)]
    worse = match_stacks(moved, layers)[0]
    assert 0.5 < worse["alpha_iou"] < 1.0 and worse["cost"] > 0.05
    # the colour is the same everywhere (straight alpha), so only the alpha is off
    assert worse["rgb_l1"] == 0.0


# --------------------------------------------------------------------------- object matching (automatic flavour)


def _alpha(y0, y1, x0, x1, value=1.0):
    return _layer(y0, y1, x0, x1, [1.0, 1.0, 1.0], alpha=value)[:, 3:]


A, B, C = _alpha(0, 6, 0, 6), _alpha(10, 16, 10, 16), _alpha(0, 6, 12, 18)  # three disjoint squares


def test_matching_identical_objects_in_any_order():
    assert match_layers_by_alpha([A, B, C], [A, B, C]) == [(0, 0, 1.0), (1, 1, 1.0), (2, 2, 1.0)]
    assert match_layers_by_alpha([C, A, B], [A, B, C]) == [(1, 0, 1.0), (2, 1, 1.0), (0, 2, 1.0)]


def test_matching_a_missed_and_a_spurious_object():
    assert match_layers_by_alpha([A], [A, B]) == [(0, 0, 1.0)]  # B missed
    assert match_layers_by_alpha([B, A], [A]) == [(1, 0, 1.0)]  # B spurious
    assert match_layers_by_alpha([], [A]) == [] and match_layers_by_alpha([A], []) == []


def test_matching_needs_the_iou_threshold():
    shifted = torch.roll(A, 2, dims=-1)  # overlap 4 of 8 columns: IoU 0.5
    assert alpha_soft_iou(shifted, A) == 0.5
    assert match_layers_by_alpha([shifted], [A]) == [(0, 0, 0.5)]  # >= min_iou counts
    assert match_layers_by_alpha([shifted], [A], min_iou=0.6) == []
    far = torch.roll(A, 4, dims=-1)  # IoU 2/10
    assert match_layers_by_alpha([far], [A]) == []
    assert match_layers_by_alpha([A * 0.4], [A]) == []  # soft: a faint copy, IoU 0.4


def test_two_predictions_competing_for_one_truth():
    near = torch.roll(A, 1, dims=-1)  # IoU 5/7
    pairs = match_layers_by_alpha([near, A], [A])
    assert pairs == [(1, 0, 1.0)]  # the better one wins, whatever its position; the other is unmatched
    pairs = match_layers_by_alpha([near, A], [A, near])  # one each, both perfect
    assert pairs == [(1, 0, 1.0), (0, 1, 1.0)]


def test_empty_predicted_layers_take_no_part():
    empty = torch.zeros_like(A)
    assert match_layers_by_alpha([empty, A], [A]) == [(1, 0, 1.0)]
    assert match_layers_by_alpha([empty], [empty]) == []  # soft IoU would be 1, but nothing is there


def test_matching_maximises_the_total_not_greedy():
    # greedy (highest first) takes (0, 0) = 0.9 and leaves row 1 without a partner: 0.9 in all;
    # the assignment takes (0, 1) + (1, 0) = 1.65
    assert _max_weight_assignment([[0.9, 0.8], [0.85, 0.0]]) == [(0, 1), (1, 0)]
    # with alphas: two overlapping truths X (columns 0-9) and Y (4-13); P0 (1-10) fits X best
    # (9/11) and Y too (7/13), P1 (0-5) fits only X (6/10). Greedy: P0-X, then Y missed and P1
    # spurious (total 0.82); the assignment: P0-Y + P1-X (total 1.14), nothing missed
    x, y = _alpha(0, 10, 0, 10), _alpha(0, 10, 4, 14)
    p0, p1 = _alpha(0, 10, 1, 11), _alpha(0, 10, 0, 6)
    pairs = match_layers_by_alpha([p0, p1], [x, y])
    assert [(p, g) for p, g, _ in pairs] == [(1, 0), (0, 1)]
    assert abs(pairs[0][2] - 0.6) < 1e-6 and abs(pairs[1][2] - 7 / 13) < 1e-6


def test_assignment_is_optimal_on_random_matrices():
    import itertools
    import random

    rnd = random.Random(0)
    for _ in range(300):
        n, m = rnd.randint(1, 5), rnd.randint(1, 5)
        w = [[rnd.choice([0.0, 0.5, rnd.random()]) for _ in range(m)] for _ in range(n)]
        pairs = _max_weight_assignment(w)
        assert len(pairs) == min(n, m)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        if n <= m:
            best = max(sum(w[i][p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            best = max(sum(w[p[j]][j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert abs(sum(w[r][c] for r, c in pairs) - best) < 1e-9


def test_shadow_l1_outside_leaves_out_the_pixels_under_the_object():
    gt = torch.tensor([[[[0.5, 0.5, 1.0]]]])
    alpha = torch.tensor([[[[1.0, 0.0, 0.0]]]])  # the first shadow pixel lies under the object
    pred = torch.tensor([[[[1.0, 0.7, 0.2]]]])
    assert abs(shadow_l1(pred, gt) - 0.35) < 1e-6  # (0.5 + 0.2) / 2, under the object too
    assert abs(shadow_l1_outside(pred, gt, alpha) - 0.2) < 1e-6  # only the uncovered one
    assert abs(shadow_l1_outside(pred.expand(1, 3, 1, 3), gt, alpha) - 0.2) < 1e-6
    assert shadow_l1_outside(pred, gt, torch.ones_like(alpha)) == 0.0  # all of it hidden


def test_the_photos_own_object_is_the_unmatched_layer_lying_on_its_mask():
    from liwi_core.metrics import photo_object_layer

    subject = _alpha(0, 12, 0, 12)  # the photo's object mask (rough)
    placed = _alpha(6, 12, 6, 12)  # a pasted object in front of a quarter of it
    on_it = _alpha(0, 11, 0, 11) * (1 - placed)  # a layer on its visible part
    beside = _alpha(12, 18, 12, 18)  # a layer elsewhere
    sliver = _alpha(0, 2, 0, 12)  # on the object but a small part of it: 24 of its 108 visible pixels
    assert photo_object_layer([on_it, beside], [0, 1], subject, [placed]) == 0
    assert photo_object_layer([beside], [0], subject, [placed]) is None
    assert photo_object_layer([sliver], [0], subject, [placed]) is None  # covers under a third of it
    half_out = torch.roll(on_it, 9, dims=-1)  # most of it off the mask
    assert photo_object_layer([half_out], [0], subject, [placed]) is None
    # only the candidates count, and of two layers on it the one covering more is the object
    assert photo_object_layer([on_it, beside], [1], subject, [placed]) is None
    part = _alpha(0, 6, 0, 12)
    assert photo_object_layer([part, on_it], [0, 1], subject, [placed]) == 1
    # all of it hidden by the pasted objects: nothing of it can be found
    assert photo_object_layer([on_it], [0], subject, [subject]) is None


def test_merged_layers_are_missed_objects_held_by_a_larger_layer():
    from liwi_core.metrics import match_layers_by_alpha, merged_layers

    small = _alpha(0, 4, 0, 4)  # 16 px
    subject = _alpha(0, 12, 0, 12)  # what it stands on, as one layer with it: 144 px
    apart = _alpha(14, 18, 14, 18)
    gt = [small, apart]
    pred = [subject]
    pairs = match_layers_by_alpha(pred, gt)
    assert pairs == [] and merged_layers(pred, gt, pairs) == [0]  # held by the subject's layer; the other unseen
    # found on its own: matched, not merged, even beside the larger layer
    pred = [subject * (1 - small), small, apart]
    pairs = match_layers_by_alpha(pred, gt)
    assert len(pairs) == 2 and merged_layers(pred, gt, pairs) == []
    # a layer holding under half of it, or not much larger than it, is no merge
    assert merged_layers([_alpha(0, 1, 0, 12) + _alpha(2, 12, 4, 12)], [small], []) == []
    assert merged_layers([_alpha(0, 5, 0, 6)], [small], []) == []  # 30 px: under twice 16
    assert merged_layers([_alpha(0, 6, 0, 6)], [small], []) == [0]  # 36 px
    # two objects in one layer both count; an empty truth layer never does
    assert merged_layers([_alpha(0, 18, 0, 18)], [small, apart, torch.zeros_like(small)], []) == [0, 1]


def test_touching_order_right_counts_only_objects_that_touch():
    from liwi_core.metrics import match_layers_by_alpha, touching_order_right

    def box(y0, y1, x0, x1):
        a = torch.zeros(1, 1, 40, 60)
        a[..., y0:y1, x0:x1] = 1.0
        return a

    back, front, far = box(5, 30, 5, 30), box(20, 38, 28, 45), box(2, 10, 50, 58)
    truth = [back, front]  # back to front
    assert touching_order_right(match_layers_by_alpha([back, front], truth), truth) == 1.0
    assert touching_order_right(match_layers_by_alpha([front, back], truth), truth) == 0.0
    # objects apart: their order changes no pixel
    assert touching_order_right(match_layers_by_alpha([far, back], [back, far]), [back, far]) is None
    # three objects, one apart: only the touching pair counts
    truth = [back, front, far]
    assert touching_order_right(match_layers_by_alpha([far, back, front], truth), truth) == 1.0
