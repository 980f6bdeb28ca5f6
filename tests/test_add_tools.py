"""ADD tools, one at a time: cut-out, background cleaning, harmonisation, placement,
cast shadows and prompt degradation."""

from pathlib import Path

import pytest
import torch

from liwi_core.add import tools
from liwi_core.errors import LiWiError
from liwi_core.filters import bounding_box
from liwi_core.metrics import alpha_soft_iou, background_l1_in_hole

from helpers import scene

EX = Path(__file__).resolve().parent.parent / "example_images"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cutout(h: int, w: int, colour=(0.9, 0.3, 0.2), soft: float = 2.0) -> torch.Tensor:
    """An RGBA ellipse filling most of an ``h x w`` crop, with a soft rim."""
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    r = torch.sqrt(((yy - (h - 1) / 2) / (h / 2 - 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2 - 2)) ** 2)
    alpha = ((1 - r) * min(h, w) / (2 * soft) + 0.5).clamp(0, 1)[None, None]
    rgb = torch.tensor(colour).view(1, 3, 1, 1).expand(1, 3, h, w) * (alpha > 0)
    return torch.cat([rgb, alpha], dim=1)


def _standing(h: int = 120, w: int = 160, box=(40, 100, 60, 90)) -> torch.Tensor:
    """Alpha of a box-shaped object standing with its base on row ``box[1] - 1``."""
    alpha = torch.zeros(1, 1, h, w)
    y0, y1, x0, x1 = box
    alpha[..., y0:y1, x0:x1] = 1.0
    return alpha


# --------------------------------------------------------------------------- determinism

def test_same_seed_same_sample_and_other_seeds_differ():
    cuts = [_cutout(60, 30), _cutout(40, 50, (0.2, 0.5, 0.9)), _cutout(30, 30, (0.5, 0.9, 0.2))]

    def make(seed):
        g = _gen(seed)
        placed = tools.place_objects((128, 160), cuts, g)
        shadows = [tools.cast_shadow(rgba[:, 3:4], g) for rgba, _ in placed]
        prompts = [tools.degrade_prompts(rgba[:, 3:4], g) for rgba, _ in placed]
        return placed, shadows, prompts

    a, b, c = make(7), make(7), make(8)
    assert [box for _, box in a[0]] == [box for _, box in b[0]]
    for (ra, _), (rb, _) in zip(a[0], b[0]):
        assert torch.equal(ra, rb)
    for (sa, pa), (sb, pb) in zip(a[1], b[1]):
        assert torch.equal(sa, sb) and pa == pb
    for pa, pb in zip(a[2], b[2]):
        assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    assert [box for _, box in a[0]] != [box for _, box in c[0]] or a[1][0][1] != c[1][0][1]


def test_no_hidden_global_randomness():
    """Tools draw only from the generator passed in: the global RNG state is irrelevant."""
    cuts = [_cutout(50, 30)]
    torch.manual_seed(1)
    first = tools.place_objects((100, 120), cuts, _gen(3))
    torch.manual_seed(2)
    second = tools.place_objects((100, 120), cuts, _gen(3))
    assert first[0][1] == second[0][1] and torch.equal(first[0][0], second[0][0])


# --------------------------------------------------------------------------- placement

