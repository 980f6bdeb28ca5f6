"""The naive baseline every engine is compared with.

The prompt mask is the alpha, the image itself is the foreground colour, the background
is OpenCV's Telea inpainting of the image under the (grown) masks, and there is no
shadow. It shows what the evaluation gives for "cut along the user's mask".
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .filters import dilate
from .layers import Layer, LayerStack

__all__ = ["baseline_decompose"]


def baseline_decompose(image: torch.Tensor, masks: torch.Tensor, radius: int = 5) -> LayerStack:
    """``image`` ``[1,3,H,W]``, ``masks`` ``[N,1,H,W]`` front to back -> stack (layers back to front)."""
    image = image[:, :3].float()
    hole = dilate((masks.amax(dim=0, keepdim=True) > 0.5).float(), 2)
    rgb8 = (image[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    filled = cv2.inpaint(rgb8, (hole[0, 0].numpy() * 255).astype(np.uint8), radius, cv2.INPAINT_TELEA)
    background = torch.from_numpy(filled.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    layers = [Layer(rgba=torch.cat([image, masks[i:i + 1].clamp(0, 1)], dim=1),
                    shadow=torch.ones_like(image[:, :1]), name=f"object_{i}", prompt_index=i)
              for i in reversed(range(masks.shape[0]))]
    return LayerStack(background=background, layers=layers, hole=hole, meta={"engine": "baseline", "settings": {}})
