"""The refiner and the refined engine: corrections of the classical engine that start at zero."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")

from liwi_core.decompose import decompose
from liwi_core.engines import create
from liwi_core.errors import LiWiError
from liwi_core.filters import dilate, erode
from liwi_core.metrics import recompose_psnr
from liwi_core.refiner import (
    CAST_CHANNEL,
    INPUT_CHANNELS,
    SALIENCY_CHANNEL,
    LiWiRefiner,
    RefinerOutput,
    apply_corrections,
)
from liwi_core.synthetic import scene


def _tiny(**kw) -> LiWiRefiner:
    torch.manual_seed(0)
    return LiWiRefiner(base_channels=4, depth=2, working_size=64, **kw)


@pytest.fixture(scope="module")
def photo():
    image, *_, rough = scene()
    return image, rough


@pytest.fixture(scope="module")
def sharp_photo():
    """The synthetic scene with the disc's fuzzy rim made a hard edge: the edge network runs only
    on sharp edges (``edge_refiner.MAX_EDGE_BLUR``)."""
    image, background, alpha, shadow, rough = scene()
    hard = (alpha > 0.5).float()
    return hard * torch.tensor([0.1, 0.2, 0.8]).view(1, 3, 1, 1) + (1 - hard) * background * shadow, rough


def test_untrained_refiner_is_the_classical_engine_bit_for_bit(photo):
    from liwi_core.edge_refiner import EdgeRefiner

    image, rough = photo
    classical = decompose(image, rough, create("classical", shadow_reach=0.75))
    for untrained in (create("refined", refiner=_tiny(), edge_refiner=EdgeRefiner()),
                      create("refined", refiner=_tiny(), refine_edges=False)):
        refined = decompose(image, rough, untrained)
        assert torch.equal(classical.background, refined.background)
        assert torch.equal(classical.hole, refined.hole)
        for a, b in zip(classical.layers, refined.layers, strict=True):
            assert torch.equal(a.rgba, b.rgba) and torch.equal(a.shadow, b.shadow)


def test_a_mask_kept_as_drawn_keeps_its_edge(sharp_photo):
    """An outline already on the object's edges is not moved by the edge refiner (any edge refiner)."""
    from liwi_core.edge_refiner import EdgeRefiner

    image, _ = sharp_photo
    _, _, alpha, _, _ = scene()
    exact = (alpha > 0.5).float()
    noisy = EdgeRefiner()
    torch.nn.init.normal_(noisy.head.weight, std=0.5)
    torch.nn.init.constant_(noisy.head.bias, 1.0)
    plain = decompose(image, exact, create("refined", refine_edges=False))
    edged = decompose(image, exact, create("refined", edge_refiner=noisy))
    assert torch.equal(plain.layers[0].rgba, edged.layers[0].rgba)
    # the same refiner does move a rough mask's edge
    rough = dilate(exact, 6)
    assert not torch.equal(decompose(image, rough, create("refined", refine_edges=False)).layers[0].rgba,
                           decompose(image, rough, create("refined", edge_refiner=noisy)).layers[0].rgba)


def test_the_bundled_edge_refiner_moves_only_the_edge_and_stays_lossless(sharp_photo):
    image, rough = sharp_photo
    plain = decompose(image, rough, create("refined", refine_edges=False))
    edged = decompose(image, rough, create("refined"))
    assert edged.meta["settings"]["edge_refiner"]["band"] >= 1 and plain.meta["settings"]["edge_refiner"] is None
    a, b = plain.layers[0].rgba[:, 3:4], edged.layers[0].rgba[:, 3:4]
    moved = (a - b).abs() > 1e-6
    assert bool(moved.any())
    solid = (a > 0.5).float()
    reach = edged.meta["settings"]["edge_refiner"]["band"] + 1  # the colour solve may lift a pixel next to it
    assert not bool((moved & ((erode(solid, reach) > 0.5) | (dilate(solid, reach) < 0.5))).any())
    assert recompose_psnr(edged.composite(), image) > 45


def test_a_trained_refiner_changes_the_layers_and_stays_lossless(photo):
    image, rough = photo
    refiner = _tiny()
    torch.nn.init.normal_(refiner.head.weight, std=0.2)
    classical = decompose(image, rough, create("classical", shadow_reach=0.75))
    refined = decompose(image, rough, create("refined", refiner=refiner))
    assert not torch.equal(classical.layers[0].rgba, refined.layers[0].rgba)
    assert float((refined.composite() - image).abs().max()) < 1e-5
    assert refined.meta["engine"] == "refined" and "refiner" in refined.meta["settings"]