@pytest.mark.parametrize("seed", range(12))
def test_place_objects_inside_canvas_back_to_front(seed):
    h, w = 120, 160
    block = torch.ones(1, 4, 30, 60)  # opaque to its very edge: no margin to hide a cut
    cuts = [_cutout(80, 40), _cutout(50, 90, (0.2, 0.5, 0.9)), block]
    placed = tools.place_objects((h, w), cuts, _gen(seed), ground=(0.55, 0.95), scale=(0.25, 0.6))
    assert 1 <= len(placed) <= 3
    bottoms = [box[1] for _, box in placed]
    assert bottoms == sorted(bottoms)  # back to front: contact points descend the frame
    for rgba, (y0, y1, x0, x1) in placed:
        assert rgba.shape == (1, 4, h, w)
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w
        alpha = rgba[:, 3:4]
        # never cut off: nothing on the frame's border, nothing outside its box
        assert float(alpha[..., 0, :].sum() + alpha[..., -1, :].sum() + alpha[..., :, 0].sum()
                     + alpha[..., :, -1].sum()) == 0.0
        outside = alpha.clone()
        outside[..., y0:y1, x0:x1] = 0
        assert float(outside.sum()) == 0.0
        # contact on the sampled ground line, size within the scale range (or shrunk to fit)
        assert 0.55 * (h - 1) <= y1 <= 0.95 * (h - 1) + 1.5
        assert y1 - y0 <= 0.6 * h + 1
    for i, (back, _) in enumerate(placed):  # a front object hides at most ~60% of one behind
        for front, _ in placed[i + 1:]:
            covered = float((front[:, 3:4] * back[:, 3:4]).sum()) / float(back[:, 3:4].sum())
            assert covered <= 0.6 + 1e-6


def test_place_objects_keeps_the_whole_object_and_its_shape():
    cut = _cutout(60, 30)
    (rgba, (y0, y1, x0, x1)), = tools.place_objects((200, 200), [cut], _gen(0), scale=(0.3, 0.3))
    assert y1 - y0 == 60 and x1 - x0 == 30  # 0.3 * 200 = 60 px high, aspect kept
    assert torch.allclose(rgba[..., y0:y1, x0:x1], cut, atol=1e-5)


def test_place_objects_widest_object_still_clear_of_the_edges():
    wide = torch.ones(1, 4, 20, 200)  # opaque to its edges, wider than the canvas
    for seed in range(8):
        (rgba, (y0, y1, x0, x1)), = tools.place_objects((100, 120), [wide], _gen(seed))
        assert x0 >= 1 and x1 <= 119 and y0 >= 1
        assert float(rgba[:, 3, :, 0].sum() + rgba[:, 3, :, -1].sum() + rgba[:, 3, 0, :].sum()) == 0.0


def test_place_objects_shrinks_what_cannot_fit():
    wide = _cutout(30, 200)  # much wider than the canvas at any sampled height
    (rgba, (y0, y1, x0, x1)), = tools.place_objects((100, 120), [wide], _gen(1), scale=(0.5, 0.6))
    assert x0 >= 1 and x1 <= 119 and y1 - y0 < 0.5 * 100
    assert float(rgba[:, 3:4].sum()) > 0


def test_place_objects_anchored_bust_sits_on_the_bottom_edge():
    placed = tools.place_objects((100, 120), [_cutout(40, 30), _cutout(50, 40)], _gen(2),
                                 anchored=[False, True])
    boxes = [box for _, box in placed]
    assert boxes[-1][1] == 100  # the bust is in front, its cut edge on the frame's bottom
    assert all(b[1] < 100 for b in boxes[:-1])


def test_place_objects_drops_what_would_hide_another():
    """Two objects that always overlap completely: the second is dropped, not stacked."""
    big = _cutout(90, 110)
    placed = tools.place_objects((100, 120), [big, big], _gen(0), ground=(0.95, 0.95), scale=(0.9, 0.9))
    assert len(placed) == 1


def test_resize_is_premultiplied_no_dark_fringe():
    """A white object shrunk and grown keeps white edges (a straight-colour resize would mix
    in the black of the transparent pixels)."""
    cut = _cutout(80, 80, colour=(1.0, 1.0, 1.0), soft=4.0)
    for height in (0.3, 0.9):
        (rgba, _), = tools.place_objects((100, 100), [cut], _gen(0), scale=(height, height), ground=(0.95, 0.95))
        edge = (rgba[:, 3:4] > 0.02) & (rgba[:, 3:4] < 0.9)
        assert bool(edge.any())
        assert float(rgba[:, :3][edge.expand(-1, 3, -1, -1)].min()) > 0.98


