"""Put a generative fill (any inpainting model's output) into a stack's hole, keeping it exact.

Decompose invents the background under the objects by push-pull inpainting (a smooth blur)
and marks those pixels as the stack's ``hole``. An inpainting model given that background
and hole makes a better guess; :func:`fill_background` puts that guess into the hole:

1. Fit the fill to the canvas. A fill the size of the canvas cropped by less than 8 pixels
   per side is taken as centred on it (``VAEEncodeForInpaint`` crops to a multiple of 8
   about the centre); the few uncovered pixels keep the old background. Any other size is
   resized, when its aspect ratio is the canvas's within 1%.
2. Colour match (optional): per image and channel, the gain and offset that give the fill's
   pixels in a ring just outside the hole the mean and standard deviation of the known
   background there. The model's colour drift (VAE round trip, another exposure) is the
   same in the ring and in the hole, so the seam does not show.
3. Feather: inside the hole, a weight that rises from the hole's edge over ``feather``
   pixels blends the fill with the old background. Outside the hole the background is
   left byte-identical.
4. Keep the stack exact. Where a layer covers the hole with alpha 1 the background does not
   show, so nothing changes. Where its alpha is below 1 the background shows through, so
   each layer's colour is solved again (:func:`liwi_core.matting.solve_foreground`, the
   exact-colour step of every engine) against what now lies below it: layers back to front,
   layer ``k`` is made to reproduce the old partial composite ``C_k`` over the new
   ``C'_(k-1) * s_k``. Then ``C'_k = C_k`` wherever layer ``k`` has alpha > 0, a pixel no
   layer ``k`` covers passes the change up to the next layer that does, and the last
   partial composite, the image, is the old one. Every change stays in the back-most
   layer that covers a changed pixel; layers in front see the same pixels below them (to
   float rounding) and keep their colours. Alpha is never lowered; it is raised, as in the
   engines, only where no colour in [0, 1] explains the pixel over the new background
   (a faint dark veil over a fill much brighter than the old one).

Pixels of the hole no layer covers (a stack whose layers were moved after Decompose) show
the new fill: there the composite changes, which is the point of filling.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .compositing import apply_shadow, over
from .errors import LiWiError
from .filters import ASPECT_TOLERANCE, aspect_mismatch, dilate, erode, resize
from .layers import LayerStack, coverage
from .matting import solve_foreground

__all__ = ["colour_match_fill", "feather_weight", "fill_background", "fit_fill"]

#: a fill smaller than the canvas by less than this per side is a centred crop (VAE latents are 1/8)
CROP_SLACK = 8
#: the colour-match gain (std ratio) stays within [1/MAX_GAIN, MAX_GAIN]
MAX_GAIN = 2.0
#: width in pixels of the ring outside the hole where colours are compared (at least)
RING_WIDTH = 8


def fit_fill(fill: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The fill on a canvas of ``size``, and where it has pixels.

    Args:
        fill: ``[B,C,h,w]`` in [0,1]; C = 3 (RGB), 4 (RGBA: alpha ignored) or 1 (grey).
        size: ``(H, W)`` of the canvas.

    Returns:
        ``(fill [B,3,H,W], available [1,1,H,W])``: ``available`` is 1 where the fill has a
        pixel (all ones unless the fill is a centred crop smaller than the canvas).

    Raises:
        LiWiError: a fill whose aspect ratio differs from the canvas's by more than 1% (and is
        no centred crop of it).
    """
    if fill.dim() != 4 or fill.shape[1] not in (1, 3, 4):
        raise LiWiError(f"the fill must be an RGB image [B,3,H,W], got shape {tuple(fill.shape)}")
    rgb = fill[:, :3] if fill.shape[1] >= 3 else fill.expand(-1, 3, -1, -1)
    h, w = int(fill.shape[-2]), int(fill.shape[-1])
    big_h, big_w = size
    available = rgb.new_ones((1, 1, big_h, big_w))
    if (h, w) == (big_h, big_w):
        return rgb, available
    if 0 <= big_h - h < CROP_SLACK and 0 <= big_w - w < CROP_SLACK:
        top, left = (big_h - h) // 2, (big_w - w) // 2
        placed = rgb.new_zeros((rgb.shape[0], 3, big_h, big_w))
        placed[..., top:top + h, left:left + w] = rgb
        available = torch.zeros_like(available)
        available[..., top:top + h, left:left + w] = 1.0
        return placed, available
    if aspect_mismatch((h, w), (big_h, big_w)) > ASPECT_TOLERANCE:
        raise LiWiError(f"the fill is {w}x{h} but the layers are {big_w}x{big_h}: give a fill with the same "
                        f"aspect ratio (within 1%), e.g. the inpainted Decompose background")
    return resize(rgb, (big_h, big_w)).clamp(0.0, 1.0), available