def test_apply_corrections_keeps_zero_corrections_and_moves_the_rest():
    alpha = torch.tensor([0.0, 0.3, 1.0, 0.5]).view(1, 1, 1, 4)
    shadow = torch.tensor([1.0, 0.8, 0.5, 0.9]).view(1, 1, 1, 4)
    background = torch.full((1, 3, 1, 4), 0.4)
    zero = RefinerOutput(torch.zeros_like(alpha), torch.zeros_like(shadow), torch.zeros_like(background))
    a, s, b = apply_corrections(alpha, shadow, background, zero)
    assert torch.equal(a, alpha) and torch.equal(s, shadow) and torch.equal(b, background)
    push = RefinerOutput(torch.full_like(alpha, 4.0), torch.full_like(shadow, -0.5), torch.full_like(background, 0.1))
    a, s, b = apply_corrections(alpha, shadow, background, push)
    assert float(a[..., 1]) > 0.3 and float(a[..., 3]) > 0.5 and float(a[..., 0]) > 0.0  # logit: even 0 can rise
    assert torch.allclose(s, shadow * torch.exp(torch.tensor(-0.5)), atol=1e-4)
    assert torch.allclose(b, background + 0.1)


def test_background_correction_keeps_its_broad_colour_and_loses_fine_detail():
    """Fine structure in the hidden background's correction is the object's own detail (a ghost)."""
    from liwi_core.engines.refined import predict_corrections

    class Ghostly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, inputs):
            b, _, h, w = inputs.shape
            stripes = (torch.arange(w) % 4 < 2).float().view(1, 1, 1, w).expand(b, 3, h, w)
            return RefinerOutput(torch.zeros(b, 1, h, w), torch.full((b, 1, h, w), -0.2), 0.1 + 0.2 * stripes)

    inputs = torch.rand(1, INPUT_CHANNELS, 64, 64)
    raw = predict_corrections(Ghostly(), inputs, (128, 128), background_smoothing=0.0)
    smooth = predict_corrections(Ghostly(), inputs, (128, 128))
    assert float(raw.background.std()) > 0.05  # the stripes, as predicted
    assert float(smooth.background.std()) < 0.01
    assert abs(float(smooth.background.mean()) - 0.2) < 0.005  # the broad correction is kept
    assert torch.allclose(smooth.shadow, raw.shadow) and torch.equal(smooth.alpha, torch.zeros_like(smooth.alpha))


def test_refiner_output_starts_at_zero_and_has_the_input_size():
    refiner = _tiny()
    with torch.no_grad():
        out = refiner(torch.rand(2, INPUT_CHANNELS, 37, 50))
    assert out.alpha.shape == (2, 1, 37, 50) and out.background.shape == (2, 3, 37, 50)
    assert all(float(t.abs().max()) == 0 for t in out.to_tuple())


def test_alpha_corrections_stay_near_the_prompt_and_the_classical_alpha():
    """No faint veil of alpha far from the object (it would move with the object as a ghost)."""
    refiner = _tiny(alpha_support=0.1)
    torch.nn.init.normal_(refiner.head.weight, std=0.5)
    torch.nn.init.constant_(refiner.head.bias, 1.0)
    x = torch.rand(1, INPUT_CHANNELS, 60, 60)
    x[:, 3:5] = 0.0
    x[:, 3:4, 20:30, 20:30] = 1.0  # prompt
    with torch.no_grad():
        out = refiner(x)
    assert float(out.alpha[..., 20:30, 20:30].abs().min()) > 0
    assert float(out.alpha[..., 45:, :].abs().max()) == 0 and float(out.alpha[..., :, 45:].abs().max()) == 0
    assert float(out.shadow[..., 45:, 45:].abs().min()) > 0  # shadows may fall far from the object


def test_refiner_round_trips_through_safetensors(tmp_path):
    refiner = _tiny()
    torch.nn.init.normal_(refiner.head.weight)
    refiner.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    from liwi_core.engines.refined import load_refiner
    again = load_refiner(tmp_path)
    x = torch.rand(1, INPUT_CHANNELS, 32, 32)
    assert torch.equal(refiner(x).alpha, again(x).alpha)
    assert json.loads((tmp_path / "config.json").read_text())["working_size"] == 64


def test_training_losses_are_zero_for_a_perfect_classical_answer():
    from liwi_core.train_refiner import losses
    x = torch.rand(2, INPUT_CHANNELS, 16, 16)
    x[:, 4:5] = (torch.rand(2, 1, 16, 16) > 0.5).float()  # classical alpha
    x[:, 5:6] = 1.0  # no shadow
    truth = torch.cat([x[:, 4:5], x[:, 5:6], x[:, 0:3]], dim=1)
    x[:, 6:9] = x[:, 0:3]
    zero = RefinerOutput(torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16), torch.zeros(2, 3, 16, 16))
    parts = losses(x, truth, torch.ones(2, 1, 16, 16), zero)
    assert float(parts["total"]) < 1e-3
    worse = RefinerOutput(torch.full((2, 1, 16, 16), -12.0), zero.shadow, zero.background)
    assert float(losses(x, truth, torch.ones(2, 1, 16, 16), worse)["alpha_l1"]) > 0.1


