"""The engine registry and interface: every engine is built by create() and runs through decompose()."""

import numpy as np
import pytest
import torch

from helpers import psnr, scene
from liwi_core.decompose import decompose
from liwi_core.engines import Engine, available, create, settings_type
from liwi_core.errors import LiWiError
from liwi_core.export import save_layers_dir
from liwi_core.layers import Layer, LayerStack


def test_available_lists_every_engine():
    assert available() == ["baseline", "classical", "folder", "learned", "qwen-layered", "refined"]
    for name in available():
        assert settings_type(name).__dataclass_fields__


@pytest.mark.parametrize("name, options, message", [
    ("nope", {}, "unknown engine 'nope': use one of baseline, classical, folder, learned"),
    ("classical", {"bogus": 1}, "engine 'classical': .*bogus"),
    ("classical", {"shadow_reach": 9.0}, "shadow_reach must be between 0.0 and 4.0"),
    ("classical", {"shadow_channels": 2}, "shadow_channels must be one of 1, 3"),
    ("baseline", {"radius": 0}, "radius must be between 1 and 64"),
    ("folder", {"path": "/no/such/folder"}, "prediction folder '/no/such/folder' does not exist"),
])
def test_create_refuses_bad_options_in_one_line(name, options, message):
    with pytest.raises(LiWiError, match=message) as info:
        create(name, **options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["classical", "baseline"])
def test_engine_runs_through_decompose_with_prompt_indices_and_meta(name):
    image, _, _, _, rough = scene(96, 120)
    second = torch.zeros_like(rough)
    second[..., 70:90, 5:25] = 1
    engine = create(name)
    assert isinstance(engine, Engine) and engine.needs_masks
    stack = engine.decompose(image, torch.cat([rough, second]), names=["disc", "square"])
    assert [l.name for l in stack.layers] == ["square", "disc"]  # back to front: the first mask is in front
    assert [l.prompt_index for l in stack.layers] == [1, 0]
    assert stack.meta["engine"] == name and stack.meta["order"] == "given"
    assert stack.meta["settings"] == engine.meta()["settings"]
    assert psnr(stack.composite(), image) >= (45 if name == "classical" else 30)
    # no masks: the salient-object proposals are decomposed like prompts
    auto = decompose(image, None, engine)
    assert auto.meta["mode"] == "automatic" and len(auto.layers) == 1 and auto.layers[0].prompt_index == 0


def test_baseline_takes_batches_like_every_engine():
    a, _, _, _, ra = scene(64, 80, seed=1)
    b, _, _, _, rb = scene(64, 80, seed=2)
    stack = create("baseline").decompose(torch.cat([a, b]), torch.cat([ra, rb]))
    assert stack.batch == 2 and len(stack.layers) == 1
    assert torch.equal(stack.layers[0].alpha, torch.cat([ra, rb]))


def test_folder_engine_returns_what_another_tool_wrote(tmp_path):
    image, _, _, _, rough = scene(64, 80)
    written = create("classical").decompose(image, rough)
    save_layers_dir(written, tmp_path / "sample-1")
    engine = create("folder", path=str(tmp_path))
    read = engine.decompose(None, None, key="sample-1")
    assert len(read.layers) == 1 and psnr(read.composite(), written.composite()) >= 40
    with pytest.raises(LiWiError, match="sample id"):
        engine.decompose(image, rough)
    with pytest.raises(LiWiError, match="reads finished stacks"):
        decompose(image, rough, engine)


def test_concat_pads_shorter_stacks_with_empty_back_layers():
    def stack(n):
        bg = torch.rand(1, 3, 8, 8)
        return LayerStack(bg, [Layer(torch.rand(1, 4, 8, 8), torch.rand(1, 1, 8, 8), f"o{i}", i) for i in range(n)],
                          hole=torch.zeros(1, 1, 8, 8))
    one, three = stack(1), stack(3)
    both = LayerStack.concat([one, three])
    assert both.batch == 2 and len(both.layers) == 3
    assert [l.name for l in both.layers] == ["empty", "empty", "o0"]
    assert torch.equal(both.select(1).composite(), three.composite())
    assert torch.equal(both.select(0).composite(), one.composite())
    assert LayerStack.concat([one, one], shadow_channels=3).layers[0].shadow.shape[1] == 3