# --------------------------------------------------------------------------- harmonisation

def test_harmonize_moves_colour_toward_the_background_and_keeps_alpha():
    h, w = 100, 120
    rgba = torch.zeros(1, 4, h, w)
    box = (30, 90, 40, 80)
    g = _gen(0)
    rgba[..., box[0]:box[1], box[2]:box[3]] = torch.tensor([0.9, 0.2, 0.2, 1.0]).view(1, 4, 1, 1)
    rgba[:, :3, box[0]:box[1], box[2]:box[3]] += 0.05 * torch.randn(1, 3, 60, 40, generator=g)
    rgba[..., 30:90, 40:42] = torch.tensor([0.8, 0.3, 0.25, 0.5]).view(1, 4, 1, 1)  # a soft edge
    rgba = rgba.clamp(0, 1)
    noise = 0.05 * torch.randn(1, 3, h, w, generator=g)
    background = (torch.tensor([0.2, 0.4, 0.8]).view(1, 3, 1, 1) + noise).clamp(0, 1)
    out = tools.harmonize(rgba, background, box, strength=0.5)
    assert torch.equal(out[:, 3:4], rgba[:, 3:4])
    assert out.min() >= 0 and out.max() <= 1
    inside = rgba[:, 3:4] > 0.5
    mean = lambda t: t[:, :3][inside.expand(-1, 3, -1, -1)].view(3, -1).mean(dim=1)  # noqa: E731
    target = background[..., box[0]:box[1], box[2]:box[3]].mean(dim=(0, 2, 3))
    before = (mean(rgba) - target).norm()
    after = (mean(out) - target).norm()
    assert after < 0.75 * before
    # stronger harmonisation moves further; none leaves the object as it was
    assert (mean(tools.harmonize(rgba, background, box, strength=1.0)) - target).norm() < after
    assert torch.allclose(tools.harmonize(rgba, background, box, strength=0.0), rgba)


def test_harmonize_plain_background_does_not_wash_the_object_out():
    cut = torch.zeros(1, 4, 60, 60)
    cut[..., 10:50, 10:50] = 1.0
    cut[:, :3, 10:50, 10:30] = 0.1  # half dark, half white: strong contrast
    flat = torch.full((1, 3, 60, 60), 0.5)
    out = tools.harmonize(cut, flat, (10, 50, 10, 50), strength=0.5)
    lum = out[:, :3].mean(dim=1)[0, 10:50, 10:50]
    assert float(lum.std()) > 0.8 * float(cut[:, :3].mean(dim=1)[0, 10:50, 10:50].std())


# --------------------------------------------------------------------------- prompts

def _check_prompts(alpha, prompts):
    binary = alpha > 0.5
    assert set(prompts) == {"eroded", "dilated", "blurred", "box", "scribble"}
    for name, m in prompts.items():
        assert m.shape == alpha.shape and float(m.sum()) > 0, name
        assert float(m.min()) >= 0 and float(m.max()) <= 1, name
        if name != "blurred":
            assert torch.equal(m, (m > 0.5).float()), f"{name} is not binary"
    assert bool((prompts["eroded"] <= binary.float()).all())
    assert bool((prompts["dilated"] >= binary.float()).all())
    assert bool((prompts["scribble"] <= binary.float()).all())
    assert bool((prompts["box"] >= (alpha > 0.01).float()).all())
    assert float(prompts["eroded"].sum()) < float(binary.sum()) < float(prompts["dilated"].sum())
    assert float(prompts["blurred"].max()) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_degrade_prompts(seed):
    _, _, alpha, _, _ = scene(seed=seed)
    prompts = tools.degrade_prompts(alpha, _gen(seed))
    _check_prompts(alpha, prompts)
    # the box is a rectangle grown a few percent around the object
    by0, by1, bx0, bx1 = bounding_box(prompts["box"])
    ay0, ay1, ax0, ax1 = bounding_box(alpha, 0.01)
    assert by0 <= ay0 and by1 >= ay1 and bx0 <= ax0 and bx1 >= ax1
    assert float(prompts["box"].sum()) == (by1 - by0) * (bx1 - bx0)
    # the scribble is a few strokes, not the whole object
    assert float(prompts["scribble"].sum()) < 0.8 * float((alpha > 0.5).sum())