def test_examples_then_fit_then_resume(tmp_path):
    from helpers import write_scene_dataset
    from liwi_core.train_refiner import fit, make_examples

    data = write_scene_dataset(tmp_path / "data", 3, 64, 80, prefix="r")
    assert make_examples(data, tmp_path / "examples") == 3
    files = sorted((tmp_path / "examples").glob("*.pt"))
    example = torch.load(files[0], weights_only=True)
    assert example["inputs"].shape[0] == INPUT_CHANNELS and example["truth"].shape[0] == 5
    assert example["inputs"].dtype == torch.uint8
    assert make_examples(data, tmp_path / "examples") == 3  # done ones are kept, nothing redone
    # a run killed inside a sample (some of its objects written, no marker) makes it again
    first = files[0]
    (tmp_path / "examples" / f"{first.stem.split('_o')[0]}.done").unlink()
    first.write_bytes(b"a file of the sample the killed run had not finished")
    assert make_examples(data, tmp_path / "examples") == 3
    assert torch.equal(torch.load(first, weights_only=True)["inputs"], example["inputs"])
    config = {"base_channels": 4, "depth": 2, "working_size": 256, "batch_size": 2, "steps": 4, "lr": 0.01,
              "log_every": 1, "save_every": 2, "val_every": 100}
    lines = []
    fit(tmp_path / "examples", tmp_path / "run", {**config, "steps": 2}, log=lines.append)
    state = torch.load(tmp_path / "run" / "checkpoint-latest" / "training_state.pt", weights_only=True)
    assert state["step"] == 2
    fit(tmp_path / "examples", tmp_path / "run", config, log=lines.append)
    assert json.loads(lines[-1])["step"] == 4 or '"step": 4' in "".join(lines)
    assert '"resume_step": 2' in "".join(lines)
    from liwi_core.engines.refined import load_refiner
    trained = load_refiner(tmp_path / "run" / "checkpoint-latest")
    assert float(trained.head.weight.detach().abs().max()) > 0  # left zero: the corrections had no gradient
    # a later stage from a folder that is not there: one line naming the option, no traceback
    with pytest.raises(LiWiError, match="init_from"):
        fit(tmp_path / "examples", tmp_path / "stage2", {**config, "init_from": str(tmp_path / "nowhere")})


def test_the_bundled_refiner_loads_and_has_its_card_and_licence():
    from helpers import check_bundled_weights
    from liwi_core.engines.refined import DEFAULT_REFINER, load_refiner

    # trained on GPL-3+ photographs since stage 7: the weights' licence follows them
    refiner = load_refiner()
    check_bundled_weights(DEFAULT_REFINER, refiner)
    assert refiner.config.cast_shadow and refiner.in_channels == INPUT_CHANNELS  # reads the fitted cast shadow
    assert refiner.config.cast_gate  # and may take it where darker


def test_the_refined_engine_gives_its_refiner_the_fitted_cast_shadow(photo, monkeypatch):
    import liwi_core.engines.refined as refined

    image, rough = photo
    seen = []

    def spy(model, inputs, size, *args, **kwargs):
        seen.append(inputs)
        return real(model, inputs, size, *args, **kwargs)

    real = refined.predict_corrections
    monkeypatch.setattr(refined, "predict_corrections", spy)
    decompose(image, rough, create("refined", refine_edges=False))
    cast = seen[0][:, CAST_CHANNEL]
    # the synthetic scene's disc casts a shadow: the fitted plane darkens somewhere, and not everywhere
    assert float(cast.min()) < 0.9 and float(cast.max()) == 1.0
    decompose(image, rough, create("refined", refiner=_tiny(), refine_edges=False))
    assert seen[-1].shape[1] == INPUT_CHANNELS and torch.equal(seen[-1][:, CAST_CHANNEL],
                                                                torch.ones_like(seen[-1][:, CAST_CHANNEL]))


def test_shadow_is_continued_under_the_opaque_object_not_imprinted():
    """What the network predicts under an opaque object never shows; the map there is the
    continuation of its surroundings, so the exported shadow layer has no imprint of the object."""
    from liwi_core.shadow import continue_under_object

    alpha = torch.zeros(1, 1, 32, 32)
    alpha[..., 8:24, 8:24] = 1.0
    alpha[..., 8:24, 23] = 0.5  # a soft edge column: seen, kept
    shadow = torch.full((1, 1, 32, 32), 0.7)
    shadow[..., 12:20, 12:20] = 0.1  # the object's dark middle copied into the map
    out = continue_under_object(shadow, alpha)
    assert torch.equal(out[alpha < 0.98], shadow[alpha < 0.98])
    assert torch.allclose(out[..., 8:24, 8:23], torch.full_like(out[..., 8:24, 8:23], 0.7), atol=1e-4)
    assert torch.equal(continue_under_object(shadow, torch.zeros_like(alpha)), shadow)


def test_a_darker_refined_shadow_does_not_shadow_the_soft_edge_twice():
    """Under a soft edge the classical background already carries the seen shadow: with the refined
    (darker) shadow, what lies below the edge stays the same, so the exact colour solve keeps the
    edge's alpha; where the object is opaque the refiner's hidden background is used."""
    from liwi_core.engines.refined import keep_edge_below

    alpha = torch.tensor([0.0, 0.3, 0.7, 0.99, 1.0]).view(1, 1, 1, 5)
    shadow = torch.full((1, 1, 1, 5), 0.9)
    background = torch.full((1, 3, 1, 5), 0.4)
    new_shadow = torch.full((1, 1, 1, 5), 0.6)
    new_background = torch.full((1, 3, 1, 5), 0.8)
    out = keep_edge_below(alpha, shadow, background, new_shadow, new_background)
    below = out * new_shadow
    assert torch.allclose(below[..., 1:3], (background * shadow)[..., 1:3])  # soft edge: same below
    assert torch.equal(out[..., 4], new_background[..., 4])  # opaque: the refiner's fill
    assert torch.equal(out[..., 0], new_background[..., 0])  # seen: explain_object recomputes it
    assert 0.6 < float(out[0, 0, 0, 3]) < 0.8  # ramps between the two near opaque


