"""Shadow maps fitted to a photo: the projected silhouette that explains its darkening."""

from __future__ import annotations

import torch

from liwi_core.filters import gaussian_blur
from liwi_core.shadow import background_roughness, fit_cast_shadow, smoothest_shadow, synthesize_cast_shadow


def _ground(h: int = 192, w: int = 224) -> torch.Tensor:
    """A textured grey-beige ground, the kind on which a per-pixel shadow test sees texture."""
    noise = gaussian_blur(torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(5)), 1.5)
    return (0.45 + 0.5 * (noise - 0.5)) * torch.tensor([1.0, 0.95, 0.85]).view(1, 3, 1, 1)


def _standing_object(h: int = 192, w: int = 224) -> torch.Tensor:
    alpha = torch.zeros(1, 1, h, w)
    alpha[..., 50:130, 95:125] = 1.0
    alpha[..., 40:60, 85:135] = 1.0  # a wider top: the silhouette is not a plain bar
    return alpha


def _photo(ground, alpha, shadow):
    return alpha * torch.tensor([0.8, 0.2, 0.2]).view(1, 3, 1, 1) + (1 - alpha) * ground * shadow


def test_the_fit_finds_a_grey_cast_shadow_on_a_textured_ground():
    ground, alpha = _ground(), _standing_object()
    for angle, length in ((40.0, 0.8), (150.0, 0.5), (250.0, 0.6)):
        shadow = synthesize_cast_shadow(alpha, angle=angle, length=length, softness=0.05, opacity=0.45,
                                        contact=0.0, tint=(1.0, 1.0, 1.0))
        fit = fit_cast_shadow(_photo(ground, alpha, shadow), alpha)
        off = abs((fit.angle - angle + 180) % 360 - 180)
        assert off <= 15 and 0.7 <= fit.length / length <= 1.4, (angle, length, fit)
        assert abs(fit.darkness - 0.45) < 0.12 and fit.score > 10
        assert fit.shadow.shape == alpha.shape and float(fit.shadow.min()) < 0.7
        # what it puts outside the object is where the true shadow is
        outside = alpha < 0.5
        found, true = (fit.shadow < 0.9) & outside, (shadow.mean(1, keepdim=True) < 0.9) & outside
        assert (found & true).sum() / (found | true).sum() > 0.5


def test_a_dark_patch_of_another_colour_is_not_taken_for_the_shadow():
    ground, alpha = _ground(), _standing_object()
    shape = 1 - synthesize_cast_shadow(alpha, angle=40.0, length=0.8, softness=0.05, opacity=1.0, contact=0.0,
                                       tint=(1.0, 1.0, 1.0))[:, :1]
    grey = fit_cast_shadow(_photo(ground, alpha, 1 - 0.45 * shape), alpha)
    # the same darkening, but green: moss, a dark object, not light taken away
    green = 1 - shape * (1 - torch.tensor([0.25, 0.85, 0.3]).view(1, 3, 1, 1))
    moss = fit_cast_shadow(_photo(ground, alpha, green), alpha)
    assert moss.score < grey.score / 3


def test_no_object_or_no_darkening_gives_no_shadow():
    ground = _ground()
    empty = fit_cast_shadow(ground, torch.zeros(1, 1, *ground.shape[-2:]))
    assert torch.equal(empty.shadow, torch.ones(1, 1, *ground.shape[-2:])) and empty.score == 0
    alpha = _standing_object()
    plain = fit_cast_shadow(_photo(torch.full_like(ground, 0.5), alpha, torch.ones_like(ground)), alpha)
    assert plain.darkness < 0.02


def test_an_object_cut_by_the_bottom_edge_gets_no_fitted_shadow():
    ground, alpha = _ground(), _standing_object()
    shadow = synthesize_cast_shadow(alpha, angle=40.0, length=0.8, softness=0.05, opacity=0.45, contact=0.0,
                                    tint=(1.0, 1.0, 1.0))
    photo = _photo(ground, alpha, shadow)
    assert fit_cast_shadow(photo, alpha).score > 10
    # the same photo cropped just below the object's lowest row: a bust, standing on no ground in view
    bust = fit_cast_shadow(photo[..., :130, :], alpha[..., :130, :])
    assert bust.score == 0 and torch.equal(bust.shadow, torch.ones_like(alpha[..., :130, :]))


