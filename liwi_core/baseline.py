"""The naive baseline every engine is compared with: "cut along the user's mask".

* alpha: the prompt mask itself;
* foreground colour: the image itself (the whole frame, straight alpha);
* background: OpenCV's Telea inpainting (``cv2.inpaint``, ``INPAINT_TELEA``, radius 5) of
  the image under the union of the masks (every pixel a mask touches, optionally grown by
  ``grow`` pixels);
* shadow: none (all ones), so a cast shadow stays baked into the background.

It takes the same arguments as :func:`liwi_core.decompose.decompose` for masks, so the
evaluation runs both the same way.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .decompose import prepare_masks
from .errors import LiWiError
from .filters import bounding_box, dilate
from .layers import Layer, LayerStack

__all__ = ["baseline_decompose", "telea_inpaint"]


def telea_inpaint(image: torch.Tensor, hole: torch.Tensor, radius: int = 5) -> torch.Tensor:
    """Fill ``hole`` in ``image`` with OpenCV's Telea method, at 8-bit precision.

    Args:
        image: ``[1,3,H,W]`` in [0,1].
        hole: ``[1,1,H,W]``, pixels > 0 are filled.
        radius: the inpainting neighbourhood in pixels.

    Returns:
        ``[1,3,H,W]`` float32; equal to ``image`` (quantised to 8 bits) outside the hole.
    """
    rgb8 = (image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    mask8 = (hole[0, 0].cpu().numpy() > 0).astype(np.uint8) * 255
    filled = cv2.inpaint(np.ascontiguousarray(rgb8), mask8, radius, cv2.INPAINT_TELEA)
    return torch.from_numpy(filled.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(image.device)


def _order(masks: torch.Tensor, order: str) -> list[int]:
    """Front-to-back mask indices (same rules as :func:`liwi_core.decompose.decompose`)."""
    indices = list(range(masks.shape[0]))
    if order == "given":
        return indices
    if order == "bottom":
        lowest = [(bounding_box(masks[i:i + 1]) or (0, -1))[1] for i in indices]
        return sorted(indices, key=lambda i: -lowest[i])
    raise LiWiError(f"unknown order '{order}': use one of given, bottom")


def baseline_decompose(image: torch.Tensor, masks: torch.Tensor, settings=None, order: str = "given",
                       names: list[str] | None = None, radius: int = 5, grow: int = 0) -> LayerStack:
    """Naive decomposition of one image (see the module docstring).

    Args:
        image: ``[1,C,H,W]`` or ``[C,H,W]`` in [0,1], C in {1, 3, 4} (grey is treated as RGB,
            an RGBA input's alpha is kept as ``canvas_alpha``).
        masks: ``[N,1,H,W]`` or ``[N,H,W]``, one per object, front to back (``order="given"``).
        settings: ignored (the baseline has none); accepted so it is called like ``decompose``.
        order: ``"given"`` or ``"bottom"``, as in ``decompose``.
        names: layer names per mask index (default ``object_<i>``).
        radius: Telea inpainting radius in pixels.
        grow: pixels the hole is grown beyond the masks.

    Returns:
        A :class:`LayerStack`: layers back to front, ``prompt_index`` = the mask's index,
        ``hole`` = the inpainted region, shadows all ones.
    """
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3, 4):
        raise LiWiError(f"the baseline takes one image [1,C,H,W] with C in 1, 3, 4, got {tuple(image.shape)}")
    image = image.float().clamp(0, 1)
    channels = image.shape[1]
    rgb = image.expand(1, 3, -1, -1) if channels == 1 else image[:, :3]
    masks = prepare_masks(masks, tuple(image.shape[-2:]))
    hole = dilate((masks.amax(dim=0, keepdim=True) > 0).float(), grow)
    background = telea_inpaint(rgb, hole, radius)
    front_to_back = _order(masks, order)
    layers = [Layer(rgba=torch.cat([rgb, masks[i:i + 1]], dim=1), shadow=torch.ones_like(rgb[:, :1]),
                    name=names[i] if names and i < len(names) else f"object_{i}", prompt_index=i)
              for i in reversed(front_to_back)]
    return LayerStack(background=background, layers=layers, hole=hole,
                      canvas_alpha=image[:, 3:4] if channels == 4 else None, channels=channels,
                      meta={"engine": "baseline", "settings": {"radius": radius, "grow": grow}, "order": order})