def test_degrade_prompts_thin_object_and_empty_alpha():
    thin = torch.zeros(1, 1, 200, 100)
    thin[..., 10:190, 48:52] = 1.0  # 4 px wide: a 2-6% erosion of its height would erase it
    _check_prompts(thin, tools.degrade_prompts(thin, _gen(0)))
    empty = tools.degrade_prompts(torch.zeros(1, 1, 50, 50), _gen(0))
    assert all(float(m.sum()) == 0 for m in empty.values())


# --------------------------------------------------------------------------- cast shadows

def test_cast_shadow_darkens_the_base_not_the_sky():
    alpha = _standing()
    for seed in range(6):
        # the light in front of the object (drawn one time in five behind it, tested below)
        shadow, params = tools.cast_shadow(alpha, _gen(seed), angle=20.0 + 20.0 * seed, length=0.2 + 0.15 * seed,
                                           softness=0.02 + 0.015 * seed,
                                           second=0.0)
        assert shadow.shape == (1, 3, 120, 160)
        assert {"angle", "length", "softness", "opacity", "contact", "tint", "second"} <= set(params)
        assert 0.25 <= params["opacity"] <= 0.85
        base = shadow[..., 90:100, 50:100]  # at and around the object's contact line
        assert float(base.min()) < 0.85
        assert torch.all(shadow[..., :30, :] == 1.0)  # far above the object: untouched
        assert torch.all(shadow[..., 110:, :] == 1.0)  # the light is behind the viewer: nothing in front
        assert float(shadow.min()) >= 0


def test_cast_shadow_draws_are_diverse():
    """Over many draws: shadows toward the viewer, second lights, tints of both kinds."""
    alpha = _standing()
    params = [tools.cast_shadow(alpha, _gen(seed))[1] for seed in range(60)]
    toward = [p for p in params if p["angle"] > 180]
    assert 4 <= len(toward) <= 24 and all(195 <= p["angle"] <= 345 for p in toward)
    assert any(p["second"] > 0 for p in params) and any(p["second"] == 0 for p in params)
    assert any(p["tint"][0] < p["tint"][2] for p in params) and any(p["tint"][0] > p["tint"][2] for p in params)
    front, _ = tools.cast_shadow(alpha, _gen(0), angle=270.0, length=1.0, opacity=0.7, second=0.0)
    assert float(1 - front[..., 100:, :].mean()) > 0.01  # falls toward the viewer, below the base


def test_cast_shadow_second_light_adds_darkening():
    alpha = _standing()
    one, _ = tools.cast_shadow(alpha, _gen(0), angle=40.0, second=0.0)
    two, _ = tools.cast_shadow(alpha, _gen(0), angle=40.0, second=0.6, second_angle=150.0)
    assert torch.all(two <= one + 1e-6) and float((one - two).sum()) > 1.0


def test_cast_shadow_overrides_and_direction():
    alpha = _standing()
    left, p = tools.cast_shadow(alpha, _gen(0), angle=160.0, length=1.0, opacity=0.7, second=0.0)
    right, _ = tools.cast_shadow(alpha, _gen(0), angle=20.0, length=1.0, opacity=0.7, second=0.0)
    assert p["angle"] == 160.0 and p["length"] == 1.0 and p["opacity"] == 0.7
    dark = lambda s: 1.0 - s.mean(dim=1)[0]  # noqa: E731
    assert float(dark(left)[:, :60].sum()) > 5 * float(dark(left)[:, 90:].sum())
    assert float(dark(right)[:, 90:].sum()) > 5 * float(dark(right)[:, :60].sum())