def _ring(hole: torch.Tensor, available: torch.Tensor, width: int) -> torch.Tensor:
    """``[B,1,H,W]``: known background pixels within ``width`` of the hole where the fill has pixels."""
    return dilate(hole, width) * (1.0 - hole) * available


def colour_match_fill(fill: torch.Tensor, background: torch.Tensor, hole: torch.Tensor,
                      available: torch.Tensor, ring_width: int = RING_WIDTH) -> torch.Tensor:
    """The fill with a per-image, per-channel gain and offset that match it to the background
    in a ring just outside the hole.

    Args:
        fill: ``[B,3,H,W]`` in [0,1], on the canvas (:func:`fit_fill`).
        background: ``[B,3,H,W]`` the stack's background (known outside the hole).
        hole: ``[B,1,H,W]`` binary, 1 = invented background.
        available: ``[1|B,1,H,W]`` 1 where the fill has pixels.
        ring_width: width of the ring in pixels.

    Returns:
        ``[B,3,H,W]`` in [0,1]: ``(fill - m_f) * g + m_b`` with ``m_f``, ``m_b`` the means of fill
        and background in the ring and ``g`` the ratio of their standard deviations, kept
        within [1/2, 2] (1 where the fill is flat there). An image whose ring is empty (a hole
        that is the whole frame) falls back to all known pixels; with none, it is unchanged.
    """
    weight = _ring(hole, available, ring_width)
    few = weight.sum(dim=(1, 2, 3)) < 16
    if bool(few.any()):
        weight = torch.where(few.view(-1, 1, 1, 1), (1.0 - hole) * available, weight)
    total = weight.sum(dim=(2, 3), keepdim=True)
    usable = total > 0
    total = total.clamp_min(1.0)
    mean_f = (fill * weight).sum(dim=(2, 3), keepdim=True) / total
    mean_b = (background * weight).sum(dim=(2, 3), keepdim=True) / total
    std_f = (((fill - mean_f) ** 2 * weight).sum(dim=(2, 3), keepdim=True) / total).sqrt()
    std_b = (((background - mean_b) ** 2 * weight).sum(dim=(2, 3), keepdim=True) / total).sqrt()
    gain = torch.where(std_f > 1e-4, std_b / std_f.clamp_min(1e-4), torch.ones_like(std_f))
    gain = gain.clamp(1.0 / MAX_GAIN, MAX_GAIN)
    matched = ((fill - mean_f) * gain + mean_b).clamp(0.0, 1.0)
    return torch.where(usable, matched, fill)


def feather_weight(hole: torch.Tensor, feather: int) -> torch.Tensor:
    """``[B,1,H,W]`` weight of the fill: 0 outside the binary ``hole``, inside it
    ``min(d, feather + 1) / (feather + 1)`` with ``d`` the chessboard distance in pixels to
    the nearest pixel outside (1 next to the edge); all of the hole for ``feather = 0``.
    The image border does not count as outside."""
    feather = max(int(feather), 0)
    total = hole.clone()
    current = hole
    for _ in range(feather):
        current = erode(current, 1)
        total = total + current
    return total / (feather + 1)