def test_the_shadow_under_an_opaque_object_keeps_no_print_of_its_bright_parts():
    """Where the object is opaque nothing below shows, so the shadow map is not floored at the
    pixel there (which would print the object's highlights into the exported shadow layer); where
    the below shows, the floor keeps the background in [0, 1] and the layers exact."""
    from liwi_core.engines.exact import explain_object

    image = torch.full((1, 3, 16, 16), 0.3)
    image[..., 4:12, 4:12] = 0.95  # a bright object
    alpha = torch.zeros(1, 1, 16, 16)
    alpha[..., 4:12, 4:12] = 1.0
    alpha[..., 4:12, 12] = 0.5
    shadow = torch.full((1, 1, 16, 16), 0.5)
    fg, alpha_out, shadow_out, clean = explain_object(image, alpha, shadow)
    assert torch.equal(shadow_out[..., 4:12, 4:12], shadow[..., 4:12, 4:12])
    assert float(shadow_out[..., 0, 0]) >= 0.3 and float(clean.max()) <= 1.0
    below = clean * shadow_out
    assert torch.allclose(alpha_out * fg + (1 - alpha_out) * below, image, atol=1e-5)


def _textured_disc(size: int = 160, radius: int = 45):
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < radius ** 2).float()[None, None]
    ground = torch.tensor([0.55, 0.5, 0.4]).view(1, 3, 1, 1) + 0.04 * torch.randn(1, 3, size, size, generator=g)
    image = disc * torch.tensor([0.15, 0.3, 0.8]).view(1, 3, 1, 1) + (1 - disc) * ground
    return image.clamp(0, 1), disc


def test_edge_alignment_tells_an_outline_on_the_edge_from_rough_ones():
    from liwi_core.filters import dilate, erode
    from liwi_core.matting import edge_alignment
    image, disc = _textured_disc()
    box = torch.zeros_like(disc)
    box[..., 25:135, 25:135] = 1
    assert edge_alignment(image, disc) > 2
    for rough in (dilate(disc, 8), erode(disc, 8), box):
        assert edge_alignment(image, rough) < 1
    assert edge_alignment(image, torch.zeros_like(disc)) == 0.0


def test_dilate_and_erode_are_square_max_and_min_filters_on_any_path():
    # the CPU path (OpenCV) and the other (two max-pools: with a gradient, or on a GPU) agree
    # with the definition: max (min) over the (2r+1)^2 square, pixels beyond the border ignored
    from liwi_core.filters import dilate, erode

    g = torch.Generator().manual_seed(3)
    grey = torch.rand(2, 3, 23, 31, generator=g)

    def by_definition(x, r, reduce):
        out = torch.empty_like(x)
        h, w = x.shape[-2:]
        for y in range(h):
            for z in range(w):
                window = x[..., max(0, y - r):y + r + 1, max(0, z - r):z + r + 1]
                out[..., y, z] = reduce(window.flatten(-2), dim=-1).values
        return out

    for r in (1, 4, 40):
        want_max, want_min = by_definition(grey, r, torch.max), by_definition(grey, r, torch.min)
        assert torch.equal(dilate(grey, r), want_max) and torch.equal(erode(grey, r), want_min)
        with_grad = grey.clone().requires_grad_(True)  # the max-pool path
        assert torch.equal(dilate(with_grad, r).detach(), want_max)
        assert torch.equal(erode(with_grad, r).detach(), want_min)
        assert torch.equal(dilate(grey.double(), r), want_max.double())
    assert torch.equal(dilate(grey, 0), grey) and torch.equal(erode(grey, 0), grey)


def test_box_blur_and_guided_filter_match_kornias_on_every_path():
    # the CPU path (OpenCV's running sums) and the other (kornia's, with a gradient or on a GPU)
    # give kornia's box blur and guided filter, reflected or replicated borders, tiny images too
    import kornia

    from liwi_core.filters import _border, box_blur, guided_filter

    g = torch.Generator().manual_seed(5)
    for h, w in ((3, 5), (23, 31), (64, 48)):
        guide, src = torch.rand(2, 3, h, w, generator=g), torch.rand(2, 1, h, w, generator=g)
        for r in (1, 4):
            border = _border(guide, r)
            want = kornia.filters.box_blur(guide, 2 * r + 1, border_type=border)
            assert torch.allclose(box_blur(guide, r, border), want, atol=1e-6)
            assert torch.allclose(box_blur(guide.clone().requires_grad_(True), r, border).detach(), want, atol=1e-6)
            ref = kornia.filters.guided_blur(guide, src, 2 * r + 1, 1e-3, border_type=border)
            assert torch.allclose(guided_filter(guide, src, r, 1e-3), ref, atol=1e-4)


