"""A synthetic scene with known layers, for tests, benchmarks and demos: the answer is exact."""

from __future__ import annotations

import torch

from .filters import gaussian_blur

__all__ = ["scene"]


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
