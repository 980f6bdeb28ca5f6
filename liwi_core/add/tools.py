"""ADD's tools: small, swappable functions an agent calls to make a layered sample.

All tensors are ``[1,C,H,W]`` float in [0,1]. Randomness comes only from the
``torch.Generator`` passed in, so a sample is a function of its seed.
"""

from __future__ import annotations

import torch

from ..compositing import premultiply, unpremultiply
from ..decompose import decompose, prepare_masks
from ..engines import create
from ..errors import LiWiError
from ..filters import bounding_box, dilate, erode, gaussian_blur, resize
from ..shadow import synthesize_cast_shadow

__all__ = ["extract_foreground", "clean_background", "harmonize", "place_objects", "cast_shadow",
           "degrade_prompts"]


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _rgb(image: torch.Tensor) -> torch.Tensor:
    """``[1,3,H,W]`` colour of a grey, RGB or RGBA image."""
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image[:, :3]


def _numpy(t: torch.Tensor):
    return t[0, 0].detach().cpu().numpy()


def _tensor(array, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(array.astype("float32"))[None, None].to(like.device, like.dtype)


def extract_foreground(image: torch.Tensor, mask: torch.Tensor, refine: bool = True,
                       return_box: bool = False):
    """RGBA cut-out ``[1,4,h,w]`` of the masked object, cropped to its alpha (+2 px).

    Uses the classical engine (matting + exact colours, no shadow) so edges stay soft.
    The mask is taken as the object's outer limit: alpha is kept within a soft margin of
    it (about 1% of the object's size, for hair and edges a tight mask cuts), so GrabCut
    cannot carry a dark contact shadow or the table along with the object, and what is
    left is the part of the alpha joined to the object (loose specks of texture go).
    Holes that GrabCut cuts into the object (a dark collar read as background) are filled
    from the photo where the mask has no hole: an enclosed gap of the alpha, under the
    mask, smaller than 15% of the object. Colour is straight (not premultiplied).

    ``return_box``: also return where the crop lies in the photo, ``(y0, y1, x0, x1)``.
    """
    image = _rgb(image)
    mask = prepare_masks(mask, tuple(image.shape[-2:]))[:1]
    box = bounding_box(mask)
    if box is None:
        raise LiWiError("cannot cut out an object from an empty mask: draw the object's mask first")
    # not moved onto the edges by an even offset: eroded, a stroke that reached past the object
    # over a speck of its colour would keep a strip of background joining it
    stack = decompose(image, mask, create("classical", refine=refine, shadow_reach=0.0, move_outline=False))
    rgba = stack.layers[0].rgba
    alpha = rgba[:, 3:4] * _within(mask, box)
    alpha = alpha * _joined(alpha)
    holes = _enclosed_holes(alpha, mask)
    # a second pass: the feathered fill can close off a sliver that was open before
    holes = torch.maximum(holes, _enclosed_holes(torch.maximum(alpha, holes), mask))
    alpha = torch.maximum(alpha, holes)
    cropped = crop_to_alpha(torch.cat([torch.lerp(rgba[:, :3], image, holes), alpha], dim=1))
    if cropped is None:
        raise LiWiError("the mask holds no visible object: the cut-out came out empty")
    return cropped if return_box else cropped[0]


def crop_to_alpha(rgba: torch.Tensor, margin: int = 2):
    """``(cut, (y0, y1, x0, x1))``: straight RGBA ``[1,4,H,W]`` cropped to where alpha > 0.01
    plus ``margin`` px (within the frame), colour set to 0 where alpha is 0; None when the
    alpha is empty."""
    found = bounding_box(rgba[:, 3:4], 0.01)
    if found is None:
        return None
    y0, y1, x0, x1 = found
    h, w = rgba.shape[-2:]
    y0, y1, x0, x1 = max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin)
    cut = rgba[..., y0:y1, x0:x1]
    alpha = cut[:, 3:4]
    return torch.cat([cut[:, :3] * (alpha > 0).float(), alpha], dim=1).contiguous(), (y0, y1, x0, x1)