def test_the_membrane_fill_carries_the_holes_edge_into_it_and_ignores_far_pixels():
    # the hidden background is filled from the hole's edge alone: a hole in a ramp gets about the
    # ramp (closer than push-pull, which averages far pixels too), and pixels far from the hole do
    # not change the fill
    from liwi_core.filters import membrane_fill, push_pull_fill

    ramp = torch.linspace(0, 1, 96).view(1, 1, 1, 96).expand(1, 3, 64, 96).clone()
    known = torch.ones(1, 1, 64, 96)
    known[..., 16:48, 30:70] = 0
    hole = known == 0
    membrane, push_pull = membrane_fill(ramp, known), push_pull_fill(ramp, known)
    assert torch.equal(membrane[~hole.expand_as(ramp)], ramp[~hole.expand_as(ramp)])
    err = (membrane - ramp).abs().amax().item()
    assert err < 0.015 and err < (push_pull - ramp).abs().amax().item()

    far = ramp.clone()
    far[..., :8, :] = 1.0  # rows far above the hole, not on its edge
    far[..., :, 85:] = 0.0
    assert torch.equal(membrane_fill(far, known)[hole.expand_as(ramp)], membrane[hole.expand_as(ramp)])
    assert not torch.equal(push_pull_fill(far, known)[hole.expand_as(ramp)], push_pull[hole.expand_as(ramp)])

    assert torch.equal(membrane_fill(ramp, torch.ones_like(known)), ramp)
    assert torch.equal(membrane_fill(ramp, torch.zeros_like(known)), torch.zeros_like(ramp))


def test_work_on_a_band_of_pixels_gives_what_work_on_the_whole_image_gives():
    # the soft-edge background solve and the refined engine's edge keep work on the edge's pixels
    # only; the same per-pixel arithmetic must give the same bytes as over the whole image
    from liwi_core.engines.exact import soft_edge_background
    from liwi_core.engines.refined import keep_edge_below
    from liwi_core.filters import PixelSet

    g = torch.Generator().manual_seed(3)
    alpha = torch.zeros(1, 1, 40, 50)
    alpha[..., 10:30, 12:40] = 1.0
    alpha[..., 9:31, 11:41] += 0.4 * (alpha[..., 9:31, 11:41] == 0)  # a soft ring
    image, fg, clean = (torch.rand(1, 3, 40, 50, generator=g) for _ in range(3))
    shadow = 0.5 + 0.5 * torch.rand(1, 1, 40, 50, generator=g)
    new_shadow, new_clean = 0.5 + 0.5 * torch.rand(1, 1, 40, 50, generator=g), torch.rand(1, 3, 40, 50, generator=g)
    soft = (alpha > 0) & (alpha < 1)
    band = PixelSet(soft)
    assert band.take(image).shape == (1, 3, int(soft.sum()))
    assert torch.equal(band.put(clean, band.take(image)), torch.where(soft, image, clean))

    below = clean * shadow
    weight = (1 - alpha) * 0.25 / (alpha ** 2 + (1 - alpha) ** 2 * 0.25)
    residual = image - alpha * push_pull_carried(fg, alpha) - (1 - alpha) * below
    whole = torch.where(soft, ((below + weight * residual) / shadow).clamp(0, 1), clean)
    assert torch.equal(soft_edge_background(image, fg, alpha, shadow, clean, opaque=0.9, spread=0.5), whole)

    ramp = ((alpha - 0.9) / 0.1).clamp(0, 1)
    unshadowed = (clean * shadow / new_shadow).clamp(0, 1)
    whole = torch.where(soft, ramp * new_clean + (1 - ramp) * unshadowed, new_clean)
    assert torch.equal(keep_edge_below(alpha, shadow, clean, new_shadow, new_clean, opaque=0.9), whole)
    with pytest.raises(ValueError, match=r"\[1,1,H,W\]"):
        PixelSet(torch.ones(2, 1, 4, 4, dtype=torch.bool))


