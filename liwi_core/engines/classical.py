"""The classical engine: mask-guided decomposition with no learned weights.

Objects are peeled front to back. For each object on what is left of the image:
alpha from its rough mask (:mod:`liwi_core.matting`), its shadow as the illumination
residual near it (:func:`liwi_core.shadow.estimate_shadow`), the background under the
shadow by dividing the shadow out, the background under the object by push-pull
inpainting, and finally the foreground colours solved exactly. Every step explains the
pixels it removes, so the stack recomposes to the input (lossless by construction).

All work for an object happens inside its region of interest (the object's box grown
by its shadow reach), which bounds time and memory on large photos.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..filters import bounding_box, colour_edges, resize
from ..matting import (edge_alignment, edge_blur, edge_offset, estimate_alpha, is_box, offset_mask, refine_mask,
                       trimap_from_mask)
from ..options import check_settings, option
from ..shadow import estimate_shadow
from .base import Engine, Peeled, StackBuilder
from .exact import explain_object

__all__ = ["ClassicalEngine", "ClassicalSettings", "edge_outline", "outline_search"]

#: a rough mask whose outline scores at least this (:func:`~liwi_core.matting.edge_alignment`:
#: edge strength on the outline over the strongest ring around it) is kept as drawn. Chosen on
#: the tuning scenes (benchmarks/dev, every object with each of its five prompt kinds): 65% of
#: exact prompts pass, 18% of blobs (mostly the true outline with a bump), 1% of eroded ones,
#: no dilated prompt and no box.
EXACT_OUTLINE = 2.0
#: the soft-edge band around a kept or moved outline, as a fraction of the automatic one (at
#: least 1 px). Only the edge's own softness is unknown there, but a blurred or defocused edge
#: needs the room: on the tests' blurred disc an exact mask gives 0.978 alpha IoU at a quarter
#: and 0.996 at a half, the disc grown evenly 0.968 and 0.992. The tuning scenes, whose
#: cut-outs have crisp edges, score a little higher at a quarter (0.9446 against 0.9427)
KEPT_BAND = 0.5
#: the soft-edge band is at least this many times the photo's edge blur along the cut
#: (:func:`~liwi_core.matting.edge_blur`, Gaussian sigma in px): matting can only make an edge
#: soft where the band lets it. A defocused edge rises over about +-2.3 sigma, a linear ramp
#: (fur, motion) over +-1.25 of the sigma it reads as; wider, the band lets the matting take a
#: shadow beside the edge for faint alpha. Soft tuning scenes (alpha IoU / foreground L1):
#: 0 (the band for crisp edges alone) 0.868 / 0.0486, 2.0 0.8717 / 0.0487, 2.5 0.8725 / 0.0490;
#: the sharp photo and wallpaper scenes the same at all three
BLUR_BAND = 2.0
#: how far a uniformly loose or timid prompt is searched for an outline on the edges: at most
#: this many pixels at the <= 640 px measuring size, and at most this share of the object's size
OUTLINE_SEARCH_PX, OUTLINE_SEARCH_SHARE = 12, 0.15
#: a loose brush whose outline, shrunk by the best offset, scores at least this many times the
#: drawn outline (but less than :data:`EXACT_OUTLINE`) starts GrabCut from the shrunk mask: the
#: offset says how loose it is, and the margin it leaves around a thin object (a stethoscope's
#: loops) is background GrabCut would otherwise take. Chosen on both tuning sets (layers with a
#: negative offset that were cut: every dilated prompt scored 1.5 to 22 times higher shrunk and
#: gained or stayed; exact prompts and blobs scored at most 1.7 times and mostly lost)
LOOSE_GAIN = 2.0
#: the same for a timid brush grown by its offset: GrabCut then starts from the whole object,
#: not only the part the brush covered. On both tuning sets every eroded prompt that was cut
#: scored 1.27 to 3.5 times higher grown and gained (up to 0.05 IoU); exact prompts scored at
#: most 1.01 times
TIMID_GAIN = 1.2
#: a mask the outline search would shrink to less than this share of its area is not taken for a
#: loose brush (neither kept nor started from): the edges inside a thin object drew the search.
#: On the three photo and wallpaper tuning sets (200 scenes) 65 prompts were shrunk, keeping 0.34
#: to 0.95 of their area, and one kept 0.06: an eroded prompt of a pencil, shrunk by 8 px to a
#: sliver the matting then lost whole (an empty layer)
MIN_SHRUNK_SHARE = 0.25
#: an automatic-mode proposal whose zoomed looks cover at least this share of it is cut by the
#: looks alone (:func:`proposal_cut`, the refined engine), else by GrabCut. Chosen on the 59 objects
#: found in 60 training photos (GCompris, 512 px), each layer cut both ways: looks covering 0.8 or
#: more gave 0.895-0.997 alpha IoU with GrabCut's layer (27 objects); below, a palace or a ruin came
#: out in fragments (0.18-0.55 at 0.10-0.46 cover) and the rest 0.73-0.997. Unconditionally, the tuning
#: sets gained (automatic matched IoU 0.770 / 0.759 / 0.701 / 0.519 -> 0.782 / 0.758 / 0.704 /
#: 0.542) while such photos lost whole parts (docs/automatic-mode.md, Proposals cut by the looks)
PROPOSAL_COVER = 0.8
#: ... and whose two looks (the salient-object network and the prompt segmenter) disagree on at most
#: this share of it: where one of them marks a part of the proposal the other does not (a cat's pale
#: chest along its whiskers, a drum's bells), GrabCut's colours decide it. Chosen on the 28 objects of
#: 60 other training photos (GCompris, 512 px) that the looks cut, each also cut by GrabCut: the
#: lowest agreements of the two layers came with disagreement above 0.045 (Mont St Michel 0.10 ->
#: alpha IoU 0.875, Carcassonne 0.07 -> 0.91), and drawn side by side GrabCut's layers there were
#: as clean and more complete; a kitten whose looks left out the green rim and the plank GrabCut
#: took disagrees on 0.036 and stays with the looks
LOOKS_DISAGREE = 0.045


@dataclass
class ClassicalSettings:
    """Settings of the classical engine (all written to ``layers.json``); the one declaration the
    CLI flags and the Decompose node's widgets are made from."""

    refine: bool = option(True, "Snap rough masks to the object with GrabCut (a mask whose outline already lies on "
                                "the object's edges, or does once grown or shrunk evenly by up to about 2% of the "
                                "image, is kept that way). Turn off for exact masks.",
                          cli="--no-refine", node="refine_masks")
    edge_radius: int = option(0, "Half-width in pixels of the soft-edge band (hair, fur). 0 = automatic "
                                 "(about 2% of the object's size).", minimum=0, maximum=256, step=1)
    shadow_reach: float = option(0.5, "How far from an object its shadow is looked for, as a fraction of the "
                                      "object's size. 0 = no shadow layers.", minimum=0.0, maximum=4.0, step=0.05)
    shadow_threshold: float = option(0.06, "Darkening weaker than this is treated as texture, not shadow.",
                                     minimum=0.0, maximum=0.5, step=0.01)
    shadow_channels: int = option(1, "1 = grey shadow maps (one attenuation for R, G, B), 3 = coloured (tinted "
                                     "shadows).", choices=(1, 3), labels={"grey": 1, "colour": 3})
    saliency_guide: bool = option(True, "Let the bundled salient-object network (u2netp) look at each rough mask's box "
                                        "before GrabCut: it trims a box's corners and grows an eroded mask back. "
                                        "Off: the mask and the colours alone (0.35 s less per object).",
                                  cli="--no-saliency-guide")
    prompt_segmenter: bool = option(True, "With the saliency guide on: look with the bundled prompt segmenter "
                                          "(liwi-segmenter, the salient-object network taught to follow a rough "
                                          "mask) instead of the plain salient-object network, which marks whatever "
                                          "stands out in the box.", cli="--no-prompt-segmenter")

    def to_dict(self) -> dict:
        return asdict(self)