# --------------------------------------------------------------------------- extraction, cleaning

@pytest.mark.parametrize("refine", [True, False])
def test_extract_foreground_on_the_synthetic_disc(refine):
    """A rough mask (6 px of slack) refined with GrabCut, or a tight mask taken as it is:
    either way the soft rim outside the tight mask's 0.5 contour is kept."""
    image, _, alpha, _, rough = scene()
    mask = rough if refine else (alpha > 0.5).float()
    cut, (y0, y1, x0, x1) = tools.extract_foreground(image, mask, refine=refine, return_box=True)
    assert cut.dim() == 4 and cut.shape[:2] == (1, 4) and cut.shape[-2:] == (y1 - y0, x1 - x0)
    assert torch.equal(tools.extract_foreground(image, mask, refine=refine), cut)
    # the crop is the object's alpha box and a 2 px transparent margin
    ty0, ty1, tx0, tx1 = bounding_box(alpha, 0.01)
    assert max(abs(y0 - (ty0 - 2)), abs(y1 - (ty1 + 2)), abs(x0 - (tx0 - 2)), abs(x1 - (tx1 + 2))) <= 4
    assert float(cut[:, 3, 0, :].max()) < 0.05 and float(cut[:, 3, -1, :].max()) < 0.05
    truth = torch.zeros_like(alpha)
    truth[..., y0:y1, x0:x1] = cut[:, 3:4]
    assert alpha_soft_iou(truth, alpha) >= 0.9
    core = (cut[:, 3:4] > 0.95).expand(-1, 3, -1, -1)
    colour = cut[:, :3][core].view(3, -1).mean(dim=1)
    assert torch.allclose(colour, torch.tensor([0.1, 0.2, 0.8]), atol=0.05)


def test_extract_foreground_stays_near_its_mask():
    """The coffee photo: GrabCut takes the saucer's dark shadow below the rough mask for
    saucer; the cut-out still ends within a soft margin of the mask (2-3% of its size)."""
    from liwi_core.filters import dilate
    from liwi_core.imageio import load_image, load_mask

    image = load_image(str(EX / "coffee.png"))[:, :3]
    mask = load_mask(str(EX / "coffee_mask.png"))
    cut, (y0, y1, x0, x1) = tools.extract_foreground(image, mask, return_box=True)
    alpha = torch.zeros_like(mask)
    alpha[..., y0:y1, x0:x1] = cut[:, 3:4]
    r = max(2, round(0.01 * 381))  # 1% of the object's size
    far = 1.0 - dilate((mask > 0.5).float(), 3 * r)
    assert float((alpha * far).max()) < 0.05


def test_extract_foreground_empty_mask_is_an_error():
    image, *_ = scene()
    with pytest.raises(LiWiError) as err:
        tools.extract_foreground(image, torch.zeros(1, 1, *image.shape[-2:]))
    assert "\n" not in str(err.value)


def test_clean_background_on_the_synthetic_scene():
    image, background, alpha, _, rough = scene()
    clean, hole = tools.clean_background(image, rough)
    assert clean.shape == background.shape and hole.shape == alpha.shape
    assert float((hole * (alpha > 0.5).float()).sum()) == float((alpha > 0.5).sum())  # the hole covers the object
    assert background_l1_in_hole(clean, background, hole) < 0.1
    # the cast shadow is removed too
    shadowed = (scene()[3] < 0.8).expand(-1, 3, -1, -1) & (hole < 0.5).expand(-1, 3, -1, -1)
    assert float((clean - background).abs()[shadowed].mean()) < 0.1


def test_clean_background_without_masks_is_the_photo():
    image, *_ = scene()
    clean, hole = tools.clean_background(image, None)
    assert torch.equal(clean, image) and float(hole.sum()) == 0


