"""The exact-colour step every engine ends with: an object's alpha and shadow, made to explain the image.

Whatever estimates alpha, shadow and the hidden background (GrabCut and colour lines, a
network, another tool), the foreground colour is solved from the composite rule so that
the layers recompose to the input: lossless by construction.
"""

from __future__ import annotations

import torch

from ..filters import PixelSet, bounding_box, erode, membrane_fill, push_pull_fill
from ..matting import MIN_ALPHA, is_box, offset_mask, solve_foreground

__all__ = ["BACKGROUND_SPREAD", "HIDDEN_FRONT", "SOFT_EDGE_ALPHA", "UNKNOWN_BACKGROUND", "explain_object", "extend_colours",
           "hidden_part", "mask_looseness", "soft_edge_background"]

# value of background pixels nothing in the photo tells us about (full-frame masks)
UNKNOWN_BACKGROUND = 0.5

#: the alpha from which a solved colour is the object's own; the soft edge's colour prior is
#: carried from there (:func:`soft_edge_background`)
SOFT_EDGE_ALPHA = 0.75
#: the soft edge's background prior spread over its colour prior's (:func:`soft_edge_background`;
#: chosen on the photo tuning scenes: 1 -> fg L1 0.0401 / bg 0.1011, 0.5 -> 0.0403 / 0.1006, 0.25 -> 0.0412 / 0.1006)
BACKGROUND_SPREAD = 0.5
#: an object's part counts as hidden where the objects in front of it cover more than this
#: (:func:`hidden_part`)
HIDDEN_FRONT = 0.5


def explain_object(image: torch.Tensor, alpha: torch.Tensor, shadow: torch.Tensor,
                   fill: torch.Tensor | None = None, extend: bool = True, split_edges: bool = True):
    """Turn an object's estimated alpha and shadow into layers that explain ``image`` exactly.

    The background under the shadow is the image with the shadow divided out (a shadow map
    never darker than the pixel, except where the object is opaque, keeps it within [0, 1]); under the object it is ``fill``
    (``[1,3,H,W]``, e.g. a learned completion) or push-pull inpainting; the foreground is
    then solved so that ``image == alpha * fg + (1 - alpha) * clean * shadow``.

    Args:
        image: ``[1,3,H,W]`` in [0,1], what is left of the photo.
        alpha: ``[1,1,H,W]`` estimated alpha; raised where the colour would leave [0,1].
        shadow: ``[1,1|3,H,W]`` estimated shadow map (1 = none).
        fill: ``[1,3,H,W]`` background under the object, or None for push-pull inpainting.
        extend: carry the colours outward (:func:`extend_colours`); False leaves ``fg`` 0
            where alpha is 0, for a caller that solves the colours again anyway.
        split_edges: under the soft edge, solve the background with the colour
            (:func:`soft_edge_background`); False solves the colour alone against the
            inpainted background, whose error it then carries.

    Returns:
        ``(fg, alpha, shadow, clean)``; ``fg`` is defined everywhere (:func:`extend_colours`).
    """
    floor = image if shadow.shape[1] == 3 else image.amax(dim=1, keepdim=True)
    # no floor where the object is opaque: nothing below shows there, and the floor would print
    # the object's bright parts into the exported shadow layer
    shadow = torch.where(alpha < 1, torch.maximum(shadow, floor), shadow).clamp(max=1.0)
    seen = (alpha <= 0).float()
    unshadowed = image / shadow.clamp_min(1e-6)
    if fill is None:
        fill = membrane_fill(unshadowed, seen) if float(seen.sum()) > 0 else torch.full_like(image, UNKNOWN_BACKGROUND)
    clean = torch.where(seen > 0, unshadowed, fill).clamp(0.0, 1.0)
    estimate = alpha
    fg, alpha = _solve_where_estimated(image, estimate, clean * shadow)
    if split_edges:
        split = soft_edge_background(image, fg, estimate, shadow, clean)
        if split is not None:
            # the first solve raised alpha wherever no colour explained the pixel over the
            # inpainted guess; over the solved background most of that is unneeded, so the
            # colours are solved again from the estimate, raising only what still is. The solve
            # is per pixel and the background moved only under the soft edge: solved there alone
            moved = PixelSet((split != clean).any(dim=1, keepdim=True))
            clean = split
            fg_moved, alpha_moved = solve_foreground(moved.take(image), moved.take(estimate),
                                                     moved.take(clean) * moved.take(shadow))
            fg, alpha = moved.put(fg, fg_moved), moved.put(alpha, alpha_moved)
    return (extend_colours(fg, alpha) if extend else fg), alpha, shadow, clean


