"""The refined engine: the classical engine's layers, corrected by a small trained network.

For each object, front to back: the classical estimate on its region of interest
(:func:`~liwi_core.engines.classical.estimate_layers`), made exact; then
:class:`~liwi_core.refiner.LiWiRefiner` sees that answer with the image, the prompt and
U²-Net small's saliency at its working size and predicts corrections of alpha (logit),
shadow (log) and the background under the object; the corrections are brought to full
resolution and applied (:func:`~liwi_core.refiner.apply_corrections`); the edge refiner
(:mod:`liwi_core.edge_refiner`) then moves the alpha's edge at full resolution, unless the
mask was kept as drawn or the photo's edge is soft (:func:`~liwi_core.matting.edge_blur` above
:data:`~liwi_core.edge_refiner.MAX_EDGE_BLUR`: a defocused object, which the matting keeps
soft); the colours are solved exactly again, so the stack recomposes to the
input. A refiner and an edge refiner that predict zero give the classical stack bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..checkpoints import load_pretrained
from ..errors import LiWiError
from ..filters import PixelSet, dilate, enclosed_holes, erode, gaussian_blur, push_pull_fill, resize
from ..matting import SALIENCY_HIGH, edge_blur
from ..options import check_settings, option, option_specs
from ..shadow import OPAQUE, continue_under_object, fit_cast_shadow, roughness_grid, smoothest_shadow
from .base import Engine, Peeled, StackBuilder
from .classical import ClassicalSettings, paste_region, peel_region
from .exact import explain_object, extend_colours

__all__ = [
    "DEFAULT_EDGE_REFINER",
    "DEFAULT_REFINER",
    "RefinedEngine",
    "RefinedSettings",
    "cast_fit",
    "cast_plane",
    "choose_gate",
    "keep_edge_below",
    "load_edge_refiner",
    "load_refiner",
    "other_objects",
    "predict_corrections",
    "refiner_example",
    "working_grid",
]

DEFAULT_REFINER = Path(__file__).resolve().parent.parent / "weights" / "liwi-refiner"
#: the bundled edge refiner (:mod:`liwi_core.edge_refiner`)
DEFAULT_EDGE_REFINER = Path(__file__).resolve().parent.parent / "weights" / "liwi-edge-refiner"
#: the background correction is blurred (Gaussian, sigma this fraction of the refiner grid's
#: longest side) before it is applied. The background under an object is never seen, so only its
#: broad colour can be corrected; finer structure in the correction is the object's own detail
#: leaking through, a ghost of it in the clean background (the cat's eyes and whiskers on a photo
#: filled by its face). Chosen on both tuning sets, where it also lowers the background error.
BACKGROUND_SMOOTHING = 0.03
#: the refiner's darkening is not applied to what the salient-object map marks (above
#: matting.SALIENCY_HIGH) farther than this fraction of the region's size from the object: another
#: object there is dark in itself, not in this one's shadow (the helmet beside the astronaut).
#: Chosen on both tuning sets (photos: false shadow 1.18 -> 1.12, shadow L1 0.1637 -> 0.1638;
#: wallpapers 0.88 -> 0.87, 0.1355 -> 0.1351); nearer, it would take the contact shadows that
#: the map's soft edge covers (at 0.03: photos shadow L1 0.165)
OTHER_OBJECTS_REACH = 0.08


@dataclass
class RefinedSettings(ClassicalSettings):
    """Settings of the refined engine: the classical engine's, plus the refiner checkpoint. The
    shadow reach defaults to the one the bundled refiner was trained with."""

    shadow_reach: float = option(0.75, "How far from an object its shadow is looked for, as a fraction of the "
                                       "object's size. 0 = no shadow layers.", minimum=0.0, maximum=4.0, step=0.05)
    # not "checkpoint": the learned engine's --checkpoint flag is already taken on the command line
    refiner_checkpoint: str | None = option(None, "Refiner checkpoint folder (config.json + .safetensors); "
                                                  "default: the bundled liwi-refiner.")
    refine_edges: bool = option(True, "Refined engine only: move each object's edge onto the photo's with the "
                                      "bundled full-resolution edge network (liwi-edge-refiner), after the refiner; "
                                      "a mask kept as drawn keeps its edge, and so does a soft (out-of-focus) one.",
                                cli="--no-refine-edges")

    def classical(self) -> ClassicalSettings:
        fields = asdict(self)
        fields.pop("refiner_checkpoint")
        fields.pop("refine_edges")
        return ClassicalSettings(**fields)


#: options added after the Decompose node's ``engine`` widget: workflows saved before them keep
#: their widget values in place (saved widget values are positional)
APPENDED_OPTIONS = ("saliency_guide", "refine_edges", "prompt_segmenter")
#: the options whose widgets come before ``engine``, in declaration order
LEADING_OPTIONS = tuple(f.name for f, _ in option_specs(RefinedSettings) if f.name not in APPENDED_OPTIONS)


def load_refiner(path=None):
    """Load a :class:`~liwi_core.refiner.LiWiRefiner` folder (safetensors only); ``path`` None: the
    bundled one (:data:`DEFAULT_REFINER`)."""
    try:
        from ..refiner import LiWiRefiner
    except ImportError:
        raise LiWiError("the refined engine needs diffusers: pip install 'diffusers>=0.30'") from None
    return load_pretrained(DEFAULT_REFINER if path is None else path, LiWiRefiner, "refiner checkpoint")


def load_edge_refiner(path=None):
    """Load an :class:`~liwi_core.edge_refiner.EdgeRefiner` folder (safetensors only); ``path`` None:
    the bundled one (:data:`DEFAULT_EDGE_REFINER`)."""
    from ..edge_refiner import EdgeRefiner

    return load_pretrained(DEFAULT_EDGE_REFINER if path is None else path, EdgeRefiner, "edge refiner checkpoint")


def working_grid(size: tuple[int, int], working_size: int) -> tuple[int, int]:
    """The refiner's grid for a region of ``size``: longest side ``working_size`` (never upscaled)."""
    h, w = size
    scale = min(1.0, working_size / max(h, w))
    return max(8, round(h * scale)), max(8, round(w * scale))


