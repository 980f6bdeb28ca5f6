"""Synthetic scenes with known layers, shared by the tests."""

from __future__ import annotations

import torch

from liwi_core.filters import gaussian_blur
from liwi_core.metrics import alpha_soft_iou as soft_iou  # noqa: F401  (re-exported for the tests)
from liwi_core.metrics import recompose_psnr as psnr  # noqa: F401


def scene(h: int = 200, w: int = 260, seed: int = 0):
    """A textured background, a soft-edged disc with a fuzzy rim, and its cast shadow.

    Returns ``(image, background, alpha, shadow, rough_mask)``, all ``[1,C,H,W]``.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    bg = torch.stack([0.6 + 0.2 * xx / w, 0.55 + 0.1 * yy / h, 0.4 + 0.0 * xx])[None]
    bg = (bg + 0.02 * torch.randn(1, 3, h, w, generator=g)).clamp(0, 1)
    cx, cy, rad = 0.45 * w, 0.42 * h, 0.2 * min(h, w)
    r = torch.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    # a soft rim about 5 px wide, like fur or motion blur
    alpha = ((rad - r) / 5.0 + 0.5).clamp(0, 1)[None, None]
    fg = torch.tensor([0.1, 0.2, 0.8]).view(1, 3, 1, 1).expand(1, 3, h, w)
    sr = torch.sqrt(((xx - cx - 0.8 * rad) / (1.1 * rad)) ** 2 + ((yy - cy - 0.9 * rad) / (0.4 * rad)) ** 2)
    shadow = 1 - 0.5 * gaussian_blur(((1 - sr) * 6).clamp(0, 1)[None, None], 2.0)
    image = alpha * fg + (1 - alpha) * bg * shadow
    rough = (r < rad + 6).float()[None, None]
    return image, bg, alpha, shadow, rough


def write_scene_dataset(root, count: int, h: int, w: int, prefix: str = "s"):
    """``count`` synthetic scenes (see :func:`scene`) as a dataset with ground-truth layers and
    ``dilated`` / ``box`` prompt masks; returns ``root``."""
    from liwi_core import Layer, LayerStack
    from liwi_core.dataset import Sample, write_sample
    from liwi_core.filters import dilate

    for seed in range(count):
        _, bg, alpha, shadow, rough = scene(h, w, seed=seed)
        rgba = torch.cat([torch.tensor([0.1, 0.2, 0.8]).view(1, 3, 1, 1).expand(1, 3, h, w), alpha], 1)
        stack = LayerStack(background=bg, layers=[Layer(rgba, shadow, "disc", 0)], hole=(alpha > 0).float())
        prompts = [{"dilated": dilate((alpha > 0.5).float(), 3), "box": rough}]
        write_sample(root, Sample(f"{prefix}{seed}", stack.composite(), stack, prompts, {"seed": seed}))
    return root