def test_band_alpha_on_the_band_gives_what_the_whole_tile_gives():
    # the colour-line alpha and its guided-filter fallback are worked out on the unknown band's
    # pixels (the filter's solves on the windows that reach them): the same bytes as on the tile
    from liwi_core.filters import dilate, erode, guided_filter
    from liwi_core.matting import _band_alpha

    g = torch.Generator().manual_seed(7)
    seg = torch.zeros(1, 1, 60, 70)
    seg[..., 15:45, 10:50] = 1.0
    seg[..., 30:40, 50:62] = 1.0
    image, fg, bg = (torch.rand(1, 3, 60, 70, generator=g) for _ in range(3))
    unknown = dilate(seg, 3) - erode(seg, 3)
    for radius in (1, 2):
        whole = guided_filter(image, seg, radius, 1e-3)
        assert torch.equal(guided_filter(image, seg, radius, 1e-3, where=unknown > 0)[unknown > 0], whole[unknown > 0])
        diff = fg - bg
        denom = (diff * diff).sum(dim=1, keepdim=True)
        projected = (((image - bg) * diff).sum(dim=1, keepdim=True) / denom.clamp_min(1e-6)).clamp(0, 1)
        off_line = image - (bg + projected * diff)
        fit = torch.exp(-(off_line * off_line).sum(dim=1, keepdim=True) / (2 * 0.05 ** 2))
        confidence = denom / (denom + 0.01) * fit
        band = confidence * projected + (1 - confidence) * whole.clamp(0, 1)
        want = ((seg > 0.5) & (unknown == 0)).float() + unknown * band
        assert torch.equal(_band_alpha(image, fg, bg, seg, unknown, radius, 0.05), want)


def push_pull_carried(fg: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    from liwi_core.filters import push_pull_fill

    return push_pull_fill(fg, torch.where(alpha >= 0.9, alpha, torch.zeros_like(alpha))).clamp(0, 1)


def test_edge_alignment_on_distance_levels_is_the_morphological_definition():
    # the docstring's definition with dilate/erode, against the one-pass distance levels
    from liwi_core.filters import colour_edges, dilate, erode
    from liwi_core.matting import edge_alignment

    def by_morphology(image, binary):
        edges = colour_edges(image)
        def mean_on(region):
            return float(edges[region > 0.5].mean()) if bool((region > 0.5).any()) else 0.0
        outline = mean_on(dilate(binary, 1) - erode(binary, 1))
        rings = []
        for f in (0.03, 0.06, 0.1):
            k = max(3, round(f * float(binary.sum()) ** 0.5))
            rings += [mean_on(erode(binary, k) - erode(binary, k + 2)),
                      mean_on(dilate(binary, k + 2) - dilate(binary, k))]
        return outline / (max(rings) + 1e-3) if outline > 0 else 0.0

    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 120, 150, generator=g)
    for k in range(5):
        coarse = torch.rand(1, 1, 6, 7, generator=g)
        binary = (torch.nn.functional.interpolate(coarse, size=(120, 150), mode="bilinear") > 0.55).float()
        if k == 0:
            binary[..., :40, :30] = 1  # touching the frame
        assert abs(edge_alignment(image, binary) - by_morphology(image, binary)) < 1e-4
    assert edge_alignment(image, torch.ones(1, 1, 120, 150)) == 0.0


def test_a_mask_drawn_on_the_outline_is_kept_and_a_rough_one_snapped(monkeypatch):
    import liwi_core.engines.classical as classical
    image, disc = _textured_disc()
    calls = []
    original = classical.refine_mask
    monkeypatch.setattr(classical, "refine_mask", lambda *a, **k: calls.append(1) or original(*a, **k))
    settings = classical.ClassicalSettings(saliency_guide=False)
    alpha, _ = classical.estimate_layers(image, disc, settings)
    assert not calls
    # the kept outline: only the matting band may move it
    assert float(((alpha > 0.5).float() - disc).abs().mean()) < 0.01
    box = torch.zeros_like(disc)
    box[..., 25:135, 25:135] = 1
    classical.estimate_layers(image, box, settings)
    assert calls == [1]
    calls.clear()
    full_band, _ = classical.estimate_layers(image, disc, classical.ClassicalSettings(refine=False, saliency_guide=False))
    assert not calls
    # a kept outline leaves only a narrow band unknown (KEPT_BAND of the automatic one)
    def soft(a):
        return int(((a > 0.01) & (a < 0.99)).sum())
    assert soft(alpha) < soft(full_band)