def _within(mask: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """``[1,1,H,W]`` 1 on the mask and a little beyond it (about 1% of the object's size),
    falling smoothly to 0 within another 1%."""
    y0, y1, x0, x1 = box
    r = max(2, round(0.01 * max(y1 - y0, x1 - x0)))
    return gaussian_blur(dilate((mask > 0.5).float(), 2 * r), 0.5 * r).clamp(0.0, 1.0)


def _joined(alpha: torch.Tensor, floor: float = 0.02) -> torch.Tensor:
    """``[1,1,H,W]`` 1 on the object: its solid core (the connected pieces of ``alpha > 0.5``
    holding at least 5% of the largest one's area) and the soft alpha (``> floor``)
    connected to it, less any small solid piece (a speck of texture joined by a faint trail)."""
    import cv2
    import numpy as np

    a = _numpy(alpha)
    count, solid = cv2.connectedComponents((a > 0.5).astype(np.uint8), connectivity=8)
    if count <= 1:
        return torch.ones_like(alpha)
    areas = np.bincount(solid.ravel(), minlength=count)[1:]
    core = np.isin(solid, 1 + np.nonzero(areas >= 0.05 * areas.max())[0])
    count, soft = cv2.connectedComponents((a > floor).astype(np.uint8), connectivity=8)
    keep = np.isin(soft, np.unique(soft[core])) & ((solid == 0) | core)
    return _tensor(keep, alpha)


def _enclosed_holes(alpha: torch.Tensor, mask: torch.Tensor, max_share: float = 0.15) -> torch.Tensor:
    """``[1,1,H,W]`` soft 0-1 map of the gaps to fill: connected pieces of ``alpha < 0.5``
    that touch neither the frame nor the outside of the mask, each under 15% of the area
    of ``alpha > 0.5``; with the object's rim around them (2 px) and feathered."""
    import cv2
    import numpy as np

    solid = _numpy(alpha) > 0.5
    area = int(solid.sum())
    if area == 0:
        return torch.zeros_like(alpha)
    count, labels = cv2.connectedComponents((~solid).astype(np.uint8), connectivity=4)
    open_ = np.zeros(count, bool)
    outside = _numpy(mask) <= 0.5
    open_[np.unique(labels[outside])] = True
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        open_[np.unique(edge)] = True
    sizes = np.bincount(labels.ravel(), minlength=count)
    fill = ~open_ & (sizes < max_share * area)
    chosen = fill[labels] & ~solid  # (label 0 is the solid part itself)
    if not chosen.any():
        return torch.zeros_like(alpha)
    gaps = _tensor(chosen, alpha)
    # with the object's soft rim around each gap, but never into a gap left open
    region = torch.maximum(gaps, dilate(gaps, 2) * (alpha >= 0.5).float())
    return torch.maximum(region, gaussian_blur(region, 1.0)).clamp(0.0, 1.0)


def clean_background(image: torch.Tensor, masks: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove the masked objects and their shadows; ``masks`` None = the photo is already clean.

    ``masks``: ``[N,1,H,W]`` (or ``[N,H,W]``), one per object, peeled nearest first (the
    one reaching lowest in the frame). The rough masks are not refined here: everything
    they cover is replaced (a refined cut that misses a rocket's nose would leave its
    ghost in the background).

    Returns ``(background [1,3,H,W], hole [1,1,H,W])`` (hole: 1 where it was inpainted).
    """
    image = _rgb(image)
    if masks is not None:
        masks = prepare_masks(masks, tuple(image.shape[-2:]))
    if masks is None or bounding_box(masks) is None:
        return image.clone(), torch.zeros_like(image[:, :1])
    stack = decompose(image, masks, create("classical", refine=False), order="bottom")
    return stack.background, stack.hole


def _opponent(rgb: torch.Tensor) -> torch.Tensor:
    """RGB -> (luma, red-green, yellow-blue): an invertible opponent space."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return torch.cat([(r + g + b) / 3, r - g, (r + g) / 2 - b], dim=1)


def _from_opponent(opp: torch.Tensor) -> torch.Tensor:
    lum, rg, yb = opp[:, 0:1], opp[:, 1:2], opp[:, 2:3]
    b = lum - (2.0 / 3.0) * yb
    r = (3 * lum - b + rg) / 2
    g = r - rg
    return torch.cat([r, g, b], dim=1)


def harmonize(rgba: torch.Tensor, background: torch.Tensor, box: tuple[int, int, int, int],
              strength: float = 0.5) -> torch.Tensor:
    """Move the object's colour statistics part of the way toward its new surroundings.

    Per channel of an opponent colour space (luma, red-green, yellow-blue), the object's
    mean is moved ``strength`` of the way (0 = unchanged, 1 = full transfer) toward the
    mean of the background around ``box`` ``(y0, y1, x0, x1)`` (the placement grown by
    half its size), and its spread by the ratio of spreads to the power ``strength``,
    kept within 0.8-1.25 (a plain wall must not wash the object out). Alpha is untouched;
    colour stays in [0, 1] and 0 where alpha is 0.
    """
    alpha = rgba[:, 3:4]
    weight = (alpha > 0.5).float()
    if float(weight.sum()) < 4 or strength <= 0:
        return rgba
    y0, y1, x0, x1 = box
    h, w = background.shape[-2:]
    gy, gx = (y1 - y0) // 2, (x1 - x0) // 2
    region = background[..., max(0, y0 - gy):min(h, y1 + gy), max(0, x0 - gx):min(w, x1 + gx)]
    if region.numel() == 0:
        return rgba
    obj = _opponent(rgba[:, :3])
    ref = _opponent(region[:, :3]).flatten(2)
    n = weight.sum()
    mean_o = (obj * weight).sum(dim=(2, 3), keepdim=True) / n
    std_o = (((obj - mean_o) ** 2 * weight).sum(dim=(2, 3), keepdim=True) / n).sqrt().clamp_min(1e-4)
    mean_r = ref.mean(dim=2)[..., None, None]
    std_r = ref.std(dim=2, unbiased=False)[..., None, None].clamp_min(1e-4)
    target_mean = mean_o + strength * (mean_r - mean_o)
    spread = (std_r / std_o).pow(strength).clamp(0.8, 1.25)
    moved = _from_opponent((obj - mean_o) * spread + target_mean).clamp(0, 1)
    return torch.cat([moved * (alpha > 0).float(), alpha], dim=1)


def resize_rgba(rgba: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize premultiplied so transparent pixels do not darken the edges."""
    return unpremultiply(resize(premultiply(rgba), size).clamp(0, 1))


def place_objects(canvas_hw: tuple[int, int], cutouts: list[torch.Tensor], generator: torch.Generator,
                  ground: tuple[float, float] = (0.55, 0.95), scale: tuple[float, float] = (0.25, 0.6),
                  max_overlap: float = 0.6, tries: int = 6, anchored: list[bool] | None = None
                  ) -> list[tuple[torch.Tensor, tuple[int, int, int, int]]]:
    """Place cut-outs on a ground line, fully inside the canvas; returned back to front.

    Each object's height is a fraction of the canvas height drawn from ``scale`` (shrunk
    if it would not fit), its bottom (contact point) sits at a ground y drawn from
    ``ground`` (fractions of the height), and x keeps it inside the frame. Objects may
    occlude each other, but a front object may cover at most ``max_overlap`` of one
    behind it; one that cannot be placed so after ``tries`` draws is left out.
    ``anchored[i]``: cut-out i was cut by its photo's bottom edge (a bust), so its bottom
    goes on the canvas's bottom edge, where the cut stays out of view.

    Returns:
        ``[(rgba [1,4,H,W] on the full canvas, (y0, y1, x0, x1))]`` ordered back to front
        (contact points ascending in y: lower in the frame is nearer).
    """
    h, w = canvas_hw
    placed: list[tuple[torch.Tensor, tuple[int, int, int, int]]] = []
    for i, cut in enumerate(cutouts):
        ch, cw = cut.shape[-2:]
        for _ in range(tries):
            bottom = round(_uniform(generator, *ground) * (h - 1)) + 1
            if anchored and anchored[i]:
                bottom = h
            height = _uniform(generator, *scale) * h
            height = min(height, bottom - 1, (w - 2) * ch / cw)
            if anchored and anchored[i]:
                height = min(height, (w - 2) * ch / cw)
            if height < 8:
                continue
            oh, ow = max(1, round(height)), max(1, round(height * cw / ch))
            x0 = round(_uniform(generator, 0, max(0, w - ow - 2))) + 1
            box = (bottom - oh, bottom, x0, x0 + ow)
            canvas = torch.zeros((1, 4, h, w), dtype=cut.dtype)
            canvas[..., box[0]:box[1], box[2]:box[3]] = resize_rgba(cut, (oh, ow))
            if _overlap_ok(canvas[:, 3:4], box, placed, max_overlap):
                placed.append((canvas, box))
                break
    return sorted(placed, key=lambda item: item[1][1])


def _overlap_ok(alpha: torch.Tensor, box, placed, max_overlap: float) -> bool:
    for other, other_box in placed:
        front, back = (alpha, other[:, 3:4]) if box[1] >= other_box[1] else (other[:, 3:4], alpha)
        if float((front * back).sum()) > max_overlap * float(back.sum()):
            return False
    return True


def cast_shadow(alpha: torch.Tensor, generator: torch.Generator, **overrides) -> tuple[torch.Tensor, dict]:
    """A cast shadow for an object standing on the ground, and its parameters.

    Drawn wide so that a shadow head trained on it sees many kinds of shadow: the light is
    mostly in front of the object (the shadow falls behind or sideways, ``angle`` 15-165
    degrees), one time in five behind it (the shadow falls toward the viewer, 195-345);
    ``length`` 0.15-1.6 of the object's height, softness 1-20%, opacity 0.25-0.85, contact
    darkness 0.2-0.8, a ``tint`` from neutral to skylight blue (one in seven warm), and one
    time in four a ``second`` light: a fainter shadow in another direction (0 = none).
    ``overrides`` fix any of them.
    """
    toward_viewer = _uniform(generator, 0.0, 1.0) < 0.2
    params = {
        "angle": _uniform(generator, 195.0, 345.0) if toward_viewer else _uniform(generator, 15.0, 165.0),
        "length": _uniform(generator, 0.15, 1.6),
        "softness": _uniform(generator, 0.01, 0.2),
        "opacity": _uniform(generator, 0.25, 0.85),
        "contact": _uniform(generator, 0.2, 0.8),
    }
    shift = _uniform(generator, 0.0, 0.2)
    warm = _uniform(generator, 0.0, 1.0) < 1 / 7
    params["tint"] = [1.0 - shift, 1.0 - 0.5 * shift, 1.0] if warm else [1.0, 1.0 - 0.35 * shift, 1.0 - shift]
    second = _uniform(generator, 0.0, 1.0) < 0.25
    second_angle = _uniform(generator, 15.0, 345.0)
    second_opacity = _uniform(generator, 0.3, 0.7)
    params["second"] = second_opacity if second else 0.0
    params["second_angle"] = second_angle
    params.update(overrides)
    shadow_kw = {k: params[k] for k in ("angle", "length", "softness", "opacity", "contact")}
    shadow = synthesize_cast_shadow(alpha, tint=tuple(params["tint"]), **shadow_kw)
    if params["second"] > 0:
        shadow_kw.update(angle=params["second_angle"], opacity=params["opacity"] * params["second"], contact=0.0)
        shadow = shadow * synthesize_cast_shadow(alpha, tint=tuple(params["tint"]), **shadow_kw)
    return shadow, params


def _scribble(alpha: torch.Tensor, g: torch.Generator, strokes: int = 3) -> torch.Tensor:
    """A few thick strokes between random points inside the object."""
    inside = torch.nonzero(alpha[0, 0] > 0.5)
    out = torch.zeros_like(alpha)
    if inside.numel() == 0:
        return out
    h, w = alpha.shape[-2:]
    box = bounding_box(alpha)
    width = max(1, round(0.04 * max(box[1] - box[0], box[3] - box[2])))
    for _ in range(strokes):
        a, b = inside[torch.randint(0, len(inside), (2,), generator=g)]
        steps = int(max(abs(b - a).tolist())) + 1
        for t in torch.linspace(0, 1, steps):
            y, x = (a + (b - a) * t).round().long().tolist()
            out[..., max(0, y - width):min(h, y + width + 1), max(0, x - width):min(w, x + width + 1)] = 1.0
    return out * (alpha > 0.5).float()  # strokes stay inside the object


def degrade_prompts(alpha: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Prompt masks a user might draw, degraded from the true alpha ``[1,1,H,W]``.

    ``eroded`` / ``dilated``: the object (``alpha > 0.5``) shrunk / grown by 2-6% of its
    size; ``blurred``: a soft mask (Gaussian, sigma 2-6%, scaled to peak at 1); ``box``:
    the bounding box of ``alpha > 0.01`` grown by 2-6%; ``scribble``: a few thick strokes
    inside it. Binary except ``blurred``; never empty for a non-empty alpha (an erosion
    that would make a thin object vanish is halved until something is left). All zeros
    for an empty alpha.
    """
    binary = (alpha > 0.5).float()
    box = bounding_box(binary)
    if box is None:
        return {k: torch.zeros_like(alpha) for k in ("eroded", "dilated", "blurred", "box", "scribble")}
    y0, y1, x0, x1 = box
    size = max(y1 - y0, x1 - x0)
    r = lambda lo, hi: max(1, round(_uniform(generator, lo, hi) * size))  # noqa: E731
    radius = r(0.02, 0.06)
    eroded = erode(binary, radius)
    while float(eroded.sum()) == 0 and radius > 1:  # thin objects: erode less
        radius //= 2
        eroded = erode(binary, radius)
    if float(eroded.sum()) == 0:
        eroded = binary
    dilated = dilate(binary, r(0.02, 0.06))
    blurred = gaussian_blur(binary, float(r(0.02, 0.06)))
    blurred = (blurred / blurred.amax().clamp_min(1e-6)).clamp(0, 1)  # a thin object's peak is 1 too
    grow = r(0.02, 0.06)
    h, w = alpha.shape[-2:]
    y0, y1, x0, x1 = bounding_box(alpha, 0.01)  # around the soft rim too
    boxed = torch.zeros_like(alpha)
    boxed[..., max(0, y0 - grow):min(h, y1 + grow), max(0, x0 - grow):min(w, x1 + grow)] = 1.0
    scribble = _scribble(alpha, generator)
    if float(scribble.sum()) == 0:
        scribble = eroded
    return {"eroded": eroded, "dilated": dilated, "blurred": blurred, "box": boxed, "scribble": scribble}