def _auto_band(seg: torch.Tensor, scale_hint: float) -> int:
    area = float((seg > 0.5).sum())
    return max(3, round(0.02 * math.sqrt(area)), math.ceil(2.0 * scale_hint))


def object_region(mask: torch.Tensor, settings: ClassicalSettings) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: where an object's work happens, its box grown by its shadow reach
    (``settings.shadow_reach`` of its size) plus a margin; ``mask`` ``[1,1,H,W]`` not empty."""
    h, w = mask.shape[-2:]
    y0, y1, x0, x1 = bounding_box(mask)
    size = max(y1 - y0, x1 - x0)
    pad = round(settings.shadow_reach * size) + max(8, size // 8)
    return max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)


def estimate_layers(img: torch.Tensor, rough: torch.Tensor, settings: ClassicalSettings, move_outline: bool = True,
                    others: torch.Tensor | None = None):
    """The classical estimate on an object's region: ``(alpha, shadow)`` from the image ``[1,3,h,w]``
    and its rough mask ``[1,1,h,w]`` (GrabCut, colour-line matting, illumination residual).
    ``move_outline`` False: a mask off the edges is not searched for an even offset onto them
    (automatic mode's proposals follow a smooth map, not a brush). ``others``: the other objects'
    prompts on the region, for GrabCut (:func:`~liwi_core.matting.refine_mask`)."""
    return _estimate(img, rough, settings, move_outline, others)[:2]


def _estimate(img, rough, settings: ClassicalSettings, move_outline: bool, others, proposal: bool = False):
    """:func:`estimate_layers`, whether the mask was kept as drawn (its outline on the edges), and the
    salient-object look at the mask's window (:func:`salient_look`; None when none was taken).
    ``proposal``: the mask is automatic mode's proposal, cut by the looks alone (:func:`proposal_cut`)."""
    # a mask already drawn on the object's outline (painted with care, or from a segmentation
    # model), or one that is that outline grown or shrunk evenly, is kept: GrabCut would only
    # move a correct boundary
    # a proposal is the network's region grown by a margin, by construction off the object's edges
    # (none of 462 on the four tuning sets and 120 training photos passed), so it is not checked
    outline, shift, start = (outline_search(img, rough, search=move_outline) if settings.refine and not proposal
                             else (None, 0, rough))
    kept = outline is not None
    snap = settings.refine and not kept
    guide = look = None
    if snap and settings.saliency_guide:
        from ..precision import using_precision
        from ..segmenter import shared_segmenter

        # a box says where an object is, not its shape, which the looks then give: in bfloat16
        # boxes lost alpha on the photo tuning scenes (0.9316 -> 0.9283, the other prompts within
        # 0.0005), so they keep float32 (README, Network precision)
        with using_precision("float32") if is_box(rough > 0.5) else contextlib.nullcontext():
            look = salient_look(img, rough)
            guide, segmented = prompt_saliency(img, rough, look=look, parts=True,
                                               segmenter=shared_segmenter() if settings.prompt_segmenter else None)
    seg = proposal_cut(rough, look, segmented) if snap and proposal and look is not None else None
    if seg is None:
        seg = refine_mask(img, start, saliency=guide, others=others, timid=shift > 0,
                          drawn=rough if shift < 0 and start is not rough else None) if snap else \
            outline if kept else (rough > 0.5).float()
    if float((seg > 0.5).sum()) == 0:
        seg = (rough > 0.5).float()
    upscale = max(img.shape[-2:]) / 640.0 if settings.refine else 1.0
    # a kept outline is on the edge already: only the edge's own softness is unknown
    band = settings.edge_radius or max(1, round((KEPT_BAND if kept else 1.0) * _auto_band(seg, upscale)),
                                       math.ceil(BLUR_BAND * edge_blur(img, seg)))
    trimap = trimap_from_mask(seg, band)
    alpha = estimate_alpha(img, trimap, seg)
    reach = round(settings.shadow_reach * max(_box_size(rough), 1))
    shadow = estimate_shadow(img, alpha, reach, settings.shadow_threshold, settings.shadow_channels)
    return alpha, shadow, kept and shift == 0, look


def proposal_cut(rough: torch.Tensor, look: torch.Tensor, segmented: torch.Tensor | None = None
                 ) -> torch.Tensor | None:
    """An automatic-mode proposal ``rough`` ``[1,1,h,w]`` cut by the zoomed looks at its window: the
    salient-object network's ``look`` (:func:`salient_look`) and the prompt segmenter's map
    ``segmented`` (None without the segmenter), both ``[1,1,h,w]`` in [0,1]. The object is where
    both say so (above 0.5; the guide of :func:`prompt_saliency`), as after GrabCut two of mask,
    cut and map must agree. None (GrabCut decides) unless the looks cover at least
    :data:`PROPOSAL_COVER` of the proposal and disagree on at most :data:`LOOKS_DISAGREE` of it.

    A proposal is the salient-object network's own region, not a brush that knows nothing of the
    object's shape: where the network, zoomed on it, marks it again, the looks already draw that
    shape, and the refined engine's matting and edge network settle its edge; GrabCut cost about
    a third of each object's time. Where the zoomed look marks only part of the region (a
    building's pale wing, a ruin's far half), or the two looks mark different parts of it (a
    cat's pale chest), GrabCut's colour models take the rest back.
    """
    inside = rough > 0.5
    says = look > 0.5
    other = says if segmented is None else segmented > 0.5
    area = max(1.0, float(inside.sum()))
    seg = (inside & says & other).float()
    if float(seg.sum()) < PROPOSAL_COVER * area or float((inside & (says ^ other)).sum()) > LOOKS_DISAGREE * area:
        return None
    return seg


def edge_outline(img: torch.Tensor, rough: torch.Tensor, max_side: int = 640, search: bool = True
                 ) -> torch.Tensor | None:
    """The outline of :func:`outline_search` alone."""
    return outline_search(img, rough, max_side, search)[0]


def outline_search(img: torch.Tensor, rough: torch.Tensor, max_side: int = 640, search: bool = True
                   ) -> tuple[torch.Tensor | None, int, torch.Tensor]:
    """The object's outline from a rough mask ``[1,1,h,w]`` when the mask follows the image's
    edges: the mask itself when its outline scores at least :data:`EXACT_OUTLINE`
    (:func:`~liwi_core.matting.edge_alignment`), else the mask grown or shrunk by the offset
    whose outline scores best (:func:`~liwi_core.matting.edge_offset`, a loose or timid brush)
    when that one scores at least as much; ``None`` otherwise (boxes, blobs, masks off the
    edges). Measured on a copy at most ``max_side`` px; the offset is then scaled back.
    ``search`` False: only the mask itself is tried. Returns ``(outline, shift, start)``:
    ``shift`` the best offset found (px on the copy; > 0 outward: a timid brush), 0 when none
    was searched; ``start`` the mask a segmentation should start from: ``rough``, or ``rough``
    moved by the offset when the brush is plainly loose or timid (:data:`LOOSE_GAIN`,
    :data:`TIMID_GAIN`; never a box)."""
    h, w = img.shape[-2:]
    scale = min(1.0, max_side / max(h, w))
    small_img, small = img, (rough > 0.5).float()
    if scale < 1.0:
        size = (max(2, round(h * scale)), max(2, round(w * scale)))
        small_img, small = resize(img, size, mode="area"), (resize(rough.float(), size, mode="area") > 0.5).float()
    edges = colour_edges(small_img)
    drawn = edge_alignment(small_img, small, edges=edges)
    if drawn >= EXACT_OUTLINE:
        return (rough > 0.5).float(), 0, rough
    if not search:
        return None, 0, rough
    reach = min(OUTLINE_SEARCH_PX, round(OUTLINE_SEARCH_SHARE * float(small.sum()) ** 0.5))
    shift = edge_offset(small_img, small, reach, edges=edges)
    if shift == 0:
        return None, 0, rough
    moved = offset_mask(rough, round(shift / scale))
    if shift < 0 and float((moved > 0.5).sum()) < MIN_SHRUNK_SHARE * float((rough > 0.5).sum()):
        # edges inside a thin object (a pencil's grain) drew the search: no brush is that loose
        return None, 0, rough
    score = edge_alignment(small_img, offset_mask(small, shift), edges=edges)
    if score >= EXACT_OUTLINE:
        return (moved if float(moved.sum()) > 0 else None), shift, rough
    gain = LOOSE_GAIN if shift < 0 else TIMID_GAIN
    plain = score >= gain * drawn and float(moved.sum()) > 0 and not is_box(small)
    return None, shift, moved if plain else rough


def salient_look(img: torch.Tensor, rough: torch.Tensor, margin: float = 0.25) -> torch.Tensor:
    """The salient-object network's map ``[1,1,h,w]`` of the rough mask's box grown by ``margin`` of
    its size (:func:`~liwi_core.segmenter.prompt_window`; 0 elsewhere), its own probability, not
    stretched: zoomed onto the prompt, the object it marks is the salient one."""
    from ..proposals import saliency_model
    from ..saliency import saliency_map
    from ..segmenter import prompt_window

    y0, y1, x0, x1 = prompt_window(rough, margin)
    out = torch.zeros_like(rough[:, :1], dtype=torch.float32)
    with torch.no_grad():
        out[..., y0:y1, x0:x1] = saliency_map(saliency_model(), img[..., y0:y1, x0:x1], normalize=False)
    return out


def prompt_saliency(img: torch.Tensor, rough: torch.Tensor, margin: float = 0.25,
                    segmenter=None, look: torch.Tensor | None = None, parts: bool = False):
    """A salient-object map ``[1,1,h,w]`` of the rough mask's box grown by ``margin`` of its size
    (:func:`~liwi_core.segmenter.prompt_window`; 0 elsewhere), the network's own probability, not
    stretched: zoomed onto the prompt, the object it marks is the salient one, whatever else the
    photo holds.

    With a prompt ``segmenter`` (:mod:`liwi_core.segmenter`), which also sees the mask, the map is
    the lower of its map and the salient-object network's: a pixel is the object's where both
    say so. The segmenter drops what a box or a loose brush holds besides the object (a
    neighbour the salient-object network marks too); the salient-object network, which has only
    seen real photos, drops what the segmenter, taught mostly on cut-outs pasted on photos, takes
    from a loose brush on a real one (a rocket's gantry).

    ``look``: :func:`salient_look` of the same ``img``, ``rough`` and ``margin`` when already taken.
    ``parts``: return ``(map, segmented)``, the segmenter's own map too (None without one).
    """
    from ..segmenter import segment_prompt

    out = look if look is not None else salient_look(img, rough, margin)
    segmented = segment_prompt(segmenter, img, rough, margin) if segmenter is not None else None
    if segmented is not None:
        out = torch.minimum(out, segmented)
    return (out, segmented) if parts else out


def _box_size(mask: torch.Tensor) -> int:
    y0, y1, x0, x1 = bounding_box(mask)
    return max(y1 - y0, x1 - x0)


def paste_region(image: torch.Tensor, region: tuple[int, int, int, int], fg: torch.Tensor, alpha: torch.Tensor,
                 shadow: torch.Tensor, clean: torch.Tensor):
    """An object's layers worked out on ``region`` of ``image``, put on the whole canvas:
    ``(fg, alpha, shadow, below)`` with alpha 0, no shadow and the image itself outside it."""
    h, w = image.shape[-2:]
    ry0, ry1, rx0, rx1 = region
    roi = (slice(None), slice(None), slice(ry0, ry1), slice(rx0, rx1))

    def paste(part: torch.Tensor, fill: float | torch.Tensor) -> torch.Tensor:
        if isinstance(fill, torch.Tensor):
            out = fill.clone()
        else:
            out = torch.full((1, part.shape[1], h, w), fill, dtype=part.dtype, device=part.device)
        out[roi] = part
        return out

    # the colour, extended over the region of interest, continues to the canvas's edges
    fg_canvas = F.pad(fg, (rx0, w - rx1, ry0, h - ry1), mode="replicate")
    return fg_canvas, paste(alpha, 0.0), paste(shadow, 1.0), paste(clean, image)


def peel_region(image: torch.Tensor, mask: torch.Tensor, settings: ClassicalSettings, move_outline: bool = True,
                others: torch.Tensor | None = None, extend: bool = True, proposal: bool = False):
    """The classical answer for one object on its region (:func:`object_region`), made exact.

    Returns ``(region, img, rough, (fg, alpha, shadow, clean), drawn, look)``: the region, the
    image and the mask cut to it, the layers on it (:func:`~liwi_core.engines.exact.explain_object`),
    whether the mask was kept as drawn (its outline already on the object's edges, neither
    snapped nor moved), and the salient-object look at the mask's window on the region
    (:func:`salient_look`), or None where the mask was kept or the look is off. The refined
    engine and its training examples start from this same answer. ``move_outline``, ``others`` (on the whole canvas):
    as :func:`estimate_layers`; ``proposal``: as :func:`_estimate`; ``extend``:
    as :func:`~liwi_core.engines.exact.explain_object`.
    """
    region = object_region(mask, settings)
    ry0, ry1, rx0, rx1 = region
    img, rough = image[..., ry0:ry1, rx0:rx1], mask[..., ry0:ry1, rx0:rx1]
    near = None if others is None else others[..., ry0:ry1, rx0:rx1]
    alpha, shadow, drawn, look = _estimate(img, rough, settings, move_outline, near, proposal)
    return region, img, rough, explain_object(img, alpha, shadow, fill=None, extend=extend), drawn, look


def _peel_one(image: torch.Tensor, mask: torch.Tensor, settings: ClassicalSettings, move_outline: bool = True,
              others: torch.Tensor | None = None):
    """Remove one object from ``image`` ``[1,3,H,W]``.

    Returns ``(fg, alpha, shadow, below_clean)`` on the same canvas, where
    ``image == alpha * fg + (1 - alpha) * below_clean * shadow``.
    """
    region, _, _, layers, _, _ = peel_region(image, mask, settings, move_outline, others)
    return paste_region(image, region, *layers)


class ClassicalEngine(Engine):
    """Mask-guided decomposition with no weights: ``create("classical", **settings)``."""

    name = "classical"
    needs_masks = True

    def __init__(self, settings: ClassicalSettings | None = None, move_outline: bool = True, **options):
        """``move_outline`` False: masks are never moved onto the edges by an even offset
        (:func:`edge_outline`), only kept as drawn or snapped; ADD's cut-outs use it."""
        self.settings = check_settings(settings if settings is not None else ClassicalSettings(**options))
        self.move_outline = move_outline

    def peel(self, image, masks, names, prompt_indices, step=None, find=None) -> Peeled:
        # automatic mode's proposals (find given) follow a smooth map: no even offset to undo
        move = find is None and self.move_outline
        return StackBuilder(image).peel_each(masks, names, prompt_indices,
                                             lambda current, mask, others: _peel_one(current, mask, self.settings,
                                                                                     move, others),
                                             self.settings.shadow_channels, step)