def refiner_example(img, rough, alpha, shadow, clean, saliency_model, working_size: int,
                    saliency_size: int | None = None, cast_shadow: bool = True,
                    look: torch.Tensor | None = None, alternatives: int = 0):
    """What the refiner sees for one object region (all ``[1,C,h,w]`` on the region's grid):
    the inputs of :func:`~liwi_core.refiner.refiner_inputs` at :func:`working_grid`, the saliency
    computed at ``saliency_size`` (the refiner's config; None: the saliency model's), and with
    ``cast_shadow`` the cast shadow fitted there (:func:`cast_plane`; else all 1). The training
    code builds its examples with this same function.

    ``look``: the classical engine's salient-object look at the mask's window on this region
    (:func:`~liwi_core.engines.classical.salient_look`), taken as the saliency plane instead of a
    look of its own at the whole region. One network pass fewer per object (a fifth of the
    refined engine's time on the tuning scenes); the bundled refiner, which learnt from looks at
    the region, does as well with it: alpha, colour and background the same within 0.0001 on the
    three tuning sets, shadow L1 outside the object 0.1428 -> 0.1439 / 0.1074 -> 0.1076 / 0.1420
    -> 0.1419, false shadow 0.734 -> 0.708 / 0.389 -> 0.376 / 0.583 -> 0.575 (photos, wallpapers,
    second photo draw). Outside the window the plane is 0, so :func:`spare_other_objects` spares
    only what the window holds of other objects.

    ``alternatives`` > 0: returns ``(inputs, runners_up)``, the shadows of that many of the fit's
    runners-up on the same grid (``CastShadowFit.alternatives``; none without ``cast_shadow``)."""
    from ..refiner import refiner_inputs
    from ..saliency import saliency_map

    grid = working_grid(tuple(img.shape[-2:]), working_size)
    small = resize(img, grid, mode="area")
    if look is not None:
        saliency = resize(look.float(), grid, mode="area")
    else:
        saliency = saliency_map(saliency_model, small, normalize=False, sample_size=saliency_size)
    planes = [resize(t, grid, mode="area") for t in (rough, alpha, shadow, clean)]
    fit = cast_fit(small, planes[1], alternatives) if cast_shadow else None
    inputs = refiner_inputs(small, *planes, saliency, None if fit is None else fit.shadow)
    if alternatives > 0:
        return inputs, () if fit is None else fit.alternatives
    return inputs