def test_an_evenly_loose_or_timid_mask_is_moved_onto_the_outline(monkeypatch):
    import liwi_core.engines.classical as classical
    from liwi_core.filters import dilate, erode
    from liwi_core.matting import edge_offset
    image, disc = _textured_disc()
    assert edge_offset(image, dilate(disc, 7), 12) == -7
    assert edge_offset(image, erode(disc, 5), 12) == 5
    assert edge_offset(image, disc, 0) == 0
    calls = []
    original = classical.refine_mask
    monkeypatch.setattr(classical, "refine_mask", lambda *a, **k: calls.append(1) or original(*a, **k))
    settings = classical.ClassicalSettings(saliency_guide=False)
    for rough in (dilate(disc, 7), erode(disc, 5)):
        outline = classical.edge_outline(image, rough)
        assert outline is not None and float((outline - disc).abs().mean()) < 0.005
        alpha, _ = classical.estimate_layers(image, rough, settings)
        assert float(((alpha > 0.5).float() - disc).abs().mean()) < 0.01
    assert not calls
    # measured at most 640 px: the offset found on the small copy is scaled back
    big_image = torch.nn.functional.interpolate(image, scale_factor=5, mode="nearest")
    big_disc = torch.nn.functional.interpolate(disc, scale_factor=5, mode="nearest")
    outline = classical.edge_outline(big_image, dilate(big_disc, 10))
    assert outline is not None and float((outline - big_disc).abs().mean()) < 0.01
    # a wavy outline (radius 45 +- 8 px around a disc of 45) is no even offset of the object:
    # it is snapped as before
    yy, xx = torch.meshgrid(torch.arange(160.0), torch.arange(160.0), indexing="ij")
    angle = torch.atan2(yy - 80, xx - 80)
    wavy = (((yy - 80) ** 2 + (xx - 80) ** 2).sqrt() < 45 + 8 * torch.sin(3 * angle)).float()[None, None]
    assert classical.edge_outline(image, wavy) is None


def test_a_plainly_loose_or_timid_brush_starts_the_cut_from_its_moved_outline(monkeypatch):
    # an outline that fails the exact test even shrunk (textured ground, a thin object) still
    # tells how loose the brush is: GrabCut starts from the shrunk mask, so the margin around
    # the object (a stethoscope's loops) is not handed to it as probable object
    from liwi_core.engines import classical
    from liwi_core.filters import dilate, erode
    image, disc = _textured_disc()
    monkeypatch.setattr(classical, "EXACT_OUTLINE", 100.0)  # nothing is kept as drawn
    box = torch.zeros_like(disc)
    box[..., 25:135, 25:135] = 1
    loose = dilate(disc, 7)
    outline, shift, start = classical.outline_search(image, loose)
    assert outline is None and shift == -7 and torch.equal(start, disc)
    # a timid brush: the cut starts from the whole object, not the part the brush covered
    outline, shift, start = classical.outline_search(image, erode(disc, 5))
    assert outline is None and shift == 5 and float((start - disc).abs().mean()) < 0.002
    for rough in (disc, box):  # a drawn outline gains nothing shrunk; a box is no brush
        outline, shift, start = classical.outline_search(image, rough)
        assert outline is None and torch.equal(start, rough)
    seen = []
    original = classical.refine_mask
    monkeypatch.setattr(classical, "refine_mask", lambda img, m, **k: seen.append(m) or original(img, m, **k))
    settings = classical.ClassicalSettings(saliency_guide=False)
    alpha, _ = classical.estimate_layers(image, loose, settings)
    assert len(seen) == 1 and torch.equal(seen[0], disc)
    assert float(((alpha > 0.5).float() - disc).abs().mean()) < 0.01


def test_a_moved_outline_leaves_a_blurred_edge_room():
    # the synthetic scene's disc has a blurred edge and its rough mask is the disc grown evenly
    import liwi_core.engines.classical as classical
    from liwi_core.decompose import decompose
    from liwi_core.metrics import alpha_soft_iou
    from liwi_core.synthetic import scene
    image, _, alpha, _, rough = scene()
    moved = classical.edge_outline(image, rough)
    assert moved is not None and not torch.equal(moved, (rough > 0.5).float())
    stack = decompose(image, rough, classical.ClassicalEngine())
    assert alpha_soft_iou(stack.layers[0].alpha, alpha) > 0.98  # a quarter band gave 0.968
    # drawn exactly on the blurred edge (kept as drawn): the band still leaves it soft
    exact = (alpha > 0.5).float()
    assert torch.equal(classical.edge_outline(image, exact), exact)
    stack = decompose(image, exact, classical.ClassicalEngine())
    assert alpha_soft_iou(stack.layers[0].alpha, alpha) > 0.99  # a quarter band gave 0.978


def _two_discs(size: int = 160):
    """A red disc in front of a partly hidden blue one, on a textured grey ground."""
    g = torch.Generator().manual_seed(5)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    front = (((yy - 90) ** 2 + (xx - 70) ** 2) < 35 ** 2).float()[None, None]
    back = (((yy - 70) ** 2 + (xx - 115) ** 2) < 35 ** 2).float()[None, None]
    image = 0.45 + 0.1 * torch.rand(1, 3, size, size, generator=g)
    image = torch.where(back > 0, torch.tensor([0.15, 0.25, 0.85]).view(1, 3, 1, 1), image)
    image = torch.where(front > 0, torch.tensor([0.85, 0.2, 0.15]).view(1, 3, 1, 1), image)
    return image, front, back


