"""Tensor and option conversion between ComfyUI and liwi_core.

ComfyUI IMAGE is ``[B,H,W,C]`` float in [0,1]; MASK is ``[B,H,W]``. liwi_core uses
``[B,C,H,W]``. Masks LiWi outputs mark the object with 1 (like the mask editor and
background-removal packs); ``LoadImage`` / ``JoinImageWithAlpha`` use 1 - alpha.
"""

from __future__ import annotations

import torch


def image_to_bchw(image: torch.Tensor) -> torch.Tensor:
    if image.dim() == 3:
        image = image[None]
    return image.movedim(-1, 1).float().cpu()


def bchw_to_image(t: torch.Tensor) -> torch.Tensor:
    return t.movedim(1, -1).contiguous()


def mask_to_b1hw(mask: torch.Tensor) -> torch.Tensor:
    if mask.dim() == 2:
        mask = mask[None]
    return mask[:, None].float().cpu()


def b1hw_to_mask(t: torch.Tensor) -> torch.Tensor:
    return t[:, 0].contiguous()


def comfy_progress():
    """A ``progress(done, total)`` callback driving ComfyUI's progress bar and interrupts."""
    import comfy.model_management
    import comfy.utils

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar = bar or comfy.utils.ProgressBar(total)
        bar.update_absolute(done, total)

    return progress
