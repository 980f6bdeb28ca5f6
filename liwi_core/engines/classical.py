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

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from ..filters import bounding_box, push_pull_fill
from ..layers import Layer
from ..matting import estimate_alpha, refine_mask, solve_foreground, trimap_from_mask
from ..shadow import estimate_shadow

__all__ = ["ClassicalSettings", "peel_objects", "explain_object"]

# value of background pixels nothing in the photo tells us about (full-frame masks)
UNKNOWN_BACKGROUND = 0.5


@dataclass
class ClassicalSettings:
    """Settings of the classical engine (all written to ``layers.json``).

    Attributes:
        refine: refine rough masks with GrabCut before matting; turn off for precise masks.
        edge_radius: half-width in pixels of the soft-edge band around each object;
            0 = automatic (about 2% of the object's size).
        shadow_reach: how far from an object its shadow is looked for, as a fraction of
            the object's larger side; 0 = no shadow layers.
        shadow_threshold: darkening weaker than this is texture, not shadow.
        shadow_channels: 1 = grey shadow maps, 3 = coloured.
    """

    refine: bool = True
    edge_radius: int = 0
    shadow_reach: float = 0.5
    shadow_threshold: float = 0.06
    shadow_channels: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def _auto_band(seg: torch.Tensor, scale_hint: float) -> int:
    area = float((seg > 0.5).sum())
    return max(3, round(0.02 * math.sqrt(area)), math.ceil(2.0 * scale_hint))


def explain_object(image: torch.Tensor, alpha: torch.Tensor, shadow: torch.Tensor,
                   fill: torch.Tensor | None = None):
    """Turn an object's estimated alpha and shadow into layers that explain ``image`` exactly.

    The background under the shadow is the image with the shadow divided out (a shadow map
    never darker than the pixel keeps it within [0, 1]); under the object it is ``fill``
    (``[1,3,H,W]``, e.g. a learned completion) or push-pull inpainting; the foreground is
    then solved so that ``image == alpha * fg + (1 - alpha) * clean * shadow``.

    Returns ``(fg, alpha, shadow, clean)``.
    """
    floor = image if shadow.shape[1] == 3 else image.amax(dim=1, keepdim=True)
    shadow = torch.maximum(shadow, floor).clamp(max=1.0)
    seen = (alpha <= 0).float()
    unshadowed = image / shadow.clamp_min(1e-6)
    if fill is None:
        fill = push_pull_fill(unshadowed, seen) if float(seen.sum()) > 0 else torch.full_like(image, UNKNOWN_BACKGROUND)
    clean = torch.where(seen > 0, unshadowed, fill).clamp(0.0, 1.0)
    fg, alpha = solve_foreground(image, alpha, clean * shadow)
    return fg, alpha, shadow, clean


def _peel_one(image: torch.Tensor, mask: torch.Tensor, settings: ClassicalSettings):
    """Remove one object from ``image`` ``[1,3,H,W]``.

    Returns ``(fg, alpha, shadow, below_clean)`` on the same canvas, where
    ``image == alpha * fg + (1 - alpha) * below_clean * shadow``.
    """
    h, w = image.shape[-2:]
    y0, y1, x0, x1 = bounding_box(mask)
    size = max(y1 - y0, x1 - x0)
    reach = round(settings.shadow_reach * size)
    pad = reach + max(8, size // 8)
    ry0, ry1, rx0, rx1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
    roi = (slice(None), slice(None), slice(ry0, ry1), slice(rx0, rx1))
    img, rough = image[roi], mask[roi]

    seg = refine_mask(img, rough) if settings.refine else (rough > 0.5).float()
    if float((seg > 0.5).sum()) == 0:
        seg = (rough > 0.5).float()
    upscale = max(img.shape[-2:]) / 640.0 if settings.refine else 1.0
    band = settings.edge_radius or _auto_band(seg, upscale)
    trimap = trimap_from_mask(seg, band)
    alpha = estimate_alpha(img, trimap, seg)

    shadow = estimate_shadow(img, alpha, reach, settings.shadow_threshold, settings.shadow_channels)
    fg, alpha, shadow, clean = explain_object(img, alpha, shadow, fill=None)

    def paste(part: torch.Tensor, fill: float | torch.Tensor) -> torch.Tensor:
        if isinstance(fill, torch.Tensor):
            out = fill.clone()
        else:
            out = torch.full((1, part.shape[1], h, w), fill, dtype=part.dtype, device=part.device)
        out[roi] = part
        return out

    return paste(fg, 0.0), paste(alpha, 0.0), paste(shadow, 1.0), paste(clean, image)


def peel_objects(image: torch.Tensor, masks: list[torch.Tensor], names: list[str],
                 prompt_indices: list[int], settings: ClassicalSettings,
                 step: Callable[[], None] | None = None):
    """Decompose one RGB image ``[1,3,H,W]`` given masks ordered front to back.

    Returns ``(background [1,3,H,W], layers back to front, hole [1,1,H,W])``.
    """
    current = image
    hole = torch.zeros_like(image[:, :1])
    peeled: list[Layer] = []
    for mask, name, index in zip(masks, names, prompt_indices):
        if bounding_box(mask) is None:
            rgba = torch.zeros((1, 4) + tuple(image.shape[-2:]), dtype=image.dtype)
            shadow = torch.ones((1, settings.shadow_channels) + tuple(image.shape[-2:]), dtype=image.dtype)
        else:
            fg, alpha, shadow, current = _peel_one(current, mask, settings)
            rgba = torch.cat([fg, alpha], dim=1)
            hole = torch.maximum(hole, (alpha > 0).float())
        peeled.append(Layer(rgba=rgba, shadow=shadow, name=name, prompt_index=index))
        if step is not None:
            step()
    return current, peeled[::-1], hole