def test_a_box_over_a_neighbour_leaves_it_to_its_own_prompt():
    from liwi_core.filters import bounding_box
    from liwi_core.matting import refine_mask

    image, front, back = _two_discs()
    y0, y1, x0, x1 = bounding_box(front)
    box = torch.zeros_like(front)
    box[..., y0 - 4:y1 + 4, x0 - 4:x1 + 4] = 1  # reaches into the blue disc
    visible_back = back * (1 - front)
    assert float((box * visible_back).sum()) > 200

    def iou(a):
        a = (a > 0.5).float()
        return float((a * front).sum() / ((a + front) > 0).float().sum())

    alone = refine_mask(image, box)
    told = refine_mask(image, box, others=back)
    assert float((told * visible_back).sum()) < 0.2 * float((alone * visible_back).sum()) + 1
    assert iou(told) > iou(alone) and iou(told) > 0.9
    # a prompt lying inside another's (a box around both) is not held against this one
    around = torch.zeros_like(front)
    around[..., 20:150, 20:155] = 1
    assert torch.equal(refine_mask(image, box, others=around), alone)


def test_a_timid_mask_reaches_the_thin_part_it_lost_but_not_a_wide_salient_neighbour():
    from liwi_core.matting import refine_mask

    yy, xx = torch.meshgrid(torch.arange(200.0), torch.arange(200.0), indexing="ij")
    disc = ((yy - 100) ** 2 + (xx - 100) ** 2 <= 30 ** 2).float()
    bar = torch.zeros(200, 200)
    bar[98:102, 125:175] = 1  # a thin part, 4 px wide, far beyond the mask's ring
    wall = torch.zeros(200, 200)
    wall[60:140, 20:72] = 1  # a wide salient thing the object touches, as a lit wall
    obj = ((disc + bar) > 0).float()
    image = torch.full((1, 3, 200, 200), 0.5)
    image = torch.where(obj > 0, torch.tensor([0.85, 0.2, 0.15]).view(1, 3, 1, 1), image)
    image = torch.where((wall > 0) & (obj == 0), torch.tensor([0.8, 0.3, 0.2]).view(1, 3, 1, 1), image)
    timid = ((yy - 100) ** 2 + (xx - 100) ** 2 <= 26 ** 2).float()[None, None]  # the brush kept inside
    saliency = ((obj + wall) > 0).float()[None, None]
    far_bar = bar.clone()
    far_bar[:, :140] = 0
    far_wall = wall.clone()
    far_wall[:, 50:] = 0
    plain = refine_mask(image, timid, saliency=saliency)[0, 0] > 0.5
    told = refine_mask(image, timid, saliency=saliency, timid=True)[0, 0] > 0.5
    assert float(plain[far_bar > 0].float().mean()) < 0.1  # the ring around the mask never gets there
    assert float(told[far_bar > 0].float().mean()) > 0.9
    assert not told[far_wall > 0].any() and not plain[far_wall > 0].any()
    assert told[disc > 0].float().mean() > 0.95


def test_each_prompt_is_peeled_knowing_the_others():
    from liwi_core.engines.base import StackBuilder

    image, front, back = _two_discs()
    empty = torch.zeros_like(front)
    seen = []

    def peel_one(current, mask, others):
        seen.append(None if others is None else others.clone())
        return current, mask, torch.ones_like(mask), current

    StackBuilder(image).peel_each([front, empty, back], ["a", "b", "c"], [0, 1, 2], peel_one)
    assert len(seen) == 2  # the empty prompt gives an empty layer, peeled by nobody
    assert torch.equal(seen[0], back) and torch.equal(seen[1], front)
    seen.clear()
    StackBuilder(image).peel_each([front], ["a"], [0], peel_one)
    assert seen == [None]


def test_a_large_object_is_cut_on_a_smaller_copy_and_still_found(monkeypatch):
    import liwi_core.matting as matting

    size = 700
    g = torch.Generator().manual_seed(7)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - 350) ** 2 + (xx - 350) ** 2) < 300 ** 2).float()[None, None]  # 58% of the frame
    image = 0.3 + 0.1 * torch.rand(1, 3, size, size, generator=g)
    image = torch.where(disc > 0, torch.tensor([0.8, 0.6, 0.2]).view(1, 3, 1, 1) +
                        0.05 * torch.rand(1, 3, size, size, generator=g), image)
    rough = (((yy - 350) ** 2 + (xx - 350) ** 2) < 318 ** 2).float()[None, None]
    sizes = []
    original = matting.resize
    monkeypatch.setattr(matting, "resize", lambda x, s, **k: sizes.append(tuple(s)) or original(x, s, **k))
    cut = matting.refine_mask(image, rough)
    working = sizes[0]
    assert working[0] * working[1] * 1.2 * float(rough.mean()) <= matting.GRABCUT_PIXELS * 1.02
    assert max(working) < 640
    iou = float(((cut > 0.5) & (disc > 0.5)).sum() / ((cut > 0.5) | (disc > 0.5)).sum())
    assert iou > 0.97


