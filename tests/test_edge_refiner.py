"""The edge refiner: a full-resolution correction of an alpha's edge."""

import json

import pytest
import torch

pytest.importorskip("diffusers")

from liwi_core.edge_refiner import (
    EdgeRefiner,
    edge_band,
    fit,
    make_examples,
    refine_edges,
)


def _disc(size: int = 96, radius: float = 30.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius ** 2).float()[None, None]


def _noisy(model: EdgeRefiner) -> EdgeRefiner:
    torch.manual_seed(0)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    torch.nn.init.constant_(model.head.bias, 1.0)
    return model


def test_an_untrained_edge_refiner_changes_nothing():
    alpha = _disc() * 0.9
    image = torch.rand(1, 3, 96, 96)
    assert torch.equal(refine_edges(EdgeRefiner(), image, alpha), alpha)


def test_corrections_stay_in_the_band_around_the_edge():
    alpha = _disc()
    image = torch.rand(1, 3, 96, 96)
    out = refine_edges(_noisy(EdgeRefiner(band=2)), image, alpha)
    moved = out != alpha
    assert bool(moved.any())
    assert bool((edge_band(alpha, 2)[moved] == 1).all())
    assert torch.equal(out[..., 40:56, 40:56], alpha[..., 40:56, 40:56])  # the interior
    assert torch.equal(out[..., :8, :], alpha[..., :8, :])  # far outside


def test_tiles_give_the_whole_image_answer():
    """The network runs on the edge's tiles with their halo: the same as running it on the whole image."""
    model = _noisy(EdgeRefiner())
    alpha, image = _disc(), torch.rand(1, 3, 96, 96)
    assert torch.allclose(refine_edges(model, image, alpha, tile=16), refine_edges(model, image, alpha, tile=512),
                          atol=1e-5)


def test_a_network_that_sees_the_prompt_needs_it_and_reads_it():
    from liwi_core.errors import LiWiError

    model = _noisy(EdgeRefiner(sees_prompt=True))
    alpha, image = _disc(), torch.rand(1, 3, 96, 96)
    with pytest.raises(LiWiError, match="prompt"):
        refine_edges(model, image, alpha)
    loose, tight = _disc(radius=36.0), _disc(radius=24.0)
    assert not torch.equal(refine_edges(model, image, alpha, loose), refine_edges(model, image, alpha, tight))
    assert torch.allclose(refine_edges(model, image, alpha, loose, tile=16),
                          refine_edges(model, image, alpha, loose, tile=512), atol=1e-5)


def test_examples_then_fit_then_resume(tmp_path):
    from helpers import write_scene_dataset

    data = write_scene_dataset(tmp_path / "data", 3, 64, 80, prefix="e")
    assert make_examples(data, tmp_path / "examples") == 3
    example = torch.load(min((tmp_path / "examples").glob("*.pt")), weights_only=True)
    assert example["image"].shape[0] == 3 and example["alpha"].shape[0] == example["truth"].shape[0] == 1
    assert example["image"].shape[-2:] == example["truth"].shape[-2:] == example["prompt"].shape[-2:]
    assert example["image"].dtype == torch.uint8
    assert make_examples(data, tmp_path / "examples") == 3  # done ones are kept
    config = {"channels": 4, "dilations": [1, 2], "band": 2, "batch_size": 4, "patch": 24, "steps": 4, "lr": 0.01,
              "log_every": 1, "save_every": 2, "val_every": 2}
    lines = []
    fit(tmp_path / "examples", tmp_path / "run", {**config, "steps": 2}, log=lines.append)
    fit(tmp_path / "examples", tmp_path / "run", config, log=lines.append)
    assert '"resume_step": 2' in "".join(lines)
    assert any('"step": 4' in line for line in lines)
    trained = EdgeRefiner.from_pretrained(tmp_path / "run" / "checkpoint-latest")
    assert float(trained.head.weight.detach().abs().max()) > 0
    assert json.loads((tmp_path / "run" / "checkpoint-latest" / "config.json").read_text())["band"] == 2
    # one that sees the prompt trains on the same examples
    fit(tmp_path / "examples", tmp_path / "run2", {**config, "sees_prompt": True, "steps": 2}, log=lines.append)
    assert EdgeRefiner.from_pretrained(tmp_path / "run2" / "checkpoint-latest").config.sees_prompt


def test_the_bundled_edge_refiner_loads_and_has_its_card_and_licence():
    from helpers import check_bundled_weights

    from liwi_core.engines.refined import DEFAULT_EDGE_REFINER, load_edge_refiner

    check_bundled_weights(DEFAULT_EDGE_REFINER, load_edge_refiner())


