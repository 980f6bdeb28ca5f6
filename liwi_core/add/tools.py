"""ADD's tools: small, swappable functions an agent calls to make a layered sample.

All tensors are ``[1,C,H,W]`` float in [0,1]. Randomness comes only from the
``torch.Generator`` passed in, so a sample is a function of its seed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..compositing import premultiply, unpremultiply
from ..decompose import decompose
from ..engines.classical import ClassicalSettings
from ..errors import LiWiError
from ..filters import bounding_box, dilate, erode, gaussian_blur, resize
from ..shadow import synthesize_cast_shadow

__all__ = ["extract_foreground", "clean_background", "harmonize", "place_objects", "cast_shadow",
           "degrade_prompts"]


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def extract_foreground(image: torch.Tensor, mask: torch.Tensor, refine: bool = True) -> torch.Tensor:
    """RGBA cut-out ``[1,4,h,w]`` of the masked object, cropped to its alpha (+2 px).

    Uses the classical engine (matting + exact colours, no shadow) so edges stay soft.
    """
    if bounding_box(mask) is None:
        raise LiWiError("cannot cut out an object from an empty mask")
    stack = decompose(image[:, :3], mask, ClassicalSettings(refine=refine, shadow_reach=0.0))
    rgba = stack.layers[0].rgba
    box = bounding_box(rgba[:, 3:4], 0.01) or bounding_box(mask)
    y0, y1, x0, x1 = box
    h, w = rgba.shape[-2:]
    return rgba[..., max(0, y0 - 2):min(h, y1 + 2), max(0, x0 - 2):min(w, x1 + 2)].contiguous()


def clean_background(image: torch.Tensor, masks: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove the masked objects and their shadows; ``masks`` None = the photo is already clean.

    Returns ``(background [1,3,H,W], hole [1,1,H,W])`` (hole: 1 where it was inpainted).
    """
    image = image[:, :3]
    if masks is None or bounding_box(masks) is None:
        return image, torch.zeros_like(image[:, :1])
    stack = decompose(image, masks)
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

    Per channel of an opponent colour space, the object's mean and spread are blended
    toward the background's around ``box`` (the placement, grown by half its size) with
    ``strength`` (0 = unchanged, 1 = full transfer). Alpha is untouched.
    """
    alpha = rgba[:, 3:4]
    weight = (alpha > 0.5).float()
    if float(weight.sum()) < 4:
        return rgba
    y0, y1, x0, x1 = box
    h, w = background.shape[-2:]
    gy, gx = (y1 - y0) // 2, (x1 - x0) // 2
    region = background[..., max(0, y0 - gy):min(h, y1 + gy), max(0, x0 - gx):min(w, x1 + gx)]
    obj = _opponent(rgba[:, :3])
    ref = _opponent(region).flatten(2)
    n = weight.sum()
    mean_o = (obj * weight).sum(dim=(2, 3), keepdim=True) / n
    std_o = (((obj - mean_o) ** 2 * weight).sum(dim=(2, 3), keepdim=True) / n).sqrt()
    mean_r = ref.mean(dim=2)[..., None, None]
    std_r = ref.std(dim=2)[..., None, None]
    target_mean = mean_o + strength * (mean_r - mean_o)
    target_std = std_o * (1 - strength) + strength * torch.sqrt(std_o * std_r.clamp_min(1e-4))
    moved = (obj - mean_o) * (target_std / std_o.clamp_min(1e-4)) + target_mean
    return torch.cat([_from_opponent(moved).clamp(0, 1), alpha], dim=1)


def _resize_rgba(rgba: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
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
            canvas[..., box[0]:box[1], box[2]:box[3]] = _resize_rgba(cut, (oh, ow))
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
    """A plausible cast shadow for an object standing on the ground, and its parameters.

    Light mostly from the front or the side: the shadow falls behind or sideways
    (``angle`` 20-160 degrees), ``length`` 0.2-1.0 of the object's height, softness 2-10%,
    opacity 0.35-0.75, contact darkness 0.3-0.7. ``overrides`` fix any of them.
    """
    params = {
        "angle": _uniform(generator, 20.0, 160.0),
        "length": _uniform(generator, 0.2, 1.0),
        "softness": _uniform(generator, 0.02, 0.1),
        "opacity": _uniform(generator, 0.35, 0.75),
        "contact": _uniform(generator, 0.3, 0.7),
    }
    params.update(overrides)
    return synthesize_cast_shadow(alpha, **params), params


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

    ``eroded`` / ``dilated``: the object shrunk / grown by 2-6% of its size; ``blurred``:
    a soft mask (Gaussian, sigma 2-6%); ``box``: its bounding box grown by 2-6%;
    ``scribble``: a few thick strokes inside it. Binary except ``blurred``; never empty
    for a non-empty alpha (an erosion that would vanish falls back to the object).
    """
    binary = (alpha > 0.5).float()
    box = bounding_box(binary)
    if box is None:
        return {k: torch.zeros_like(alpha) for k in ("eroded", "dilated", "blurred", "box", "scribble")}
    y0, y1, x0, x1 = box
    size = max(y1 - y0, x1 - x0)
    r = lambda lo, hi: max(1, round(_uniform(generator, lo, hi) * size))  # noqa: E731
    eroded = erode(binary, r(0.02, 0.06))
    if float(eroded.sum()) == 0:
        eroded = binary
    dilated = dilate(binary, r(0.02, 0.06))
    blurred = gaussian_blur(binary, float(r(0.02, 0.06))).clamp(0, 1)
    grow = r(0.02, 0.06)
    h, w = alpha.shape[-2:]
    boxed = torch.zeros_like(alpha)
    boxed[..., max(0, y0 - grow):min(h, y1 + grow), max(0, x0 - grow):min(w, x1 + grow)] = 1.0
    scribble = _scribble(alpha, generator)
    if float(scribble.sum()) == 0:
        scribble = eroded
    return {"eroded": eroded, "dilated": dilated, "blurred": blurred, "box": boxed, "scribble": scribble}