def _stick_on_ground(width: int = 3):
    ground = 0.35 + 0.1 * torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(3))
    stick = torch.zeros(1, 1, 160, 160)
    stick[..., 78:78 + width, 20:140] = 1
    return ground * (1 - stick) + stick * torch.tensor([0.95, 0.85, 0.2]).view(1, 3, 1, 1), stick


def test_a_thin_object_does_not_come_back_as_an_empty_layer():
    # thinner than twice the matting band, the object had no sure foreground left in the trimap,
    # and the matting, anchored to nothing, faded it to 0 (an eroded prompt of a pencil did that)
    from liwi_core.engines.classical import ClassicalSettings, estimate_layers
    from liwi_core.filters import dilate
    image, stick = _stick_on_ground()
    for rough in (stick, dilate(stick, 4)):
        alpha, _ = estimate_layers(image, rough, ClassicalSettings(saliency_guide=False))
        assert float(torch.minimum(alpha, stick).sum() / torch.maximum(alpha, stick).sum()) > 0.7


def test_the_trimap_keeps_the_ridge_of_parts_the_band_swallows():
    from liwi_core.matting import trimap_from_mask
    _, stick = _stick_on_ground()
    assert not bool((trimap_from_mask(stick, 3, thin="none") == 1).any())
    ridge = trimap_from_mask(stick, 3, thin="empty") == 1
    assert bool(ridge[..., 79, 30:130].all()) and not bool(ridge[..., 78, :].any() or ridge[..., 80, :].any())
    # a disc with a thin arm: "empty" leaves the arm unknown (the disc keeps a sure core), "parts"
    # keeps the arm's ridge too
    yy, xx = torch.meshgrid(torch.arange(160.0), torch.arange(160.0), indexing="ij")
    disc = (((yy - 80) ** 2 + (xx - 50) ** 2) < 30 ** 2).float()[None, None]
    arm = torch.maximum(disc, stick * (xx >= 80).float())
    assert not bool((trimap_from_mask(arm, 3, thin="empty")[..., 78:81, 100:140] == 1).any())
    assert bool((trimap_from_mask(arm, 3, thin="parts")[..., 79, 100:135] == 1).all())
    with pytest.raises(ValueError, match="thin-part rule"):
        trimap_from_mask(arm, 3, thin="skeleton")


def test_a_brush_is_not_shrunk_to_a_sliver(monkeypatch):
    # edges inside a thin object can draw the outline search deep into it; no brush is that loose
    from liwi_core.engines import classical
    yy, xx = torch.meshgrid(torch.arange(160.0), torch.arange(160.0), indexing="ij")
    bar = (((yy - 80) - 0.3 * (xx - 80)).abs() < 10).float()[None, None] * ((xx >= 20) & (xx < 140)).float()
    image = _stick_on_ground()[0]
    monkeypatch.setattr(classical, "EXACT_OUTLINE", 100.0)
    monkeypatch.setattr(classical, "LOOSE_GAIN", 0.0)
    monkeypatch.setattr(classical, "edge_offset", lambda *a, **k: -8)  # a fifth of it would be left
    outline, shift, start = classical.outline_search(image, bar)
    assert outline is None and shift == 0 and torch.equal(start, bar)
    monkeypatch.setattr(classical, "edge_offset", lambda *a, **k: -4)  # more than half is left: loose
    outline, shift, start = classical.outline_search(image, bar)
    assert shift == -4 and 0.4 < float(start.sum()) / float(bar.sum()) < 0.7