def test_an_opening_keeps_the_classical_shadow_and_a_gap_open_to_the_frame_is_no_opening():
    from liwi_core.engines.refined import shadow_through_openings

    alpha = torch.zeros(1, 1, 40, 40)
    alpha[..., 8:32, 8:32] = 1.0
    alpha[..., 14:26, 14:26] = 0.0  # an arch's opening
    corrected = torch.full((1, 1, 40, 40), 0.6)
    classical = torch.full((1, 1, 40, 40), 1.0)
    classical[..., 18:22, 18:22] = 0.5  # a shadow the photo shows through the opening
    out = shadow_through_openings(corrected, classical, alpha)
    assert torch.equal(out[..., 14:26, 14:26], torch.maximum(corrected, classical)[..., 14:26, 14:26])
    assert float(out[0, 0, 15, 15]) == 1.0 and float(out[0, 0, 19, 19]) == pytest.approx(0.6)
    opening = torch.zeros_like(alpha, dtype=torch.bool)
    opening[..., 14:26, 14:26] = True
    assert torch.equal(out[~opening], corrected[~opening])  # on and around the object: as corrected
    gap = alpha.clone()
    gap[..., 14:26, 14:] = 0.0  # the same hole opened to the frame's edge: what is beside the object
    assert torch.equal(shadow_through_openings(corrected, classical, gap), corrected)


def test_the_shadow_on_a_soft_edge_is_no_darker_than_on_the_ground_seen_beside_it():
    from liwi_core.engines.refined import shadow_on_soft_edge

    alpha = torch.zeros(1, 1, 40, 40)
    alpha[..., 10:30, 10:30] = 1.0
    alpha[..., 9, 10:30] = alpha[..., 30, 10:30] = 0.5  # soft edges above and below
    shadow = torch.full((1, 1, 40, 40), 0.6)
    shadow[..., :9, :] = 1.0  # lit above (sky), in the object's shadow below
    out = shadow_on_soft_edge(shadow, alpha, reach=0.1)
    # the upper edge as lit as the sky, the lower one as shadowed as the ground (the ends of each,
    # within reach of the ground beside the object, are left out)
    assert torch.equal(out[..., 9, 14:26], torch.ones(1, 1, 12))
    assert torch.equal(out[..., 30, 10:30], shadow[..., 30, 10:30])
    not_edge = (alpha <= 0) | (alpha >= 1)
    assert torch.equal(out[not_edge], shadow[not_edge])
    assert torch.equal(shadow_on_soft_edge(shadow, torch.ones_like(alpha) * 0.5), shadow)  # no ground seen


def test_the_refined_engine_does_not_brighten_what_shows_through_or_beside_the_object(monkeypatch):
    """A refiner that darkens the object's whole area, opening and soft edge included (as the
    bundled one did on a ruin's arcade and a camel's back against the sky): what the photo shows
    through the opening and the ground beside the soft edge keep their colours in the background,
    instead of being brightened by a shadow divided out; the stack stays exact."""
    import math

    import liwi_core.engines.refined as refined
    from liwi_core.filters import gaussian_blur

    size = 96
    solid = torch.zeros(1, 1, size, size)
    solid[..., 24:72, 24:72] = 1.0
    solid[..., 40:56, 40:56] = 0.0  # the opening
    alpha = gaussian_blur(solid, 1.0)
    ground = torch.tensor([0.55, 0.5, 0.45]).view(1, 3, 1, 1)
    image = alpha * torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1) + (1 - alpha) * ground
    area = torch.zeros(1, 1, size, size)
    area[..., 24:72, 24:72] = 1.0  # the object's area, its opening and the inner half of its soft edge

    def darken(model, inputs, grid, *args, **kwargs):
        box = refined.resize(area, grid, mode="bilinear") > 0.5
        return RefinerOutput(torch.zeros(1, 1, *grid), box.float() * math.log(0.6), torch.zeros(1, 3, *grid))

    monkeypatch.setattr(refined, "predict_corrections", darken)
    out = decompose(image, (solid > 0.5).float(), create("refined", refine_edges=False))
    background = out.background
    assert recompose_psnr(out.composite(), image) >= 45
    inside = background[..., 44:52, 44:52]
    assert float((inside - image[..., 44:52, 44:52]).abs().max()) < 0.02  # 1/0.6 brighter before
    edge = ((alpha > 0.05) & (alpha < 0.95) & (solid > 0.5)).expand_as(background).clone()
    edge[..., 36:60, 36:60] = False  # the outer edge only
    assert float((background - ground)[edge].max()) < 0.05