def _disc_with_speck():
    """The synthetic disc and a small speck of its colour beside it, inside a loose mask."""
    image, background, alpha, _, rough = scene()
    image = image.clone()
    y0, y1, x0, x1 = bounding_box(alpha)
    cy = (y0 + y1) // 2
    speck = (Ellipsis, slice(cy - 3, cy + 3), slice(x1 + 12, x1 + 18))
    image[speck] = torch.tensor([0.1, 0.2, 0.8]).view(1, 3, 1, 1)
    mask = rough.clone()
    mask[..., cy - 10:cy + 10, x0:x1 + 24] = 1.0  # a loose mask reaching over the speck
    return image, alpha, mask, speck


def _on_canvas(cut, box, like):
    out = torch.zeros((1, cut.shape[1]) + tuple(like.shape[-2:]))
    out[..., box[0]:box[1], box[2]:box[3]] = cut
    return out


def test_extract_foreground_drops_loose_specks():
    image, truth, mask, speck = _disc_with_speck()
    cut, box = tools.extract_foreground(image, mask, return_box=True)
    alpha = _on_canvas(cut[:, 3:4], box, mask)
    assert float(alpha[speck].max()) == 0.0
    assert alpha_soft_iou(alpha, truth) > 0.95


def _enclosed_gaps(alpha, mask):
    """Pieces of ``alpha < 0.5`` enclosed by the object and lying under the mask."""
    import cv2
    import numpy as np

    count, labels = cv2.connectedComponents((alpha[0, 0].numpy() < 0.5).astype(np.uint8), connectivity=4)
    open_ = set(np.unique(labels[mask[0, 0].numpy() <= 0.5]).tolist())
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        open_ |= set(np.unique(edge).tolist())
    return [k for k in range(1, count) if k not in open_]


def test_extract_foreground_fills_holes_grabcut_cuts():
    """The astronaut: GrabCut reads her dark name tag as background; the cut-out has no
    such pinholes where the mask has none, and they hold the photo's pixels."""
    from liwi_core.imageio import load_image, load_mask

    image = load_image(str(EX / "astronaut.png"))[:, :3]
    mask = load_mask(str(EX / "astronaut_mask.png"))
    cut, box = tools.extract_foreground(image, mask, return_box=True)
    alpha = _on_canvas(cut[:, 3:4], box, mask)
    assert _enclosed_gaps(alpha, mask) == []
    solid = (alpha > 0.999).expand(-1, 3, -1, -1)
    colour = _on_canvas(cut[:, :3], box, mask)
    assert float((colour - image).abs()[solid].max()) < 1e-3  # opaque pixels are the photo's


def test_extract_foreground_keeps_a_hole_the_mask_has():
    image, truth, mask, _ = _disc_with_speck()
    y0, y1, x0, x1 = bounding_box(truth)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    image = image.clone()
    hole = (Ellipsis, slice(cy - 8, cy + 8), slice(cx - 8, cx + 8))
    image[hole] = scene()[1][hole]  # see-through: the background shows in the middle
    mask = mask.clone()
    mask[hole] = 0.0  # and the mask says so (a ring)
    cut, box = tools.extract_foreground(image, mask, return_box=True)
    alpha = _on_canvas(cut[:, 3:4], box, mask)
    assert float(alpha[..., cy - 4:cy + 4, cx - 4:cx + 4].max()) < 0.05


def test_grey_photo_and_plain_mask_shapes():
    image, _, alpha, _, rough = scene()
    grey = image.mean(dim=1, keepdim=True)
    cut = tools.extract_foreground(grey, rough[0, 0])  # an [H,W] mask
    assert cut.shape[1] == 4 and torch.allclose(cut[:, 0], cut[:, 1]) and torch.allclose(cut[:, 1], cut[:, 2])
    clean, hole = tools.clean_background(grey, rough[0])  # an [N,H,W] stack of masks
    assert clean.shape == (1, 3) + tuple(image.shape[-2:]) and float(hole.sum()) > 0
    clean, hole = tools.clean_background(grey)
    assert clean.shape[1] == 3 and float(hole.sum()) == 0
