"""The exact-colour step every engine ends with: an object's alpha and shadow, made to explain the image.

Whatever estimates alpha, shadow and the hidden background (GrabCut and colour lines, a
network, another tool), the foreground colour is solved from the composite rule so that
the layers recompose to the input: lossless by construction.
"""

from __future__ import annotations

import torch

from ..filters import push_pull_fill
from ..matting import solve_foreground

__all__ = ["explain_object", "extend_colours", "UNKNOWN_BACKGROUND"]

# value of background pixels nothing in the photo tells us about (full-frame masks)
UNKNOWN_BACKGROUND = 0.5


def explain_object(image: torch.Tensor, alpha: torch.Tensor, shadow: torch.Tensor,
                   fill: torch.Tensor | None = None, extend: bool = True):
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
        fill = push_pull_fill(unshadowed, seen) if float(seen.sum()) > 0 else torch.full_like(image, UNKNOWN_BACKGROUND)
    clean = torch.where(seen > 0, unshadowed, fill).clamp(0.0, 1.0)
    fg, alpha = solve_foreground(image, alpha, clean * shadow)
    return (extend_colours(fg, alpha) if extend else fg), alpha, shadow, clean


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