def test_the_refined_darkening_spares_other_salient_objects_away_from_this_one():
    """A dark object beside this one (the astronaut's helmet) is dark in itself: the refiner's
    darkening is dropped where the salient-object map marks something beyond the reach, kept near
    the object (its contact shadow) and wherever the map sees nothing; lightening is kept."""
    from liwi_core.engines.refined import spare_other_objects

    h, w = 40, 100
    alpha = torch.zeros(1, 1, h, w)
    alpha[..., 10:30, 10:30] = 1  # this object
    saliency = torch.zeros(1, 1, h, w)
    saliency[..., 10:30, 10:30] = 1
    saliency[..., 10:30, 31:34] = 0.9  # the map's soft edge, next to the object
    saliency[..., 10:30, 70:90] = 1  # another object, far from it
    correction = torch.full((1, 1, h, w), -0.5)
    correction[..., 10:15, 70:90] = 0.3  # lightening on the other object
    no_alpha, no_background = torch.zeros(1, 1, h, w), torch.zeros(1, 3, h, w)
    out = spare_other_objects(RefinerOutput(no_alpha, correction, no_background), alpha, saliency, reach=0.1).shadow
    assert torch.equal(out[..., 15:30, 70:90], torch.zeros(1, 1, 15, 20))  # the other object
    assert float(out[0, 0, 20, 32]) == -0.5  # the soft edge beside this object keeps its shadow
    assert float(out[0, 0, 35, 50]) == -0.5  # nothing salient: kept
    assert torch.equal(out[..., 10:15, 70:90], correction[..., 10:15, 70:90])  # lightening kept
    zero = torch.zeros(1, 3, h, w)
    assert torch.equal(spare_other_objects(RefinerOutput(no_alpha, zero, no_background), alpha, saliency).shadow, zero)
    # the gate on the fitted cast shadow is closed on the other object too, and only there
    gate = torch.full((1, 1, h, w), 0.8)
    both = spare_other_objects(RefinerOutput(no_alpha, correction, no_background, gate), alpha, saliency, reach=0.1)
    spared, closed = both.shadow, both.cast_gate
    assert torch.equal(spared, out)
    assert torch.equal(closed[..., 10:30, 70:90], torch.zeros(1, 1, 20, 20))
    assert closed[0, 0, 20, 32] == gate[0, 0, 20, 32] and closed[0, 0, 35, 50] == gate[0, 0, 35, 50]


def test_examples_record_their_saliency_size_and_fit_refuses_a_mismatch(tmp_path):
    from helpers import write_scene_dataset

    from liwi_core.engines.refined import load_refiner
    from liwi_core.train_refiner import fit, make_examples, recompute_saliency

    data = write_scene_dataset(tmp_path / "data", 2, 64, 80, prefix="q")
    make_examples(data, tmp_path / "at320", saliency_size=320)
    assert recompute_saliency(tmp_path / "at320", tmp_path / "at64", saliency_size=64) == 2
    name = min((tmp_path / "at320").glob("*.pt")).name
    old, new = (torch.load(tmp_path / d / name, weights_only=True) for d in ("at320", "at64"))
    assert (old["saliency_size"], new["saliency_size"]) == (320, 64)
    # only the saliency channel is made again, from the example's own image
    others = [k for k in range(INPUT_CHANNELS) if k != SALIENCY_CHANNEL]
    assert torch.equal(old["inputs"][others], new["inputs"][others]) and torch.equal(old["truth"], new["truth"])
    assert not torch.equal(old["inputs"][SALIENCY_CHANNEL], new["inputs"][SALIENCY_CHANNEL])
    config = {"base_channels": 4, "depth": 2, "working_size": 256, "batch_size": 2, "steps": 1, "lr": 0.01,
              "log_every": 1, "save_every": 1, "val_every": 100}
    fit(tmp_path / "at64", tmp_path / "run64", config, log=lambda _: None)
    assert load_refiner(tmp_path / "run64" / "checkpoint-latest").config.saliency_size == 64  # learnt from them
    # a later stage whose examples were made at another size than its refiner's: one clear error
    with pytest.raises(LiWiError, match=r"saliency computed at \[320\] px, the refiner expects 64"):
        fit(tmp_path / "at320", tmp_path / "stage2", {**config, "init_from": str(tmp_path / "run64" /
                                                                               "checkpoint-latest")})
    fit(tmp_path / "at320", tmp_path / "stage2b", {**config, "saliency_size": 320,
                                                   "init_from": str(tmp_path / "run64" / "checkpoint-latest")},
        log=lambda _: None)
    assert load_refiner(tmp_path / "stage2b" / "checkpoint-latest").config.saliency_size == 320


def test_the_refined_engine_computes_saliency_at_its_refiners_size(photo, monkeypatch):
    from liwi_core import saliency

    sizes = []
    real = saliency.saliency_map

    def spy(model, image, normalize=True, sample_size=None):
        sizes.append(sample_size)
        return real(model, image, normalize, sample_size)

    monkeypatch.setattr(saliency, "saliency_map", spy)
    image, rough = photo
    for size in (320, 96):
        sizes.clear()
        decompose(image, rough, create("refined", refiner=_tiny(saliency_size=size)))
        assert size in sizes
    with pytest.raises(LiWiError, match="sample_size 16"):
        real(create("refined", refiner=_tiny()).saliency_model, image, sample_size=16)


