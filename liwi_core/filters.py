"""Image filters on ``[B, C, H, W]`` float tensors: kornia's where kornia has them, and the few
it lacks or does measurably worse for this use (each says why; ``scripts/benchmark.py
--filters`` measures them side by side).
"""

from __future__ import annotations

import kornia
import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "box_blur",
    "guided_filter",
    "guided_upsample",
    "dilate",
    "erode",
    "gaussian_blur",
    "defocus_rgba",
    "push_pull_fill",
    "membrane_fill",
    "enclosed_holes",
    "resize",
    "aspect_mismatch",
    "ASPECT_TOLERANCE",
    "luminance",
    "colour_edges",
    "lab_edges",
    "bounding_box",
    "PixelSet",
]

#: Rec. 709 luma weights (kornia's default is Rec. 601)
REC709 = (0.2126, 0.7152, 0.0722)


def _border(x: torch.Tensor, pad: int) -> str:
    """Reflected borders, or replicated where the image is too small to reflect ``pad`` pixels."""
    return "reflect" if min(x.shape[-2:]) > pad else "replicate"


def box_blur(x: torch.Tensor, r: int, border: str = "reflect") -> torch.Tensor:
    """Mean over ``(2r+1)^2`` windows of ``[B,C,H,W]``, ``border`` ``reflect`` (the edge pixel not
    repeated) or ``replicate``.

    Kept by hand: on the CPU OpenCV's ``boxFilter`` (running sums, the same cost for any ``r``);
    kornia's ``box_blur`` is a depthwise convolution, which torch runs slowly on a CPU (the
    guided filter's six box blurs took 1.4 of its 2.0 s at 2048x2048). Elsewhere, or with a
    gradient, kornia's (separable).
    """
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.requires_grad or x.ndim != 4:
        return kornia.filters.box_blur(x, 2 * r + 1, border_type=border, separable=True)
    import cv2

    flag = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}[border]
    planes = x.detach().contiguous().numpy().reshape(-1, *x.shape[-2:])
    out = [cv2.boxFilter(plane, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=flag) for plane in planes]
    return torch.from_numpy(np.stack(out).reshape(x.shape))


def guided_filter(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float,
                  where: torch.Tensor | None = None) -> torch.Tensor:
    """Colour guided filter (He et al. 2010): ``src`` smoothed so its edges follow ``guide``.

    Args:
        guide: ``[B,3,H,W]`` colour guide in [0,1].
        src: ``[B,1,H,W]`` input (e.g. a coarse alpha).
        r: window radius in pixels (a ``(2r+1)^2`` window, reflected at the borders).
        eps: regulariser; smaller keeps more guide detail.
        where: ``[1,1,H,W]`` bool, the pixels whose output is wanted (a thin band), or None
            (all). The windows' 3x3 solves, most of the filter's time, are then made only
            for the windows within ``r`` of them (the others' coefficients are 0); elsewhere
            the output is not the filter's. There it is the same bit for bit wherever the
            coefficients beyond are 0 anyway (``src`` flat there, as around a segmentation's
            band); else OpenCV's running box sums may round the last bit differently.

    kornia's ``guided_blur`` computes the same (within 1e-5, tested), with its box blur.
    """
    a, bias = _guided_coefficients(guide, src, r, eps, where)
    return (a * guide).sum(dim=1, keepdim=True) + bias


