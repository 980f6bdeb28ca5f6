"""Small image filters on ``[B, C, H, W]`` float tensors, used by the classical engine.

All run in O(1) per pixel in their radius (cumulative sums, separable passes, pyramids),
so they stay fast at any resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "box_filter",
    "guided_filter",
    "guided_upsample",
    "dilate",
    "erode",
    "gaussian_blur",
    "push_pull_fill",
    "resize",
    "luminance",
    "bounding_box",
]


def _box_1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    c = torch.cumsum(x, dim=dim)
    c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim=dim)
    idx = torch.arange(n, device=x.device)
    hi = (idx + r + 1).clamp(max=n)
    lo = (idx - r).clamp(min=0)
    return c.index_select(dim, hi) - c.index_select(dim, lo)


def box_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the ``(2r+1)^2`` window clipped to the image, ``[B,C,H,W]`` -> same shape."""
    if r <= 0:
        return x
    if r <= 16:
        # separable average pooling: exact, float32-accurate, O(r) per pixel
        k = 2 * r + 1
        y = F.avg_pool2d(x, (1, k), stride=1, padding=(0, r), count_include_pad=False)
        return F.avg_pool2d(y, (k, 1), stride=1, padding=(r, 0), count_include_pad=False)
    x64 = x.double()  # cumulative sums of large images lose precision in float32
    ones = torch.ones((1, 1, x.shape[-2], x.shape[-1]), dtype=torch.float64, device=x.device)
    s = _box_1d(_box_1d(x64, r, -1), r, -2)
    n = _box_1d(_box_1d(ones, r, -1), r, -2)
    return (s / n).to(x.dtype)


def _guided_coefficients(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float):
    """Per-pixel linear model ``src ~ a . guide + b`` over ``(2r+1)^2`` windows, box-averaged."""
    mean_i = box_filter(guide, r)
    mean_p = box_filter(src, r)
    mean_ip = box_filter(guide * src, r)
    cov_ip = mean_ip - mean_i * mean_p  # [B,3,H,W]
    # 3x3 covariance of the guide per pixel, as [B,H,W,3,3]
    prod = torch.stack([guide[:, i:i + 1] * guide for i in range(3)], dim=1)  # [B,3,3,H,W]
    b, _, _, h, w = prod.shape
    mean_ii = box_filter(prod.reshape(b, 9, h, w), r).reshape(b, 3, 3, h, w)
    var = mean_ii - mean_i[:, :, None] * mean_i[:, None, :]
    var = var.permute(0, 3, 4, 1, 2) + eps * torch.eye(3, dtype=src.dtype, device=src.device)
    a = torch.linalg.solve(var, cov_ip.permute(0, 2, 3, 1).unsqueeze(-1)).squeeze(-1)  # [B,H,W,3]
    a = a.permute(0, 3, 1, 2)
    bias = mean_p - (a * mean_i).sum(dim=1, keepdim=True)
    return box_filter(a, r), box_filter(bias, r)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """Colour guided filter (He et al. 2010): ``src`` smoothed so its edges follow ``guide``.

    Args:
        guide: ``[B,3,H,W]`` colour guide in [0,1].
        src: ``[B,1,H,W]`` input (e.g. a coarse alpha).
        r: window radius in pixels.
        eps: regulariser; smaller keeps more guide detail.
    """
    a, bias = _guided_coefficients(guide, src, r, eps)
    return (a * guide).sum(dim=1, keepdim=True) + bias


def guided_upsample(src_low: torch.Tensor, guide_low: torch.Tensor, guide: torch.Tensor,
                    r: int = 2, eps: float = 1e-4) -> torch.Tensor:
    """Bring a low-resolution map to full resolution along the full-resolution image's edges
    (fast guided filter): the linear coefficients are fitted at low resolution, upsampled,
    and applied to the full-resolution ``guide`` ``[B,3,H,W]``. Output ``[B,1,H,W]``."""
    a, bias = _guided_coefficients(guide_low, src_low, r, eps)
    size = guide.shape[-2:]
    a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    bias = F.interpolate(bias, size=size, mode="bilinear", align_corners=False)
    return (a * guide).sum(dim=1, keepdim=True) + bias


def dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Grey dilation with a ``(2r+1)^2`` square, separable, ``[B,C,H,W]``."""
    if r <= 0:
        return mask
    k = 2 * r + 1
    x = F.max_pool2d(mask, kernel_size=(1, k), stride=1, padding=(0, r))
    return F.max_pool2d(x, kernel_size=(k, 1), stride=1, padding=(r, 0))


def erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Grey erosion with a ``(2r+1)^2`` square (border counts as unchanged)."""
    return -dilate(-mask, r)


def _gaussian_kernel(sigma: float, dtype, device) -> torch.Tensor:
    radius = max(1, int(3.0 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders; large sigmas go through a pyramid."""
    if sigma <= 0.3:
        return x
    if sigma > 8.0:
        # blur a downscaled copy: same result to within interpolation, much faster
        factor = int(sigma // 4)
        h, w = x.shape[-2:]
        small = F.avg_pool2d(x, factor, ceil_mode=True) if min(h, w) >= factor else x
        if small.shape[-2:] != x.shape[-2:]:
            small = gaussian_blur(small, sigma / factor)
            return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    k = _gaussian_kernel(sigma, x.dtype, x.device)
    pad = k.numel() // 2
    c = x.shape[1]
    h, w = x.shape[-2:]
    mode = "reflect" if min(h, w) > pad else "replicate"
    y = F.pad(x, (pad, pad, 0, 0), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, pad, pad), mode=mode)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize ``[B,C,H,W]`` to ``size = (H, W)``; area averaging when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "bilinear" and size[0] < x.shape[-2] and size[1] < x.shape[-1]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False if mode != "nearest" else None)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luma of ``[B,3,H,W]`` -> ``[B,1,H,W]``."""
    w = torch.tensor([0.2126, 0.7152, 0.0722], dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * w).sum(dim=1, keepdim=True)


def push_pull_fill(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill unknown pixels by pyramid push-pull interpolation (smooth membrane fill).

    Args:
        image: ``[B,C,H,W]`` values; only pixels with weight > 0 are used.
        known: ``[B,1,H,W]`` weight in [0,1], 1 = known, 0 = to fill.

    Returns:
        ``[B,C,H,W]``: known pixels blended with a smooth interpolation of their
        neighbourhood, ``known * image + (1 - known) * fill``. Where nothing at all is
        known the result is 0.
    """
    w = known.clamp(0.0, 1.0)
    levels = []
    val, wt = image * w, w
    while min(val.shape[-2:]) > 1:
        levels.append((val, wt))
        h, wd = val.shape[-2:]
        # sums of 2x2 blocks (ceil so odd sizes keep their last row/column)
        val = F.avg_pool2d(val, 2, ceil_mode=True) * 4
        wt = F.avg_pool2d(wt, 2, ceil_mode=True) * 4
        # normalise to a mean and cap the weight: a coarse cell is "known" once it has any data
        mean = val / wt.clamp_min(1e-8)
        wt = wt.clamp(max=1.0)
        val = mean * wt
    coarse = val / wt.clamp_min(1e-8)
    for val, wt in reversed(levels):
        up = F.interpolate(coarse, size=val.shape[-2:], mode="bilinear", align_corners=False)
        mean = val / wt.clamp_min(1e-8)
        coarse = wt * mean + (1.0 - wt) * up
    return coarse


def bounding_box(mask: torch.Tensor, threshold: float = 0.5) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)``, end exclusive, of pixels above ``threshold`` in any batch element
    or channel of ``[B,C,H,W]``; ``None`` when there are none."""
    hit = mask.amax(dim=(0, 1)) > threshold
    rows = torch.nonzero(hit.any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(hit.any(dim=0)).flatten()
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