def test_the_refiner_reads_the_classical_look_instead_of_taking_its_own(photo, monkeypatch):
    from liwi_core import saliency
    from liwi_core.engines import refined
    from liwi_core.filters import bounding_box
    from liwi_core.refiner import input_plane

    image, rough = photo
    y0, y1, x0, x1 = bounding_box(rough)
    box = torch.zeros_like(rough)
    box[..., y0:y1, x0:x1] = 1  # a box is never kept as drawn: the classical engine looks at its window
    calls, planes = [], []
    real_map, real_example = saliency.saliency_map, refined.refiner_example

    def spy(model, image, normalize=True, sample_size=None, size=None):
        calls.append(tuple(image.shape[-2:]))
        return real_map(model, image, normalize, sample_size, size)

    def example(*args, **kwargs):
        planes.append((kwargs.get("look"), real_example(*args, **kwargs)))
        return planes[-1][1]

    monkeypatch.setattr(saliency, "saliency_map", spy)
    monkeypatch.setattr(refined, "refiner_example", example)
    stack = decompose(image, box, create("refined", refiner=_tiny()))
    # one salient-object pass for the object (the prompt segmenter is a network of its own)
    assert len(calls) == 1 and len(planes) == 1
    look, (inputs, _runners_up) = planes[0]
    assert look is not None
    grid = tuple(inputs.shape[-2:])
    assert torch.allclose(input_plane(inputs, "saliency"), refined.resize(look, grid, mode="area").clamp(0, 1), atol=1e-6)
    assert recompose_psnr(stack.composite(), image) > 45


def test_example_shards_split_the_samples_without_overlap(tmp_path):
    from helpers import write_scene_dataset
    from liwi_core.errors import LiWiError
    from liwi_core.train_refiner import make_examples

    data = write_scene_dataset(tmp_path / "data", 5, 48, 48, prefix="s7-")
    made = []
    for shard in range(2):
        out = tmp_path / f"shard{shard}"
        make_examples(data, out, shard=(shard, 2))
        made.append({p.stem.split("_o")[0] for p in out.glob("*.pt")})
    assert made[0] and made[1] and not made[0] & made[1]
    from liwi_core.dataset import sample_ids
    assert made[0] | made[1] == set(sample_ids(data))
    with pytest.raises(LiWiError, match="shard 2/2"):
        make_examples(data, tmp_path / "bad", shard=(2, 2))


def test_training_batches_pad_crop_and_flip_like_the_examples():
    import random

    from liwi_core.train_refiner import _batch
    inputs = torch.randint(0, 256, (INPUT_CHANNELS, 20, 24), dtype=torch.uint8)
    truth = torch.randint(0, 256, (5, 20, 24), dtype=torch.uint8)
    x, t, v = _batch([{"inputs": inputs, "truth": truth}], 32, random.Random(0), augment=False)
    assert x.shape == (1, INPUT_CHANNELS, 32, 32) and t.shape == (1, 5, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x[0, :, :20, :24], inputs.float() / 255)
    assert torch.equal(x[0, :, 25, 30], inputs[:, 19, 23].float() / 255)  # replicated edge
    assert float(v[0, 0, :20, :24].min()) == 1 and float(v.sum()) == 20 * 24
    xc, tc, vc = _batch([{"inputs": inputs, "truth": truth}], 32, random.Random(1), augment=False, crop=16)
    assert xc.shape[-2:] == (16, 16) and float(vc.min()) == 1  # a crop inside the example: all valid
    flips = {bool(torch.equal(_batch([{"inputs": inputs, "truth": truth}], 24, random.Random(s))[0][0, :, :20],
                              inputs.flip(-1).float() / 255)) for s in range(8)}
    assert flips == {True, False}


def test_the_saliency_channel_is_where_refiner_inputs_puts_the_map():
    from liwi_core.refiner import INPUT_CHANNELS, SALIENCY_CHANNEL, refiner_inputs

    planes = [torch.zeros(1, c, 4, 4) for c in (3, 1, 1, 1, 3)]
    saliency = torch.full((1, 1, 4, 4), 0.7)
    inputs = refiner_inputs(*planes, saliency, torch.zeros(1, 1, 4, 4))
    assert inputs.shape[1] == INPUT_CHANNELS
    assert torch.equal(inputs[:, SALIENCY_CHANNEL:SALIENCY_CHANNEL + 1], saliency)
    assert float(inputs.sum()) == float(saliency.sum())  # nothing else carries it


def test_each_named_plane_reads_back_what_refiner_inputs_stacked():
    from liwi_core.refiner import INPUT_PLANES, input_plane, refiner_inputs

    values = {name: torch.full((1, width, 4, 4), (k + 1) / 10) for k, (name, width) in enumerate(INPUT_PLANES)}
    inputs = refiner_inputs(values["image"], values["prompt"], values["alpha"], values["shadow"],
                            values["background"], values["saliency"], values["cast"])
    for name, plane in values.items():
        assert torch.equal(input_plane(inputs, name), plane), name
    no_cast = refiner_inputs(values["image"], values["prompt"], values["alpha"], values["shadow"],
                             values["background"], values["saliency"])
    assert torch.equal(input_plane(no_cast, "cast"), torch.ones(1, 1, 4, 4))  # no fitted shadow: no darkening


