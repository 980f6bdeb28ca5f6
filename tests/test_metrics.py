import math

import torch

from liwi_core.metrics import alpha_soft_iou, background_l1_in_hole, recompose_psnr, rgb_l1, shadow_l1


def test_identical_is_perfect():
    rgb, alpha = torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8)
    assert rgb_l1(rgb, rgb, alpha) == 0.0
    assert alpha_soft_iou(alpha, alpha) == 1.0
    assert recompose_psnr(rgb, rgb) == math.inf


def test_rgb_l1_counts_only_ground_truth_alpha():
    gt = torch.zeros(1, 3, 2, 2)
    pred = gt.clone()
    pred[..., 0, 0] = 0.3  # inside
    pred[..., 1, 1] = 1.0  # outside: ignored
    alpha = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    assert abs(rgb_l1(pred, gt, alpha) - 0.15) < 1e-6  # (0.3 + 0) / 2 pixels


def test_soft_iou_known_shift():
    gt = torch.zeros(1, 1, 4, 4)
    gt[..., :, :2] = 1.0
    pred = torch.roll(gt, 1, dims=-1)  # columns 1-2: overlap 1 column of 3 in the union
    assert abs(alpha_soft_iou(pred, gt) - 1 / 3) < 1e-6
    assert abs(alpha_soft_iou(gt * 0.5, gt) - 0.5) < 1e-6


def test_background_and_shadow_l1_hand_computed():
    gt = torch.full((1, 3, 2, 2), 0.5)
    pred = gt.clone()
    pred[..., 0, 0] = 0.7
    hole = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert abs(background_l1_in_hole(pred, gt, hole) - 0.1) < 1e-6
    gs = torch.ones(1, 1, 2, 2)
    gs[..., 0, 0] = 0.5
    ps = torch.ones(1, 1, 2, 2)
    ps[..., 0, 0] = 0.6
    assert abs(shadow_l1(ps, gs) - 0.1) < 1e-6
    assert abs(shadow_l1(ps.expand(1, 3, 2, 2), gs) - 0.1) < 1e-6


def test_psnr_known_value():
    a = torch.zeros(1, 3, 4, 4)
    assert abs(recompose_psnr(a + 0.1, a) - 20.0) < 1e-5


from liwi_core.metrics import dtw_align, match_stacks, merge_layers


def _layer(y0, y1, x0, x1, colour, h=20, w=20):
    t = torch.zeros(1, 4, h, w)
    t[:, :3, y0:y1, x0:x1] = torch.tensor(colour).view(1, 3, 1, 1)
    t[:, 3, y0:y1, x0:x1] = 1.0
    return t


BG = torch.cat([torch.full((1, 3, 20, 20), 0.5), torch.ones(1, 1, 20, 20)], 1)
RED, BLUE = _layer(2, 8, 2, 8, [1.0, 0, 0]), _layer(10, 18, 10, 18, [0, 0, 1.0])


def test_identical_stacks_match_perfectly():
    (first, *rest) = match_stacks([BG, RED, BLUE], [BG, RED, BLUE])
    assert first["cost"] == 0.0 and first["rgb_l1"] == 0.0 and first["alpha_iou"] == 1.0
    assert first["pairs"] == [(0, 0), (1, 1), (2, 2)]


def test_dtw_aligns_a_stack_with_an_extra_layer():
    extra = _layer(0, 1, 0, 1, [0, 1.0, 0])  # a tiny spurious layer
    cost, path = dtw_align([BG, RED, extra, BLUE], [BG, RED, BLUE])
    assert (1, 1) in path and (3, 2) in path and path[0] == (0, 0)
    assert cost > 0


def test_merge_edit_repairs_a_split_layer():
    whole = _layer(2, 18, 2, 18, [0, 1.0, 0])
    top, bottom = _layer(2, 10, 2, 18, [0, 1.0, 0]), _layer(10, 18, 2, 18, [0, 1.0, 0])
    scores = match_stacks([BG, top, bottom], [BG, whole])
    assert scores[0]["alpha_iou"] < 1.0
    assert scores[1]["cost"] < scores[0]["cost"]
    assert scores[1]["alpha_iou"] == 1.0 and scores[1]["rgb_l1"] == 0.0
    assert len(scores) == 6 and scores[5]["cost"] == scores[1]["cost"]


def test_merge_layers_is_the_over_rule():
    half = RED.clone()
    half[:, 3] *= 0.5
    merged = merge_layers(BLUE, half)
    assert torch.allclose(merged[:, 3], half[:, 3] + BLUE[:, 3] * (1 - half[:, 3]))
    assert torch.allclose(merged[0, :3, 4, 4], torch.tensor([1.0, 0, 0]))
