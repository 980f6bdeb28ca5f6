"""The composite rule of a LiWi layer stack, written once.

A stack is a background ``C0`` (RGB) and foreground layers back to front, each an
RGBA image plus a shadow map ``s_k`` (multiplicative attenuation, 1 = no shadow)::

    C0 = background
    Ck = over(RGBA_k, C(k-1) * s_k)
       = alpha_k * F_k + (1 - alpha_k) * C(k-1) * s_k        (straight alpha)
       = P_k + (1 - alpha_k) * C(k-1) * s_k                  (premultiplied, P = alpha * F)

The shadow of layer k darkens everything below layer k (the background and the
layers behind it) and nothing above it, so moving a layer with its shadow map
keeps the shadow attached to its owner.

All functions take ``[B, C, H, W]`` float tensors with values in [0, 1].
"""

from __future__ import annotations

import torch

__all__ = [
    "over",
    "premultiply",
    "unpremultiply",
    "apply_shadow",
    "composite_layers",
]


def premultiply(rgba: torch.Tensor) -> torch.Tensor:
    """Straight RGBA ``[B,4,H,W]`` -> premultiplied RGBA (RGB scaled by alpha)."""
    alpha = rgba[:, 3:4]
    return torch.cat([rgba[:, :3] * alpha, alpha], dim=1)


def unpremultiply(rgba: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Premultiplied RGBA ``[B,4,H,W]`` -> straight RGBA; colour is 0 where alpha <= eps."""
    alpha = rgba[:, 3:4]
    safe = alpha.clamp_min(eps)
    rgb = torch.where(alpha > eps, rgba[:, :3] / safe, torch.zeros_like(rgba[:, :3]))
    return torch.cat([rgb.clamp(0.0, 1.0), alpha], dim=1)


def apply_shadow(below: torch.Tensor, shadow: torch.Tensor | None) -> torch.Tensor:
    """Darken ``below`` ``[B,3,H,W]`` by a shadow map ``[B,1|3,H,W]`` in [0,1] (1 = untouched)."""
    if shadow is None:
        return below
    return below * shadow


def over(rgba: torch.Tensor, below: torch.Tensor, shadow: torch.Tensor | None = None,
         premultiplied: bool = False) -> torch.Tensor:
    """One step of the rule: ``over(RGBA, below * shadow)``.

    Args:
        rgba: ``[B,4,H,W]`` layer, straight alpha unless ``premultiplied``.
        below: ``[B,3,H,W]`` what is already composited under this layer.
        shadow: optional ``[B,1|3,H,W]`` shadow map of this layer.
        premultiplied: whether ``rgba[:, :3]`` is already multiplied by alpha.

    Returns:
        ``[B,3,H,W]`` composite.
    """
    alpha = rgba[:, 3:4]
    colour = rgba[:, :3] if premultiplied else rgba[:, :3] * alpha
    return colour + (1.0 - alpha) * apply_shadow(below, shadow)


def composite_layers(background: torch.Tensor, layers, premultiplied: bool = False) -> torch.Tensor:
    """Fold ``over`` over ``(rgba, shadow)`` pairs, back to front, starting at ``background``."""
    out = background
    for rgba, shadow in layers:
        out = over(rgba, out, shadow, premultiplied=premultiplied)
    return out