def test_a_refiner_given_the_cast_plane_answers_as_before_until_trained(tmp_path):
    from helpers import write_scene_dataset

    from liwi_core.engines.refined import load_refiner
    from liwi_core.train_refiner import add_cast_planes, fit, make_examples, with_cast_plane

    old = _tiny(saliency_size=256)
    torch.nn.init.normal_(old.head.weight, std=0.1)
    wider = with_cast_plane(old)
    assert (old.in_channels, wider.in_channels) == (CAST_CHANNEL, INPUT_CHANNELS) and wider.config.cast_shadow
    x = torch.rand(2, INPUT_CHANNELS, 24, 24)
    for a, b in zip(old(x).to_tuple(), wider(x).to_tuple(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="reads 11 input planes, got 10"):
        wider(x[:, :CAST_CHANNEL])
    # examples made before the plane existed get it fitted to their own image and alpha
    data = write_scene_dataset(tmp_path / "data", 2, 64, 80, prefix="c")
    make_examples(data, tmp_path / "new")
    for f in (tmp_path / "new").glob("*.pt"):
        example = torch.load(f, weights_only=True)
        torch.save({**example, "inputs": example["inputs"][:CAST_CHANNEL]}, tmp_path / "new" / f.name)
    old.save_pretrained(tmp_path / "old")
    config = {"batch_size": 2, "steps": 1, "lr": 0.01, "log_every": 1, "save_every": 1, "val_every": 100,
              "init_from": str(tmp_path / "old"), "cast_shadow": True}
    with pytest.raises(LiWiError, match="reads 11 input planes, some examples .* have 10"):
        fit(tmp_path / "new", tmp_path / "run", config, log=lambda _: None)
    assert add_cast_planes(tmp_path / "new", tmp_path / "cast") == 2
    name = min((tmp_path / "new").glob("*.pt")).name
    before, after = (torch.load(tmp_path / d / name, weights_only=True) for d in ("new", "cast"))
    assert torch.equal(after["inputs"][:CAST_CHANNEL], before["inputs"]) and torch.equal(after["truth"], before["truth"])
    assert after["inputs"].shape[0] == INPUT_CHANNELS
    fit(tmp_path / "cast", tmp_path / "run", config, log=lambda _: None)
    assert load_refiner(tmp_path / "run" / "checkpoint-latest").config.cast_shadow


def test_a_cast_gate_takes_the_fitted_shadow_where_darker_and_starts_closed():
    from liwi_core.train_refiner import with_cast_gate

    old = _tiny(saliency_size=256, cast_shadow=True)
    torch.nn.init.normal_(old.head.weight, std=0.1)
    gated = with_cast_gate(old)
    x = torch.rand(2, INPUT_CHANNELS, 24, 24)
    before, after = old(x), gated(x)
    for a, b in zip(before.to_tuple(), after.to_tuple()[:3], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(after.cast_gate, torch.zeros_like(after.cast_gate))  # closed: the answer is unchanged
    alpha, shadow, background = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.9), torch.rand(1, 3, 4, 4)
    cast = torch.full((1, 1, 4, 4), 0.5)
    cast[..., 0, :] = 1.0  # lighter than the refined map there: never taken
    zero = torch.zeros(1, 1, 4, 4)
    closed = apply_corrections(alpha, shadow, background, RefinerOutput(zero, zero, torch.zeros_like(background), zero),
                               cast=cast)
    assert torch.equal(closed[1], shadow)
    half = apply_corrections(alpha, shadow, background,
                             RefinerOutput(zero, zero, torch.zeros_like(background), torch.full((1, 1, 4, 4), 0.5)),
                             cast=cast)
    assert torch.allclose(half[1][..., 1:, :], torch.full((1, 1, 3, 4), 0.7)) and torch.equal(half[1][..., 0, :],
                                                                                            shadow[..., 0, :])


def test_a_stage_may_train_only_the_first_block(tmp_path):
    """``trainable``: the named parameters learn, every other one is left exactly as it was."""
    from helpers import write_scene_dataset

    from liwi_core.engines.refined import load_refiner
    from liwi_core.train_refiner import fit, make_examples

    data = write_scene_dataset(tmp_path / "data", 2, 64, 80, prefix="f")
    make_examples(data, tmp_path / "examples")
    config = {"base_channels": 4, "depth": 2, "working_size": 256, "batch_size": 2, "steps": 2, "lr": 0.05,
              "log_every": 1, "save_every": 2, "val_every": 100}
    fit(tmp_path / "examples", tmp_path / "first", config, log=lambda _: None)
    start = tmp_path / "first" / "checkpoint-latest"
    fit(tmp_path / "examples", tmp_path / "second", {**config, "init_from": str(start), "trainable": ["enc.0."]},
        log=lambda _: None)
    before = dict(load_refiner(start).named_parameters())
    after = dict(load_refiner(tmp_path / "second" / "checkpoint-latest").named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all(n.startswith("enc.0.") for n in moved)
    with pytest.raises(LiWiError, match="trainable"):
        fit(tmp_path / "examples", tmp_path / "third", {**config, "init_from": str(start), "trainable": ["encoder"]},
            log=lambda _: None)


def test_fit_config_errors_are_one_line(tmp_path, capsys):
    from liwi_core.train_refiner import main

    (tmp_path / "bad.json").write_text("nope")
    (tmp_path / "list.json").write_text("[1]")
    for config, message in (("bad.json", "cannot read config"), ("missing.json", "cannot read config"),
                            ("list.json", "must be a JSON object")):
        assert main(["fit", "--examples", str(tmp_path), "--out", str(tmp_path / "run"),
                     "--config", str(tmp_path / config)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("liwi: error:") and message in err and len(err.strip().splitlines()) == 1


def test_the_gate_is_chosen_by_the_ground_and_made_at_full_size(monkeypatch):
    from liwi_core.engines import refined
    from liwi_core.filters import gaussian_blur
    from liwi_core.shadow import synthesize_cast_shadow

    h, w = 160, 192
    noise = gaussian_blur(torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(3)), 1.5)
    ground = (0.45 + 0.4 * (noise - 0.5)).expand(1, 3, h, w)
    alpha = torch.zeros(1, 1, h, w)
    alpha[..., 40:110, 80:110] = 1
    cast = synthesize_cast_shadow(alpha, angle=40.0, length=0.8, softness=0.05, opacity=0.45, contact=0.0,
                                  tint=(1.0, 1.0, 1.0)).mean(1, keepdim=True)
    image = alpha * 0.8 + (1 - alpha) * ground * cast
    ones, zeros = torch.ones_like(alpha), torch.zeros_like(alpha)
    predicted = RefinerOutput(zeros, zeros, torch.zeros(1, 3, h, w), zeros)  # the refiner's gate closed
    elsewhere = torch.zeros_like(alpha, dtype=torch.bool)  # no other object
    # judged on a grid of half the size, as a region larger than the judge's grid is
    monkeypatch.setattr(refined, "roughness_grid", lambda size: (size[0] // 2, size[1] // 2))
    chosen = refined.choose_gate(image, alpha, ones, predicted, ones, cast, elsewhere)
    assert chosen.shape == (1, 1, h, w)
    assert torch.equal(chosen, torch.minimum(ones, cast))  # the fitted shadow, wholly, at full size
    # a runner-up elsewhere does not beat it; a photo without the shadow keeps the gated map
    other_light = synthesize_cast_shadow(alpha, angle=220.0, length=0.8, softness=0.05, opacity=0.45, contact=0.0,
                                         tint=(1.0, 1.0, 1.0)).mean(1, keepdim=True)
    assert torch.equal(refined.choose_gate(image, alpha, ones, predicted, ones, cast, elsewhere,
                                           [refined.resize(other_light, (h // 4, w // 4))]), torch.minimum(ones, cast))
    plain = alpha * 0.8 + (1 - alpha) * ground
    assert torch.equal(refined.choose_gate(plain, alpha, ones, predicted, ones, cast, elsewhere), ones)


def test_a_truncated_example_is_named(tmp_path):
    from liwi_core.errors import LiWiError
    from liwi_core.fitting import load_example
    from liwi_core.train_refiner import _load_examples

    good = tmp_path / "s-0001_o0.pt"
    torch.save({"planes": torch.zeros(2, 4, 4, dtype=torch.uint8)}, good)
    assert torch.equal(load_example(good)["planes"], torch.zeros(2, 4, 4, dtype=torch.uint8))
    cut = tmp_path / "s-0002_o0.pt"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(LiWiError, match="s-0002_o0.pt"):
        _load_examples(tmp_path)


def test_the_shadow_alone_is_the_shadow_apply_corrections_gives():
    from liwi_core.refiner import RefinerOutput, apply_corrections, corrected_shadow

    g = torch.Generator().manual_seed(2)
    alpha, shadow, background = (torch.rand(1, c, 24, 24, generator=g) for c in (1, 3, 3))
    log_shadow = torch.randn(1, 1, 24, 24, generator=g) * 0.2
    log_shadow[..., :8, :] = 0  # exactly zero: the classical value kept
    gate = torch.rand(1, 1, 24, 24, generator=g)
    gate[..., 16:, :] = 0
    cast = torch.rand(1, 1, 24, 24, generator=g)
    corrections = RefinerOutput(torch.zeros_like(alpha), log_shadow, torch.zeros_like(background), gate)
    assert torch.equal(corrected_shadow(shadow, corrections, cast), apply_corrections(alpha, shadow, background,
                                                                                      corrections, cast=cast)[1])
    # several gates at once give each one's shadow
    gates = torch.stack([gate[0], torch.zeros_like(gate[0]), torch.ones_like(gate[0])])
    many = corrected_shadow(shadow, RefinerOutput(log_shadow, log_shadow, log_shadow, gates), cast.expand(3, -1, -1, -1))
    for i in range(3):
        one = RefinerOutput(log_shadow, log_shadow, log_shadow, gates[i:i + 1])
        assert torch.equal(many[i:i + 1], corrected_shadow(shadow, one, cast))