def _solve_where_estimated(image: torch.Tensor, estimate: torch.Tensor, below: torch.Tensor):
    """:func:`~liwi_core.matting.solve_foreground` on the box of the pixels where ``estimate`` > 0.

    Beyond it every pixel is seen: ``below`` is the image with the shadow divided out and
    multiplied back (the shadow floored at the pixel, so nothing is clamped), equal to the image
    within float rounding, and the solve leaves alpha and colour 0 there. A region is the object's
    box grown by its shadow reach, so on a large photo most of it lies beyond (a 6000x4000 photo
    with a 2500x2000 object: a fifth of the pixels are solved).
    """
    box = bounding_box(estimate, 0.0)
    if box is None:
        return solve_foreground(image, estimate, below)
    y0, y1, x0, x1 = box
    window = (Ellipsis, slice(y0, y1), slice(x0, x1))
    fg, alpha = torch.zeros_like(image), torch.zeros_like(estimate)
    fg[window], alpha[window] = solve_foreground(image[window], estimate[window], below[window])
    return fg, alpha


def soft_edge_background(image: torch.Tensor, fg: torch.Tensor, alpha: torch.Tensor, shadow: torch.Tensor,
                         clean: torch.Tensor, opaque: float = SOFT_EDGE_ALPHA,
                         spread: float = BACKGROUND_SPREAD) -> torch.Tensor | None:
    """The background under an object's soft edge, solved together with the object's colour there.

    Where alpha is small, ``F = (I - (1 - a) B) / a`` divides the error of the inpainted
    background ``B`` by ``a``: the solved colour of a faint edge pixel is mostly the guess's
    error, a fringe that shows once the object is put on anything else. Both unknowns have a
    prior instead: the object's colour carried from its opaque part (alpha >= ``opaque``,
    push-pull weighted by alpha) and the inpainted background. The composite rule's residual
    ``r = I - a F0 - (1 - a) B0`` is split between them as the most probable pair under
    independent Gaussian priors (Bayesian matting's colour step, alpha known), the background's
    spread ``spread`` times the colour's::

        B = B0 + (1 - a) spread^2 r / (a^2 + (1 - a)^2 spread^2)

    (the colour takes the rest), so a faint pixel moves mostly its background and an almost
    opaque one its colour. The caller solves the colours once more, exactly, against the
    result, which also gives back whatever the clamp to [0, 1] kept: lossless, like
    Photoshop's "decontaminate colours" without its loss.

    Args:
        image: ``[1,3,H,W]`` the pixels to explain.
        fg: ``[1,3,H,W]`` the colour solved against ``clean`` (exact where alpha > 0).
        alpha: ``[1,1,H,W]`` in [0,1], the estimate (not raised by the first solve).
        shadow: ``[1,1|3,H,W]`` shadow map on the background.
        clean: ``[1,3,H,W]`` the background under the object (inpainted) and around it.
        opaque: the alpha from which a pixel's solved colour is the object's own.
        spread: the background prior's standard deviation over the colour prior's.

    Returns:
        ``[1,3,H,W]`` the background with its soft-edge pixels solved, or None when there is
        no soft edge or no opaque part to carry the colour from.
    """
    alpha = torch.where(alpha < MIN_ALPHA, torch.zeros_like(alpha), alpha)  # as the solve takes it
    soft = (alpha > 0) & (alpha < 1)
    source = torch.where(alpha >= opaque, alpha, torch.zeros_like(alpha))
    if not bool(soft.any()) or not bool((source > 0).any()):
        return None
    carried = push_pull_fill(fg, source).clamp(0.0, 1.0)
    # solved on the soft edge's pixels only, the rest is ``clean``: a thin band, whose box is
    # most of a large object's region (a 12 MP crab: 14% of its box's pixels, the solve 1.3 s
    # over the box)
    band = PixelSet(soft)
    alpha, shadow = band.take(alpha), band.take(shadow)
    below = band.take(clean) * shadow
    residual = band.take(image) - alpha * band.take(carried) - (1.0 - alpha) * below
    weight = (1.0 - alpha) * spread ** 2 / (alpha ** 2 + (1.0 - alpha) ** 2 * spread ** 2)
    solved = ((below + weight * residual) / shadow.clamp_min(1e-6)).clamp(0.0, 1.0)
    return band.put(clean, solved)