def _resolve_layers(stack: LayerStack, background: torch.Tensor) -> list:
    """The layers with colours solved again over a new background so that every partial
    composite a layer covers (alpha > 0), hence the image, stays what it was."""
    old_below, new_below = stack.background, background
    layers = []
    for layer in stack.layers:
        target = over(layer.rgba, old_below, layer.shadow)  # C_k, the old partial composite
        alpha = layer.alpha
        seen_old = apply_shadow(old_below, layer.shadow)
        seen_new = apply_shadow(new_below, layer.shadow)
        redo = (alpha > 0) & (seen_new != seen_old).any(dim=1, keepdim=True)
        if bool(redo.any()):
            fg, solved = solve_foreground(target, alpha, seen_new, min_alpha=0.0)
            rgba = torch.cat([torch.where(redo, fg, layer.rgba[:, :3]), torch.where(redo, solved, alpha)], dim=1)
            layer = replace(layer, rgba=rgba)
        layers.append(layer)
        new_below = over(layer.rgba, new_below, layer.shadow)
        old_below = target
    return layers


def fill_background(stack: LayerStack, fill: torch.Tensor, feather: int = 6,
                    colour_match: bool = True) -> LayerStack:
    """The stack with ``fill`` used as its background inside the hole, still recomposing to the
    same image (see the module docstring for each step).

    Args:
        stack: the layer stack (background ``[B,3,H,W]``, ``hole`` ``[B,1,H,W]``; without a
            hole, the pixels any layer covers).
        fill: ``[B|1,C,h,w]`` in [0,1], C = 3, 4 or 1: an inpainting of the stack's background
            and hole. The canvas size, a centred crop of it by less than 8 pixels per side,
            or any size of the same aspect ratio (within 1%). A batch of 1 fills every image.
        feather: pixels over which the fill fades in from the hole's edge (0 = hard edge).
        colour_match: match the fill's colours to the known background around the hole.

    Returns:
        A new :class:`LayerStack`: background changed only where ``hole > 0.5``, layers whose
        alpha is below 1 over changed pixels solved again (alpha never lower), same hole,
        ``meta["fill"]`` recording the options. The input stack is left as it was.

    Raises:
        LiWiError: a fill of the wrong size, batch, or with NaN / Inf values.
    """
    if feather < 0:
        raise LiWiError(f"feather must be 0 or more pixels, got {feather}")
    background = stack.background
    fill = fill.to(device=background.device, dtype=background.dtype)
    if fill.dim() == 3:
        fill = fill[None]
    if fill.dim() == 4 and fill.shape[0] not in (1, stack.batch):
        raise LiWiError(f"the fill has {fill.shape[0]} images but the layers have {stack.batch}: "
                        f"give one fill per image, or one for all")
    if not bool(torch.isfinite(fill).all()):
        raise LiWiError("the fill has NaN or Inf values")
    fitted, available = fit_fill(fill.clamp(0.0, 1.0), stack.size)
    fitted = fitted.expand(stack.batch, -1, -1, -1)

    hole = stack.hole if stack.hole is not None else coverage(stack.layers)
    if hole is None:
        hole = torch.zeros_like(background[:, :1])
    hole = (hole.to(background) > 0.5).to(background.dtype)
    meta = {**stack.meta, "fill": {"feather": int(feather), "colour_match": bool(colour_match)}}
    if not bool(hole.any()):
        return replace(stack, meta=meta)

    if colour_match:
        fitted = colour_match_fill(fitted, background, hole, available, max(RING_WIDTH, int(feather)))
    weight = feather_weight(hole * available, feather)
    blended = weight * fitted + (1.0 - weight) * background
    new_background = torch.where(weight > 0, blended, background)
    return replace(stack, background=new_background, layers=_resolve_layers(stack, new_background), meta=meta)