def cast_fit(image: torch.Tensor, alpha: torch.Tensor, alternatives: int = 0):
    """The cast shadow :func:`~liwi_core.shadow.fit_cast_shadow` fits to the classical ``alpha`` on the
    refiner's grid (``image`` ``[1,3,h,w]``), with that many runners-up."""
    return fit_cast_shadow(image, alpha, alternatives=alternatives)


def cast_plane(image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The refiner's cast-shadow plane ``[1,1,h,w]``: the shadow of :func:`cast_fit`."""
    return cast_fit(image, alpha).shadow


@torch.no_grad()
def predict_corrections(refiner, inputs: torch.Tensor, size: tuple[int, int],
                        background_smoothing: float = BACKGROUND_SMOOTHING):
    """The refiner's corrections for ``inputs`` (:func:`refiner_example`), brought to ``size``; the
    background correction low-passed first (:data:`BACKGROUND_SMOOTHING`, 0 = as predicted)."""
    from ..refiner import RefinerOutput

    param = next(refiner.parameters())
    alpha, shadow, background, *gate = (t.float().to(inputs.device)
                                        for t in refiner(inputs.to(param.device, param.dtype)).to_tuple())
    background = gaussian_blur(background, background_smoothing * max(inputs.shape[-2:]))
    return RefinerOutput(*(resize(t, size, mode="bilinear") for t in (alpha, shadow, background, *gate)))


def keep_edge_below(alpha: torch.Tensor, shadow: torch.Tensor, background: torch.Tensor, new_shadow: torch.Tensor,
                    new_background: torch.Tensor, opaque: float = OPAQUE) -> torch.Tensor:
    """The corrected background, except under the object's soft edge (``0 < alpha < opaque``, ramping
    to the corrected one at ``alpha`` 1), where what lies below the edge (background times shadow)
    stays the classical one: the background there becomes ``background * shadow / new_shadow``.

    The classical background under an edge is its seen neighbourhood, shadow included; multiplied
    by a refined, darker shadow it would be shadowed twice, and the exact colour solve would then
    move the edge's alpha and colour. Dividing the shadow out instead gives the unshadowed ground
    under the edge, and the exported shadow layer keeps the refined shadow there. The refiner's
    background correction is trained for the hidden hole, which it keeps where the object is opaque.

    All ``[1,C,H,W]`` on one grid: ``alpha`` 1 channel, shadows 1 or 3, backgrounds 3.
    """
    # on the edge's pixels only: a thin band of a large photo's region
    edge = PixelSet((alpha > 0) & (alpha < 1))
    weight = ((edge.take(alpha) - opaque) / (1 - opaque)).clamp(0, 1)
    unshadowed = (edge.take(background) * edge.take(shadow) / edge.take(new_shadow).clamp_min(1e-3)).clamp(0, 1)
    return edge.put(new_background, weight * edge.take(new_background) + (1 - weight) * unshadowed)


#: the ground seen beside an object's soft edge bounds the shadow on the edge within this
#: fraction of the region's longest side (:func:`shadow_on_soft_edge`)
SEEN_GROUND_REACH = 0.01


def shadow_through_openings(corrected: torch.Tensor, classical: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The refined shadow map ``corrected`` no darker than the ``classical`` one in the openings the
    object encloses (alpha < 0.5 inside its outline, :func:`~liwi_core.filters.enclosed_holes`).

    The refiner learnt its shadow correction on objects standing on a ground, where the shadow
    falls under and around them, and it darkens the object's whole area. Through an opening (an
    arch, a window, the gap of a handle) the photo shows what lies behind: often sky or far
    trees, which the object cannot shade. The background there is the image with the shadow
    divided out, so the openings of a ruin's arcade glowed once the ruin was taken away (a
    training photo of the Trier baths: 0.83 there, the classical map 1.0). The classical map is
    read from those pixels (darker than what is lit around the object) and keeps a shadow that
    the photo shows. All ``[1,C,h,w]`` on one grid, ``alpha`` one channel."""
    holes = enclosed_holes(alpha >= 0.5)
    if not bool(holes.any()):
        return corrected
    return torch.where(holes, torch.maximum(corrected, classical), corrected)


def shadow_on_soft_edge(shadow: torch.Tensor, alpha: torch.Tensor, reach: float = SEEN_GROUND_REACH) -> torch.Tensor:
    """``shadow`` on the object's soft edge (0 < alpha < 1) no darker than the darkest it is on the
    ground seen (alpha 0) within ``reach`` of the region's longest side, or, where none is seen
    that near, than on the nearest seen (push-pull).

    What lies below a soft edge is the ground beside it, and so is its shadow. The refiner's
    correction continues the shadow from under the object out to its edge, also where the ground
    beside the edge is lit (a camel's back against the sky), and the background under the edge,
    that shadow divided out (:func:`keep_edge_below`), drew a bright line along the outline once
    the object was taken away. All ``[1,C,h,w]`` on one grid, ``alpha`` one channel."""
    seen, edge = alpha <= 0, (alpha > 0) & (alpha < 1)
    if not bool(edge.any()) or not bool(seen.any()):
        return shadow
    r = max(2, round(reach * max(alpha.shape[-2:])))
    darkest = erode(torch.where(seen, shadow, torch.ones_like(shadow)), r)
    near = dilate(seen.float(), r) > 0.5
    bound = darkest
    if bool((edge & ~near).any()):  # the fill costs 0.1-0.2 s on a 900-px region: only where it is read
        bound = torch.where(near, darkest, push_pull_fill(darkest, near.float()))
    return torch.where(edge, torch.maximum(shadow, bound), shadow)


def other_objects(alpha: torch.Tensor, saliency: torch.Tensor, reach: float = OTHER_OBJECTS_REACH) -> torch.Tensor:
    """Where ``saliency`` (``[1,1,*,*]`` in [0,1], any grid; resized) marks an object more than
    ``reach`` (fraction of the region's longest side) from this one's (``alpha`` ``[1,1,h,w]`` >
    0.5): ``[1,1,h,w]`` bool, what :func:`spare_other_objects` spares."""
    size = tuple(alpha.shape[-2:])
    salient = resize(saliency.float(), size, mode="bilinear") > SALIENCY_HIGH
    near = dilate((alpha > 0.5).float(), max(1, round(reach * max(size)))) > 0.5
    return salient & ~near


def spare(corrections, elsewhere: torch.Tensor):
    """The corrections without the shadow correction's darkening where ``elsewhere``
    (:func:`other_objects`, on their grid), and with the gate on the fitted cast shadow closed there."""
    from ..refiner import RefinerOutput

    gate = corrections.cast_gate
    return RefinerOutput(corrections.alpha, torch.where(elsewhere, corrections.shadow.clamp(min=0), corrections.shadow),
                         corrections.background,
                         None if gate is None else torch.where(elsewhere, torch.zeros_like(gate), gate))


def spare_other_objects(corrections, alpha: torch.Tensor, saliency: torch.Tensor,
                        reach: float = OTHER_OBJECTS_REACH):
    """The refiner's corrections (a :class:`~liwi_core.refiner.RefinerOutput` on one ``[h,w]`` grid)
    without the shadow correction's darkening (log space, ``[1,1|3,h,w]``) where ``saliency``
    (``[1,1,*,*]`` in [0,1], any grid; resized) marks an object more than ``reach`` (fraction of
    the region's longest side) from this one's (``alpha`` ``[1,1,h,w]`` > 0.5), and with the gate
    on the fitted cast shadow (if any) closed there too: a silhouette projected onto another
    object is that object's own dark. Lightening is kept; zero corrections stay exactly zero."""
    return spare(corrections, other_objects(alpha, saliency, reach))


def choose_gate(image: torch.Tensor, alpha: torch.Tensor, shadow: torch.Tensor, predicted, gated: torch.Tensor,
                cast: torch.Tensor, elsewhere: torch.Tensor, runners_up: list[torch.Tensor] = ()) -> torch.Tensor:
    """The corrected shadow map, with the fitted ``cast`` shadow taken as far as the refiner's gate
    says (``gated``, the map as corrected), not at all, or wholly wherever it is darker: whichever
    leaves the smoothest ground once taken away (:func:`~liwi_core.shadow.smoothest_shadow`;
    ``gated`` on a tie). ``runners_up`` (the fit's other silhouettes, ``[1,1,*,*]``, any grid)
    challenge them, each taken wholly wherever darker, and win only by
    :data:`~liwi_core.shadow.CHALLENGER_MARGIN`. ``predicted``: the refiner's corrections; each
    choice spares what ``elsewhere`` marks (:func:`other_objects`, :func:`spare`). The rest on one
    ``[1,C,h,w]`` grid.

    The choice is made on the judge's grid (:func:`~liwi_core.shadow.roughness_grid`), all maps at
    once; only the chosen one is then made at full size.

    The gate is learnt per pixel and cannot weigh the whole silhouette against the image; the
    ground can. On the tuning scenes the maps it keeps miss less shadow and darken less where none
    is cast than the gate alone (docs/refined-engine.md, step 4)."""
    from ..refiner import RefinerOutput, corrected_shadow

    def maps(size, gates, planes):
        """The shadow maps of each gate with each plane (``[N,1,*,*]``), on ``size``."""
        small = lambda t: resize(t.float(), size)
        log_shadow = small(predicted.shadow)
        # only the shadow and the gate matter here; the alpha and background corrections stand in
        choices = spare(RefinerOutput(log_shadow, log_shadow, log_shadow, gates), small(elsewhere) > 0.5)
        return corrected_shadow(small(shadow), choices, cast=planes)

    size = tuple(alpha.shape[-2:])
    grid = roughness_grid(size)
    planes = torch.cat([resize(cast, grid)] * 2 + [resize(r.float(), grid) for r in runners_up])
    gates = torch.ones_like(planes)
    gates[0] = 0  # the first: the fitted shadow not taken; then wholly, with the fit, then with each runner-up
    options = maps(grid, gates, planes).split(1)
    k = smoothest_shadow(resize(image, grid), [resize(gated, grid), *options[:2]], resize(alpha, grid),
                         list(options[2:]))
    if k == 0:
        return gated
    plane = cast if k < 3 else resize(runners_up[k - 3].float(), size, mode="bilinear")
    return maps(size, torch.full_like(plane, float(k > 1)), plane)


#: how many of the cast-shadow fit's runners-up challenge the refiner's map (:func:`choose_gate`).
#: Chosen on the two photo tuning draws (the maps cached; shadow L1 outside the object / false
#: shadow / the whole map's error outside the object over the true darkening; runners-up 45 degrees
#: apart): none 0.1410 / 0.595 / 1.091, 1 0.1403 / 0.595 / 1.088, 2 0.1396 / 0.595 / 1.085, 3
#: 0.1378 / 0.595 / 1.081, 5 0.1374 / 0.596 / 1.080
CAST_ALTERNATIVES = 3


class RefinedEngine(Engine):
    """``create("refined", **settings)``, or ``create("refined", refiner=...)`` with a loaded refiner."""

    name = "refined"
    needs_masks = True

    def __init__(self, settings: RefinedSettings | None = None, refiner=None, saliency_model=None,
                 edge_refiner=None, **options):
        from ..proposals import saliency_model as shared_saliency_model

        self.settings = check_settings(settings if settings is not None else RefinedSettings(**options))
        self.refiner = refiner if refiner is not None else load_refiner(self.settings.refiner_checkpoint)
        self.saliency_model = saliency_model if saliency_model is not None else shared_saliency_model()
        self.edge_refiner = None
        if self.settings.refine_edges:
            self.edge_refiner = edge_refiner if edge_refiner is not None else load_edge_refiner()

    def meta(self) -> dict:
        edges = None if self.edge_refiner is None else dict(self.edge_refiner.config)
        return {"engine": self.name, "settings": {**self.settings.to_dict(), "refiner": dict(self.refiner.config),
                                                  "edge_refiner": edges}}

    def _peel_one(self, image: torch.Tensor, mask: torch.Tensor, move_outline: bool = True,
                  others: torch.Tensor | None = None, proposal: bool = False):
        from ..edge_refiner import MAX_EDGE_BLUR, refine_edges
        from ..refiner import apply_corrections, input_plane

        # the colours are solved again once corrected: carrying them outward now would be wasted
        region, img, rough, (fg, alpha, shadow, clean), drawn, look = peel_region(
            image, mask, self.settings.classical(), move_outline, others, extend=False, proposal=proposal)
        inputs, runners_up = refiner_example(img, rough, alpha, shadow, clean, self.saliency_model,
                                             self.refiner.config.working_size, self.refiner.config.saliency_size,
                                             self.refiner.config.get("cast_shadow", False), look=look,
                                             alternatives=CAST_ALTERNATIVES)
        predicted = predict_corrections(self.refiner, inputs, tuple(img.shape[-2:]))
        elsewhere = other_objects(alpha, input_plane(inputs, "saliency"))
        corrections = spare(predicted, elsewhere)
        if not bool((alpha <= 0).any()):
            # nothing of the background is seen: keep the documented unknown grey, not a guess
            corrections.background = torch.zeros_like(corrections.background)
        corrected = any(bool(t.any()) for t in corrections.to_tuple())
        cast = None
        if corrections.cast_gate is not None:
            cast = resize(input_plane(inputs, "cast"), tuple(img.shape[-2:]), mode="bilinear")
        new_alpha, new_shadow, new_clean = (apply_corrections(alpha, shadow, clean, corrections, cast=cast)
                                            if corrected else (alpha, shadow, clean))
        if cast is not None and corrected:
            new_shadow = choose_gate(img, alpha, shadow, predicted, new_shadow, cast, elsewhere, runners_up)
        # a mask kept as drawn already lies on the object's edges: moving them could only lose
        # (tuning scenes: exact prompts 0.957 -> 0.956 on the photos when it was moved too);
        # a soft edge is left to the matting, which keeps it soft
        if self.edge_refiner is not None and not drawn and edge_blur(img, new_alpha) <= MAX_EDGE_BLUR:
            new_alpha = refine_edges(self.edge_refiner, img, new_alpha, rough)
        # where the photo shows what is below the object, its shadow is what the photo shows; under
        # the opaque object it continues from the map before the edge's bound (so that a moved
        # object's shadow keeps its reach under it)
        hidden = new_shadow
        if corrected:
            hidden = shadow_through_openings(new_shadow, shadow, new_alpha)
            new_shadow = shadow_on_soft_edge(hidden, new_alpha)
        if corrected or not torch.equal(new_alpha, alpha):
            new_clean = keep_edge_below(new_alpha, shadow, clean, new_shadow, new_clean)
            below = torch.where(new_alpha < OPAQUE, new_shadow, continue_under_object(hidden, new_alpha))
            fg, alpha, shadow, clean = explain_object(img, new_alpha, below, new_clean)
        else:
            fg = extend_colours(fg, alpha)
        return paste_region(image, region, fg, alpha, shadow, clean)

    def peel(self, image, masks, names, prompt_indices, step=None, find=None) -> Peeled:
        # proposals are not searched for an offset (as in the classical engine), and are cut by
        # the looks instead of GrabCut where the looks cover them (classical.proposal_cut)
        move, proposal = find is None, find is not None
        return StackBuilder(image).peel_each(masks, names, prompt_indices,
                                             lambda current, mask, others: self._peel_one(current, mask, move,
                                                                                          others, proposal),
                                             self.settings.shadow_channels, step)