def test_a_softened_layer_is_out_of_focus_with_its_colour_kept():
    from liwi_core.edge_refiner import soften_layer
    from liwi_core.layers import Layer

    alpha = torch.zeros(1, 1, 64, 64)
    alpha[..., 20:44, 20:44] = 1
    colour = torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    shadow = torch.full((1, 1, 64, 64), 0.7)
    soft = soften_layer(Layer(rgba=torch.cat([colour, alpha], 1), shadow=shadow), 2.0)
    rim = (soft.alpha > 0.05) & (soft.alpha < 0.95)
    # a hard square edge becomes a ramp several pixels wide, its amount of object kept
    assert int(rim.sum()) > 4 * 24 * 4
    assert abs(float(soft.alpha.sum()) - float(alpha.sum())) < 1.0
    # a flat colour stays that colour wherever the blurred object shows; the shadow is untouched
    seen = soft.alpha > 0.01
    assert torch.allclose(soft.rgba[:, :3][seen.expand(-1, 3, -1, -1)],
                          colour[seen.expand(-1, 3, -1, -1)], atol=1e-4)
    assert torch.equal(soft.shadow, shadow)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_edge_blur_reads_the_blur_of_an_edge(sigma):
    from liwi_core.filters import gaussian_blur
    from liwi_core.matting import edge_blur

    disc = _disc(160, 50.0)
    g = torch.Generator().manual_seed(0)
    ground = 0.35 + 0.05 * torch.rand(1, 3, 160, 160, generator=g)
    sharp = disc * torch.tensor([0.8, 0.6, 0.2]).view(1, 3, 1, 1) + (1 - disc) * ground
    # the object out of focus, the ground sharp (a subject in front of the focal plane)
    soft_disc = gaussian_blur(disc, sigma)
    soft = gaussian_blur(sharp * disc, sigma) + (1 - soft_disc) * ground
    assert edge_blur(sharp, disc) < 0.7
    assert edge_blur(soft, soft_disc) == pytest.approx(sigma, rel=0.25)
    assert edge_blur(sharp, torch.zeros_like(disc)) == 0.0


def test_edge_blur_on_the_outlines_box_is_the_whole_images():
    import math

    import torch.nn.functional as F

    from liwi_core.filters import dilate, erode, gaussian_blur, luminance
    from liwi_core.matting import edge_blur

    def whole_image(image, alpha, reblur=1.0, presmooth=1.0, reach=3, contrast=0.5):
        # the estimate computed on every pixel with one 2-D maximum filter, as it first was
        solid = (alpha > 0.5).float()
        outline = (dilate(solid, 1) - erode(solid, 1)) > 0.5
        grey = gaussian_blur(luminance(image.clamp(0, 1)), presmooth)

        def peak(x):
            gy, gx = x[..., 1:, :-1] - x[..., :-1, :-1], x[..., :-1, 1:] - x[..., :-1, :-1]
            return F.max_pool2d(F.pad(torch.sqrt(gy * gy + gx * gx), (0, 1, 0, 1)), 2 * reach + 1, 1, reach)

        sharp = peak(grey)
        keep = outline & (sharp >= max(1e-3, contrast * float(torch.quantile(sharp[outline], 0.75))))
        ratio = (sharp[keep] / peak(gaussian_blur(grey, reblur))[keep].clamp_min(1e-6)).clamp_min(1.0 + 1e-4)
        seen = float((reblur / torch.sqrt(ratio * ratio - 1.0)).median())
        return math.sqrt(max(seen * seen - presmooth * presmooth, 0.0))

    g = torch.Generator().manual_seed(3)
    image = gaussian_blur(torch.rand(1, 3, 120, 150, generator=g), 1.5)
    yy, xx = torch.meshgrid(torch.arange(120.0), torch.arange(150.0), indexing="ij")
    # objects in the middle and against each side of the frame
    for cy, cx in ((60, 75), (10, 20), (112, 140), (60, 3)):
        alpha = ((((yy - cy) / 18) ** 2 + ((xx - cx) / 25) ** 2) < 1).float()[None, None]
        # white lines 2 px beyond the object's box on every side: within the peaks' reach
        lines = ((yy - cy).abs().round() == 20) | ((xx - cx).abs().round() == 27)
        ground = torch.where(lines[None, None], torch.ones_like(image), image)
        photo = alpha * torch.tensor([0.9, 0.3, 0.1]).view(1, 3, 1, 1) + (1 - alpha) * ground
        assert edge_blur(photo, alpha) == whole_image(photo, alpha)


def test_the_refined_engine_leaves_a_soft_edge_to_the_matting():
    """The edge network was trained on hard edges and hardens soft ones: the refined engine hands
    it an object only when the photo's edge is sharp (``MAX_EDGE_BLUR``)."""
    from liwi_core.engines import create
    from liwi_core.filters import dilate, gaussian_blur

    disc = _disc(192, 56.0)
    g = torch.Generator().manual_seed(1)
    ground = 0.3 + 0.1 * torch.rand(1, 3, 192, 192, generator=g)
    colour = torch.tensor([0.85, 0.55, 0.15]).view(1, 3, 1, 1)
    rough = dilate(disc, 6)  # a loose brush: not kept as drawn
    alphas = {}
    for name, sigma in (("sharp", 0.0), ("soft", 2.5)):
        alpha = gaussian_blur(disc, sigma) if sigma else disc
        image = alpha * colour + (1 - alpha) * ground
        with_net = create("refined").decompose(image, rough).layers[0].alpha
        without = create("refined", refine_edges=False).decompose(image, rough).layers[0].alpha
        alphas[name] = (with_net, without)
    assert torch.equal(*alphas["soft"])
    assert not torch.equal(*alphas["sharp"])