def test_hidden_part_is_opaque_under_the_front_where_the_mask_goes_on_and_exact_where_seen():
    from liwi_core.engines.exact import hidden_part, mask_looseness
    from liwi_core.filters import dilate

    size = 100
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mask = ((((yy - 40) / 22.0) ** 2 + ((xx - 50) / 32.0) ** 2) < 1).float()[None, None]
    front = torch.zeros_like(mask)
    front[..., 10:70, 55:95] = 1.0
    front[..., 10:70, 55:58] = 0.7  # the front object's soft edge: the pixel is partly seen
    alpha = mask * (front <= 0.5).float()
    fg = torch.tensor([0.1, 0.2, 0.9]).view(1, 3, 1, 1).expand(1, 3, size, size).clone()
    current = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    new_fg, new_alpha = hidden_part(mask, alpha, fg, current, front)
    hidden = (mask > 0) & (front > 0.5)
    assert float(hidden.sum()) > 300
    assert torch.equal(new_alpha[hidden], torch.ones(int(hidden.sum())))
    assert torch.equal(new_alpha[~hidden], alpha[~hidden])
    colour = lambda where: where.expand(1, 3, size, size)
    opaque, soft = hidden & (front == 1), hidden & (front < 1)
    assert torch.equal(new_fg[colour(opaque)], fg[colour(opaque)])  # carried where nothing shows through
    # where the front is soft the layer still explains what it sees: alpha 1, colour = current
    assert torch.equal(new_fg[colour(soft)], current[colour(soft)])
    # a loose brush (grown by 6 px) adds no margin: it is moved in by its looseness first
    loose = dilate(mask, 6)
    assert mask_looseness(loose, alpha, front <= 0.5) in (5, 6, 7)
    _, loose_alpha = hidden_part(loose, alpha, fg, current, front)
    assert float((loose_alpha * (1 - dilate(mask, 1))).sum()) == 0
    assert float(loose_alpha[hidden].mean()) > 0.97
    # nothing in front, or a box (it says where the object is, not its shape): the same tensors
    box = torch.zeros_like(mask)
    box[..., 15:66, 15:86] = 1
    for rough, cover in ((mask, torch.zeros_like(front)), (box, front)):
        same_fg, same_alpha = hidden_part(rough, alpha, fg, current, cover)
        assert same_fg is fg and same_alpha is alpha


def test_the_back_disc_goes_on_under_the_front_one_and_the_stack_stays_exact():
    from liwi_core.engines.base import StackBuilder
    from liwi_core.filters import dilate

    image, front, back = _two_discs()
    stack = decompose(image, torch.cat([front, back]), engine=create("classical"))
    back_layer = next(layer for layer in stack.layers if layer.prompt_index == 1)
    under = (front > 0) & (back > 0)
    assert float(under.sum()) > 300
    assert float(back_layer.alpha[under].mean()) > 0.95  # before: the front disc's outline cut it
    blue = back_layer.rgba[:, :3][under.expand(1, 3, -1, -1)].view(3, -1).mean(1)
    assert blue[2] > 0.6 and blue[0] < 0.35  # its colour carried from its visible part
    beyond = (1 - dilate(back, 2)) * front  # under the front disc but off the back one
    assert float((back_layer.alpha * beyond).sum()) < 0.01 * float(under.sum())
    assert psnr(stack.composite(), image) > 45

    def peel_one(current, mask, others):
        return current, mask * (1 - front), torch.ones_like(mask), current

    kept = StackBuilder(image).peel_each([front, back], ["a", "b"], [0, 1], peel_one, hidden_parts=False)
    assert float(kept.layers[0].alpha[under].max()) == 0  # switched off, the engine's alpha is left alone


def test_enclosed_holes_are_the_openings_not_what_reaches_the_frame():
    from scipy.ndimage import binary_fill_holes

    from liwi_core.filters import enclosed_holes, gaussian_blur

    ring = torch.zeros(1, 1, 20, 20, dtype=torch.bool)
    ring[..., 4:16, 4:16] = True
    ring[..., 8:12, 8:12] = False
    holes = enclosed_holes(ring)
    assert int(holes.sum()) == 16 and bool(holes[..., 8:12, 8:12].all())
    ring[..., 10, 8:] = False  # a channel to the frame: no longer enclosed
    assert not bool(enclosed_holes(ring).any())
    diagonal = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
    diagonal[..., 1, 2] = diagonal[..., 2, 1] = diagonal[..., 2, 3] = diagonal[..., 3, 2] = True
    assert bool(enclosed_holes(diagonal)[0, 0, 2, 2])  # closed off by 4-connectivity, as scipy's
    g = torch.Generator().manual_seed(0)
    masks = gaussian_blur(torch.rand(3, 1, 61, 83, generator=g), 1.5) > 0.5
    reference = torch.from_numpy(np.stack([binary_fill_holes(m[0].numpy()) for m in masks]))[:, None] & ~masks
    assert torch.equal(enclosed_holes(masks), reference)