def _guided_coefficients(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float,
                         where: torch.Tensor | None = None):
    """Per-pixel linear model ``src ~ a . guide + b`` over ``(2r+1)^2`` windows, box-averaged;
    ``where``: as :func:`guided_filter` (the windows that reach it are solved, the others' ``a``
    is 0)."""
    border = _border(guide, r)

    def box(t: torch.Tensor) -> torch.Tensor:
        return box_blur(t, r, border)

    mean_i = box(guide)
    mean_p = box(src)
    cov_ip = box(guide * src) - mean_i * mean_p  # [B,3,H,W]
    # the guide's second moments per window
    prod = torch.stack([guide[:, i:i + 1] * guide for i in range(3)], dim=1)  # [B,3,3,H,W]
    b, _, _, h, w = prod.shape
    mean_ii = box(prod.reshape(b, 9, h, w)).reshape(b, 3, 3, h, w)
    if where is None:
        a = _window_slopes(mean_i, mean_ii, cov_ip, eps)
    else:
        # each window's solve is its own: solved on the windows that reach ``where`` alone (a
        # band's neighbourhood), the box blurs below give the same there
        solved = PixelSet(dilate(where.float(), r) > 0.5)
        slopes = _window_slopes(solved.take(mean_i), solved.take(mean_ii.reshape(b, 9, h, w)).reshape(b, 3, 3, -1),
                                solved.take(cov_ip), eps)
        a = solved.put(torch.zeros_like(mean_i), slopes)
    bias = mean_p - (a * mean_i).sum(dim=1, keepdim=True)
    return box(a), box(bias)


def _window_slopes(mean_i: torch.Tensor, mean_ii: torch.Tensor, cov_ip: torch.Tensor, eps: float) -> torch.Tensor:
    """Each window's ``a`` in ``src ~ a . guide + b``: ``(cov(guide) + eps I)^-1 cov(guide, src)``,
    from the box means ``mean_i`` ``[B,3,*S]``, ``mean_ii`` ``[B,3,3,*S]`` and ``cov_ip`` ``[B,3,*S]``
    (``*S`` the windows: ``H,W`` or a pixel set's ``N``); ``[B,3,*S]``."""
    var = mean_ii - mean_i[:, :, None] * mean_i[:, None, :]
    var = var.movedim((1, 2), (-2, -1)) + eps * torch.eye(3, dtype=var.dtype, device=var.device)
    return torch.linalg.solve(var, cov_ip.movedim(1, -1).unsqueeze(-1)).squeeze(-1).movedim(-1, 1)


def guided_upsample(src_low: torch.Tensor, guide_low: torch.Tensor, guide: torch.Tensor,
                    r: int = 2, eps: float = 1e-4) -> torch.Tensor:
    """Bring a low-resolution map to full resolution along the full-resolution image's edges
    (fast guided filter): the linear coefficients are fitted at low resolution, upsampled,
    and applied to the full-resolution ``guide`` ``[B,3,H,W]``. Output ``[B,1,H,W]``.

    Kept by hand: kornia's ``guided_blur(subsample=...)`` fits on a subsampled copy of a
    full-resolution input, while here only the low-resolution map exists (a network's output).
    """
    a, bias = _guided_coefficients(guide_low, src_low, r, eps)
    size = tuple(guide.shape[-2:])
    a = resize(a, size, mode="bilinear")
    bias = resize(bias, size, mode="bilinear")
    return (a * guide).sum(dim=1, keepdim=True) + bias


def _square_morphology(mask: torch.Tensor, r: int, op) -> torch.Tensor | None:
    """OpenCV's ``dilate`` / ``erode`` with a ``(2r+1)^2`` square on each ``[H,W]`` plane of a CPU
    tensor (van Herk / Gil-Werman: O(1) per pixel whatever ``r``; 20x to 50x faster than two
    max-pools at 3000x2000 and r = 30, the same values bit for bit, its border ignored as the
    pools' padding is). None where OpenCV cannot take it (another device or dtype)."""
    if mask.device.type != "cpu" or mask.dtype not in (torch.float32, torch.float64, torch.uint8) or mask.ndim != 4:
        return None
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))
    planes = mask.detach().contiguous().numpy().reshape(-1, *mask.shape[-2:])
    out = [op(plane, kernel) for plane in planes]
    return torch.from_numpy(np.stack(out).reshape(mask.shape)).requires_grad_(False)


def dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Grey dilation with a ``(2r+1)^2`` square, ``[B,C,H,W]``; pixels beyond the border are
    ignored.

    Kept by hand: on the CPU OpenCV's, which costs the same for any ``r``; elsewhere a square
    is separable into two max-pools, O(r) per pixel, while ``kornia.morphology.dilation`` takes
    every pixel of the kernel (O(r^2)); it measured 10x to 400x slower here
    (``scripts/benchmark.py --filters``).
    """
    if r <= 0:
        return mask
    if not mask.requires_grad:
        import cv2

        fast = _square_morphology(mask, r, cv2.dilate)
        if fast is not None:
            return fast
    k = 2 * r + 1
    x = F.max_pool2d(mask, kernel_size=(1, k), stride=1, padding=(0, r))
    return F.max_pool2d(x, kernel_size=(k, 1), stride=1, padding=(r, 0))


def erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Grey erosion with a ``(2r+1)^2`` square (border counts as unchanged)."""
    if r > 0 and not mask.requires_grad:
        import cv2

        fast = _square_morphology(mask, r, cv2.erode)
        if fast is not None:
            return fast
    return -dilate(-mask, r)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with reflected borders (kornia's separable ``gaussian_blur2d``, a kernel of
    radius ``round(3 sigma)``); sigmas above 8 blur a downscaled copy, which a 6-sigma-wide kernel
    at full size would make many times slower for the same result within interpolation."""
    if sigma <= 0.3:
        return x
    h, w = x.shape[-2:]
    if x.shape[0] > 1:  # a batch as channels: one depthwise convolution, many times faster on a CPU
        return gaussian_blur(x.reshape(1, -1, h, w), sigma).reshape(x.shape)
    if sigma > 8.0:
        factor = int(sigma // 4)
        small = F.avg_pool2d(x, factor, ceil_mode=True) if min(h, w) >= factor else x
        if small.shape[-2:] != x.shape[-2:]:
            return resize(gaussian_blur(small, sigma / factor), (h, w), mode="bilinear")
    radius = max(1, int(3.0 * sigma + 0.5))
    k = 2 * radius + 1
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type=_border(x, radius), separable=True)


def defocus_rgba(rgba: torch.Tensor, sigma: float) -> torch.Tensor:
    """An RGBA layer ``[B,4,H,W]`` (straight colour, alpha last, in [0,1]) out of focus: its
    premultiplied colour and its alpha blurred together by a Gaussian of ``sigma`` px (as a lens
    spreads the light of the object's edge over the ground), the colour divided back out where
    the blurred alpha is above 1e-4 and 0 beyond. Blurring the straight colour alone would
    spread the colour of the transparent surround (often black) into the new soft edge."""
    alpha = rgba[:, 3:4]
    blurred = gaussian_blur(torch.cat([rgba[:, :3] * alpha, alpha], dim=1), sigma)
    soft = blurred[:, 3:4].clamp(0, 1)
    colour = torch.where(soft > 1e-4, blurred[:, :3] / soft.clamp_min(1e-4), torch.zeros_like(blurred[:, :3]))
    return torch.cat([colour.clamp(0, 1), soft], dim=1)


def colour_edges(image: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Colour edge strength ``[B,1,H,W]`` of an RGB image ``[B,3,H,W]`` in [0,1]: the magnitude of
    the CIE Lab gradient (kornia's normalised Sobel after a Gaussian blur of ``sigma``), summed
    over L, a and b in quadrature; in Lab units per pixel (L spans 0..100)."""
    return lab_edges(kornia.color.rgb_to_lab(image.clamp(0, 1)), sigma)


def lab_edges(lab: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """:func:`colour_edges` of an image already in CIE Lab, ``[B,3,H,W]`` -> ``[B,1,H,W]``."""
    grad = kornia.filters.spatial_gradient(gaussian_blur(lab, sigma), mode="sobel", normalized=True)
    return grad.pow(2).sum(dim=(1, 2)).sqrt()[:, None]


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize ``[B,C,H,W]`` to ``size = (H, W)``; area averaging when shrinking both sides."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "bilinear" and size[0] < x.shape[-2] and size[1] < x.shape[-1]:
        mode = "area"
    return kornia.geometry.transform.resize(x, tuple(size), interpolation=mode,
                                            align_corners=False if mode == "bilinear" else None)


#: two sizes whose aspect ratios differ by at most this fraction are the same picture resized
ASPECT_TOLERANCE = 0.01


def aspect_mismatch(size: tuple[int, int], target: tuple[int, int]) -> float:
    """How far the aspect ratio of ``size = (H, W)`` is from ``target``'s, as a fraction
    (0 = the same); above :data:`ASPECT_TOLERANCE` one is not a resized copy of the other."""
    return abs((size[1] / size[0]) / (target[1] / target[0]) - 1.0)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luma of ``[B,3,H,W]`` -> ``[B,1,H,W]``."""
    return kornia.color.rgb_to_grayscale(rgb, rgb_weights=rgb.new_tensor(REC709))


def enclosed_holes(mask: torch.Tensor) -> torch.Tensor:
    """The pixels outside ``mask`` that it encloses: ``[B,1,H,W]`` bool, true where ``mask``
    (``[B,1,H,W]`` bool) is false and no path through such pixels (4-connected) reaches the
    image's border: an arch's opening, the gap between a cup and its handle."""
    import cv2

    planes = mask.detach().cpu().numpy().reshape(-1, *mask.shape[-2:])
    holes = []
    for plane in planes:
        # the outside flooded from a frame of it around the image (OpenCV's flood fill: 12x faster
        # than scipy's binary_fill_holes on a 900-px mask, the same pixels)
        outside = np.pad((~plane).astype(np.uint8), 1, constant_values=1)
        cv2.floodFill(outside, None, (0, 0), 2, flags=4)
        holes.append(outside[1:-1, 1:-1] == 1)
    return torch.from_numpy(np.stack(holes).reshape(mask.shape)).to(mask.device)


def _known_pyramid(image: torch.Tensor, weight: torch.Tensor, smallest: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(image * weight, weight)`` halved until a side is at most ``smallest``: finest first,
    each coarser level holding its cells' weighted sums and their weight capped at 1 (a cell is
    known once anything in it is), the mean ``val / wt`` kept."""
    levels = [(image * weight, weight)]
    while min(levels[-1][0].shape[-2:]) > smallest:
        val, wt = levels[-1]
        # sums of 2x2 blocks (ceil so odd sizes keep their last row/column)
        val = F.avg_pool2d(val, 2, ceil_mode=True) * 4
        wt = F.avg_pool2d(wt, 2, ceil_mode=True) * 4
        capped = wt.clamp(max=1.0)
        levels.append((val * (capped / wt.clamp_min(1e-8)), capped))
    return levels


def push_pull_fill(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill unknown pixels by pyramid push-pull interpolation (smooth membrane fill); kornia has none.

    Args:
        image: ``[B,C,H,W]`` values; only pixels with weight > 0 are used.
        known: ``[B,1,H,W]`` weight in [0,1], 1 = known, 0 = to fill.

    Returns:
        ``[B,C,H,W]``: known pixels blended with a smooth interpolation of their
        neighbourhood, ``known * image + (1 - known) * fill``. Where nothing at all is
        known the result is 0.
    """
    *levels, (val, wt) = _known_pyramid(image, known.clamp(0.0, 1.0), 1)
    coarse = val / wt.clamp_min(1e-8)
    for val, wt in reversed(levels):
        up = F.interpolate(coarse, size=val.shape[-2:], mode="bilinear", align_corners=False)
        # wt * (val / wt) + (1 - wt) * up, without the division: val already holds mean * wt
        # (about 2x faster at 6000x4000, the same within 3e-7)
        coarse = torch.addcmul(val, 1.0 - wt, up)
    return coarse


def membrane_fill(image: torch.Tensor, known: torch.Tensor, iterations: int = 6) -> torch.Tensor:
    """Fill unknown pixels with the membrane (harmonic) interpolant of their boundary: the
    smoothest surface that meets the known pixels around the hole (Laplace's equation inside it).

    :func:`push_pull_fill` averages every known pixel of a coarse cell, so the middle of a large
    hole takes the broad mean of the photo for some way around it, far pixels included; the
    membrane reads only the hole's edge, so each side of the hole carries its own colour into it
    (a hole in a ramp is filled with the ramp). Solved coarse to fine on the hole's box: the push-pull
    fill of the coarsest level, then at each finer level the coarser answer upsampled and
    ``iterations`` Jacobi sweeps (doubling per coarser level, at most 48), which reaches the
    converged fill's error (to about 0.0001 of background L1 on the tuning scenes). Pixels
    outside the box do not enter, so it costs about as much as a push-pull of the whole image.

    Args:
        image: ``[B,C,H,W]`` values; only pixels with weight > 0 are used.
        known: ``[B,1,H,W]`` weight in [0,1], 1 = known, 0 = to fill; a partial weight holds
            its pixel to its value that much.
        iterations: Jacobi sweeps at full resolution.

    Returns:
        ``[B,C,H,W]``: ``known * image + (1 - known) * fill``; 0 where nothing at all is known.
    """
    w = known.clamp(0.0, 1.0)
    box = bounding_box(1.0 - w, 0.0)
    if box is None:
        return image * w
    height, width = image.shape[-2:]
    y0, y1, x0, x1 = box
    # one pixel of the known ring around the hole: its boundary condition
    y0, x0, y1, x1 = max(y0 - 1, 0), max(x0 - 1, 0), min(y1 + 1, height), min(x1 + 1, width)
    if float(w[..., y0:y1, x0:x1].amax()) <= 0:  # the box is the whole image and nothing is known
        return image * w
    levels = _known_pyramid(image[..., y0:y1, x0:x1], w[..., y0:y1, x0:x1], 6)
    fill = None
    for depth in reversed(range(len(levels))):
        val, wt = levels[depth]  # val: the known values times their weight
        if fill is None:
            fill = push_pull_fill(val / wt.clamp_min(1e-8), wt)
        else:
            fill = F.interpolate(fill, size=val.shape[-2:], mode="bilinear", align_corners=False)
        for _ in range(min(48, iterations * 2 ** depth)):
            p = F.pad(fill, (1, 1, 1, 1), mode="replicate")
            neighbours = (p[..., 1:-1, :-2] + p[..., 1:-1, 2:] + p[..., :-2, 1:-1] + p[..., 2:, 1:-1]) * 0.25
            fill = torch.addcmul(val, 1.0 - wt, neighbours)
    out = image * w
    out[..., y0:y1, x0:x1] = fill
    return out


def bounding_box(mask: torch.Tensor, threshold: float = 0.5) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)``, end exclusive, of pixels above ``threshold`` in any batch element
    or channel of ``[B,C,H,W]``; ``None`` when there are none (a mask box, not in kornia)."""
    hit = mask.amax(dim=(0, 1)) > threshold
    rows = torch.nonzero(hit.any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(hit.any(dim=0)).flatten()
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


class PixelSet:
    """The pixels where a ``[1,1,H,W]`` mask is true, for per-pixel work on a thin band of a large
    image (an object's soft edge): :meth:`take` gathers them, :meth:`put` writes values back.
    Per-pixel arithmetic on the gathered values gives exactly what it gives on the whole image."""

    def __init__(self, mask: torch.Tensor):
        if mask.shape[0] != 1 or mask.shape[1] != 1:
            raise ValueError(f"PixelSet: the mask must be [1,1,H,W], got {list(mask.shape)}")
        self.index = mask.flatten(2).nonzero(as_tuple=True)[2]

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """``[1,C,N]``: the set's pixels of ``x`` ``[1,C,H,W]``, in raster order."""
        return x.flatten(2)[..., self.index]

    def put(self, base: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """A copy of ``base`` ``[1,C,H,W]`` with the set's pixels replaced by ``values`` ``[1,C|1,N]``."""
        out = base.clone(memory_format=torch.contiguous_format)
        out.flatten(2)[..., self.index] = values.to(out.dtype)
        return out
