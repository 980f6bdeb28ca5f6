"""The naive baseline every engine is compared with: "cut along the user's mask".

* alpha: the prompt mask itself;
* foreground colour: the image itself (the whole frame, straight alpha);
* background: OpenCV's Telea inpainting (``cv2.inpaint``, ``INPAINT_TELEA``, radius 5) of
  the image under the union of the masks (every pixel a mask touches, optionally grown by
  ``grow`` pixels);
* shadow: none (all ones), so a cast shadow stays baked into the background.

``create("baseline", radius=5, grow=0)``; it runs through :func:`liwi_core.decompose.decompose`
like every engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..filters import dilate
from ..layers import Layer
from ..options import check_settings, option
from .base import Engine, Peeled

__all__ = ["BaselineEngine", "BaselineSettings", "telea_inpaint"]


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


@dataclass
class BaselineSettings:
    radius: int = option(5, "Telea inpainting radius in pixels.", minimum=1, maximum=64, step=1)
    grow: int = option(0, "Pixels the hole is grown beyond the masks.", minimum=0, maximum=256, step=1)


class BaselineEngine(Engine):
    """The naive baseline (see the module docstring); layers back to front, ``hole`` = the
    inpainted region, shadows all ones."""

    name = "baseline"
    needs_masks = True

    def __init__(self, settings: BaselineSettings | None = None, **options):
        self.settings = check_settings(settings if settings is not None else BaselineSettings(**options))

    def peel(self, image, masks, names, prompt_indices, step=None, find=None) -> Peeled:
        union = torch.cat(masks).amax(dim=0, keepdim=True)
        hole = dilate((union > 0).float(), self.settings.grow)
        background = telea_inpaint(image, hole, self.settings.radius)
        layers = [Layer(rgba=torch.cat([image, mask], dim=1), shadow=torch.ones_like(image[:, :1]), name=name,
                        prompt_index=index) for mask, name, index in zip(masks, names, prompt_indices)]
        if step is not None:
            for _ in masks:
                step()
        return Peeled(background, layers[::-1], hole)