def test_a_short_shadow_on_a_busy_ground_is_not_taken_for_a_long_one():
    # a t-statistic grows with the pixels a silhouette gathers: scored alone, a longer silhouette
    # that takes in the short true shadow and unshadowed ground besides wins on a busy ground
    alpha = _standing_object()
    for seed in (5, 7):
        noise = gaussian_blur(torch.rand(1, 1, 192, 224, generator=torch.Generator().manual_seed(seed)), 2.5)
        ground = (0.45 + 0.8 * (noise - 0.5)) * torch.tensor([1.0, 0.95, 0.85]).view(1, 3, 1, 1)
        shadow = synthesize_cast_shadow(alpha, angle=150.0, length=0.3, softness=0.05, opacity=0.3, contact=0.0,
                                        tint=(1.0, 1.0, 1.0))
        photo = _photo(ground, alpha, shadow)
        fit, by_score = fit_cast_shadow(photo, alpha), fit_cast_shadow(photo, alpha, size_exponent=0.0)
        assert 0.75 <= fit.length / 0.3 <= 1.25 and abs((fit.angle - 150 + 180) % 360 - 180) <= 15, fit
        assert by_score.length / 0.3 > 1.25, by_score


def test_the_smoothest_ground_picks_the_shadow_that_is_there():
    ground, alpha = _ground(), _standing_object()
    shadow = synthesize_cast_shadow(alpha, angle=40.0, length=0.8, softness=0.05, opacity=0.45,
                                    contact=0.0, tint=(1.0, 1.0, 1.0)).mean(1, keepdim=True)
    photo = _photo(ground, alpha, shadow)
    none = torch.ones_like(shadow)
    half = 1 - 0.5 * (1 - shadow)  # half of it missed
    elsewhere = synthesize_cast_shadow(alpha, angle=220.0, length=0.8, softness=0.05, opacity=0.45,
                                       contact=0.0, tint=(1.0, 1.0, 1.0)).mean(1, keepdim=True)
    too_dark = 1 - 1.8 * (1 - shadow)
    assert smoothest_shadow(photo, [none, half, shadow, elsewhere, too_dark], alpha) == 2
    assert smoothest_shadow(photo, [half, shadow], alpha) == 1
    # on a photo without that shadow, no shadow leaves the smoothest ground
    assert smoothest_shadow(_photo(ground, alpha, none), [shadow, none, elsewhere], alpha) == 1


def test_the_first_candidate_wins_when_they_agree_or_tie():
    ground, alpha = _ground(), _standing_object()
    photo = _photo(ground, alpha, torch.ones_like(alpha))
    darker = torch.ones_like(alpha)
    darker[..., 150:170, 20:60] = 0.6
    assert smoothest_shadow(photo, [darker, darker.clone()], alpha) == 0
    # differences under the object itself do not count
    under = torch.ones_like(alpha)
    under[..., 70:110, 100:120] = 0.5
    assert smoothest_shadow(photo, [torch.ones_like(alpha), under], alpha) == 0
    rough = background_roughness(photo, torch.cat([torch.ones_like(alpha), darker]), torch.ones_like(alpha))
    assert rough.shape == (2,) and float(rough[1]) > float(rough[0])


def test_the_fit_offers_runners_up_and_a_clear_challenger_wins():
    ground, alpha = _ground(), _standing_object()
    shadow = synthesize_cast_shadow(alpha, angle=40.0, length=0.8, softness=0.05, opacity=0.45,
                                    contact=0.0, tint=(1.0, 1.0, 1.0)).mean(1, keepdim=True)
    photo = _photo(ground, alpha, shadow)
    fit = fit_cast_shadow(photo, alpha, alternatives=3)
    assert fit.shadow.equal(fit_cast_shadow(photo, alpha).shadow)  # the best is the same with or without
    assert 1 <= len(fit.alternatives) <= 3
    outside = alpha < 0.5
    for other in fit.alternatives:
        assert other.shape == alpha.shape and 0 <= float(other.min()) and float(other.max()) <= 1
        # another direction or length: much of the two lies apart
        a, b = (other < 0.9) & outside, (fit.shadow < 0.9) & outside
        assert (a ^ b).sum() > 0.25 * (a | b).sum()
    none = torch.ones_like(shadow)
    # the true shadow as a challenger beats candidates that miss it; a wrong one does not win
    assert smoothest_shadow(photo, [none, 1 - 0.5 * (1 - shadow)], alpha, challengers=[shadow]) == 2
    assert smoothest_shadow(photo, [shadow, none], alpha, challengers=list(fit.alternatives)) == 0
    # a challenger must win by the margin
    assert smoothest_shadow(photo, [none, shadow], alpha, challengers=[shadow.clone()]) == 1