def extend_colours(fg: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The object's colours carried outward where its alpha is 0 (push-pull from where it is >= 0.5).

    Where alpha is 0 the colour does not reach the composite, so any value keeps the layers
    exact; the solved colour there is black, which shows as a dark fringe once a user grows
    or feathers the alpha in an editor. Matting libraries' foreground estimation extends the
    colours for the same reason. Pixels with alpha > 0 are returned unchanged.

    Args:
        fg: ``[B,3,H,W]`` straight colour in [0,1].
        alpha: ``[B,1,H,W]`` in [0,1].
    """
    # the colours of the mostly opaque part only: a faint edge pixel's solved colour is noisy
    source = torch.where(alpha >= 0.5, alpha, torch.zeros_like(alpha))
    if not bool((source > 0).any()) or bool((alpha > 0).all()):
        return fg
    return torch.where(alpha > 0, fg, push_pull_fill(fg, source).clamp(0.0, 1.0))


def mask_looseness(mask: torch.Tensor, alpha: torch.Tensor, seen: torch.Tensor) -> int:
    """How far (px) a rough mask ``[1,1,H,W]`` lies outside the object's alpha ``[1,1,H,W]`` along its
    outline, measured where ``seen`` (``[1,1,H,W]`` bool) is true: the area the mask holds beyond
    the alpha, less the alpha's area beyond the mask, over the alpha's outline length. About the
    dilation of a uniformly dilated mask, minus the erosion of an eroded one, 0 for an exact one;
    a box gets its corners' share."""
    shape = (mask > 0.5) & seen
    obj = (alpha > 0.5) & seen
    outline = obj & ~(erode(obj.float(), 1) > 0.5)
    excess = float((shape & ~obj).sum()) - float((obj & ~shape).sum())
    return round(excess / max(1.0, float(outline.sum())))


def hidden_part(mask: torch.Tensor, alpha: torch.Tensor, fg: torch.Tensor, current: torch.Tensor,
                front: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An object's layer completed under the objects in front of it, where its mask says it goes on.

    The photo shows only what the objects in front leave visible, so an engine's alpha stops at
    their outline, and moving them away would leave a hole in this object. Where those objects
    cover more than :data:`HIDDEN_FRONT` and the mask, moved inward by its looseness along the
    visible outline (:func:`mask_looseness`, so that a loose brush adds no margin), covers the
    object, the layer becomes opaque. A box says where an object is, not its shape, and completes
    nothing (tuning scenes, alpha IoU of the boxed layers: photos -0.006, subject photos -0.008,
    wallpapers -0.010 with it; every other kind of prompt gains or stays). Its colour there is
    carried from its visible part (``fg``, as :func:`extend_colours` gives it) where the front is
    opaque, since nothing of it shows through; where the front is soft the pixel is partly seen,
    and the colour is ``current`` itself, so the layer still explains it exactly.

    Args:
        mask: ``[1,1,H,W]`` the object's rough mask (1 = object).
        alpha: ``[1,1,H,W]`` its alpha as the engine found it on ``current``.
        fg: ``[1,3,H,W]`` its colour, defined everywhere.
        current: ``[1,3,H,W]`` what the layer explains (the photo with the objects in front removed).
        front: ``[1,1,H,W]`` in [0,1], how much the objects in front cover (their alphas composited).

    Returns:
        ``(fg, alpha)``, the same tensors where nothing is hidden; the stack recomposes exactly
        either way.
    """
    if is_box(mask > 0.5):
        return fg, alpha
    # the object's box (mask and alpha) with a margin for the outline: a large photo is mostly beyond it
    box = bounding_box(torch.maximum((mask > 0.5).float(), (alpha > 0.5).float()))
    if box is None:
        return fg, alpha
    h, w = mask.shape[-2:]
    y0, y1, x0, x1 = max(0, box[0] - 2), min(h, box[1] + 2), max(0, box[2] - 2), min(w, box[3] + 2)
    window = (Ellipsis, slice(y0, y1), slice(x0, x1))
    covered = front[window] > HIDDEN_FRONT
    if not bool(covered.any()):
        return fg, alpha
    part_alpha = alpha[window]
    shift = mask_looseness(mask[window], part_alpha, ~covered)
    hidden = covered & (offset_mask(mask[window], -shift) > 0.5) & (part_alpha < 1)
    if not bool(hidden.any()):
        return fg, alpha
    seen_through = hidden & (front[window] < 1)
    fg, alpha = fg.clone(), alpha.clone()
    fg[window] = torch.where(seen_through, current[window], fg[window])
    alpha[window] = torch.where(hidden, torch.ones_like(part_alpha), part_alpha)
    return fg, alpha
