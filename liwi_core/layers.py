"""The layer stack: a clean background plus RGBA layers with their shadow maps.

Tensors are ``[B, C, H, W]`` float32 in [0, 1] on the full canvas. Layer colour is
*straight* (not premultiplied) alpha; :func:`liwi_core.compositing.over` defines how
a stack recomposes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from .compositing import composite_layers, premultiply, unpremultiply
from .errors import LiWiError
from .filters import bounding_box

__all__ = ["Layer", "LayerStack", "LayerEdit", "transform_layer", "edit_stack", "parse_edit", "default_layer_name", "coverage"]


def coverage(layers: list["Layer"]) -> torch.Tensor | None:
    """``[B,1,H,W]``, 1 wherever any layer's alpha is above 0: the background there is hidden
    (a stack's ``hole``). None for no layers."""
    if not layers:
        return None
    covered = torch.zeros_like(layers[0].alpha)
    for layer in layers:
        covered = torch.maximum(covered, (layer.alpha > 0).float())
    return covered


def default_layer_name(index: int) -> str:
    """The name of the layer made from prompt ``index`` (or found ``index``-th) when none is given."""
    return f"object_{index}"


@dataclass
class Layer:
    """One foreground object.

    Attributes:
        rgba: ``[B,4,H,W]`` straight-alpha colour and alpha.
        shadow: ``[B,1|3,H,W]`` multiplicative shadow this object casts on what lies below it
            (1 = no shadow).
        name: display name (PSD / ORA layer name).
        prompt_index: index of the prompt mask that produced it, or ``None`` (automatic).
    """

    rgba: torch.Tensor
    shadow: torch.Tensor
    name: str = "object"
    prompt_index: int | None = None

    @property
    def alpha(self) -> torch.Tensor:
        return self.rgba[:, 3:4]

    @property
    def shadow_strength(self) -> torch.Tensor:
        """``1 - shadow`` averaged over channels, ``[B,1,H,W]``: how much light is removed."""
        return 1.0 - self.shadow.mean(dim=1, keepdim=True)


@dataclass
class LayerStack:
    """Background plus layers back to front.

    Attributes:
        background: ``[B,3,H,W]`` clean background (objects and their shadows removed).
        layers: foreground layers, back to front.
        hole: ``[B,1,H,W]``, 1 where the background was invented (inpainted) rather than seen.
        canvas_alpha: ``[B,1,H,W]`` alpha of an RGBA input, re-applied by :meth:`to_image`.
        channels: channels of the input image (1 grey, 3 RGB, 4 RGBA).
        meta: engine name and settings, written to ``layers.json``.
    """

    background: torch.Tensor
    layers: list[Layer] = field(default_factory=list)
    hole: torch.Tensor | None = None
    canvas_alpha: torch.Tensor | None = None
    channels: int = 3
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the canvas."""
        return int(self.background.shape[-2]), int(self.background.shape[-1])

    @property
    def batch(self) -> int:
        return int(self.background.shape[0])

    def composite(self) -> torch.Tensor:
        """Recompose to ``[B,3,H,W]`` RGB with the one composite rule."""
        return composite_layers(self.background, [(l.rgba, l.shadow) for l in self.layers])

    def combined_shadow(self) -> torch.Tensor:
        """Product of all shadow maps, ``[B,3,H,W]``: what the shadows do to a white wall."""
        out = torch.ones_like(self.background)
        for layer in self.layers:
            out = out * layer.shadow
        return out

    def to_image(self, rgb: torch.Tensor | None = None) -> torch.Tensor:
        """Recomposed RGB in the channel layout of the input (grey, RGB or RGBA)."""
        rgb = self.composite() if rgb is None else rgb
        if self.channels == 1:
            return rgb.mean(dim=1, keepdim=True)
        if self.channels == 4 and self.canvas_alpha is not None:
            return torch.cat([rgb, self.canvas_alpha], dim=1)
        return rgb

    def layers_over(self, below: torch.Tensor) -> torch.Tensor:
        """The layers alone (no shadows) composited over ``below`` ``[B,3,H,W]``: a preview of the objects."""
        return composite_layers(below, [(l.rgba, None) for l in self.layers])

    def layer_images(self) -> torch.Tensor:
        """Every layer's RGBA as one batch ``[B*N,4,H,W]``: the N layers (back to front) of image 0,
        then of image 1, ...; ``[0,4,H,W]`` when there are no layers."""
        if not self.layers:
            return self.background.new_zeros((0, 4) + self.size)
        return torch.cat([torch.stack([l.rgba[b] for l in self.layers]) for b in range(self.batch)])

    def layer(self, index: int) -> Layer:
        """Layer ``index`` (0 = back-most), or a one-line error naming the stack's size."""
        if not 0 <= index < len(self.layers):
            raise LiWiError(f"layer_index {index} out of range: the stack has {len(self.layers)} layers")
        return self.layers[index]

    def with_shadow(self, index: int, shadow: torch.Tensor) -> "LayerStack":
        """A copy whose layer ``index`` (0 = back-most) casts ``shadow`` ``[B,1|3,H,W]`` instead."""
        layers = list(self.layers)
        layers[index] = replace(self.layer(index), shadow=shadow)
        return replace(self, layers=layers, meta=dict(self.meta))

    @staticmethod
    def concat(stacks: list["LayerStack"], shadow_channels: int | None = None) -> "LayerStack":
        """One batched stack from stacks of one canvas size (names, metadata and layout from the first).

        Stacks with fewer layers get empty back-most layers (alpha 0, no shadow), so every image
        has the same layer count. Shadows are expanded to ``shadow_channels`` (default: the
        most any stack has at that layer).
        """
        count = max(len(s.layers) for s in stacks)
        padded = []
        for s in stacks:
            empty = [Layer(rgba=torch.zeros_like(s.background[:, :1]).expand(-1, 4, -1, -1).clone(),
                           shadow=torch.ones_like(s.background[:, :1]), name="empty")
                     for _ in range(count - len(s.layers))]
            padded.append(empty + list(s.layers))
        layers = []
        for k in range(count):
            first = padded[0][k]
            channels = shadow_channels or max(p[k].shadow.shape[1] for p in padded)
            layers.append(Layer(rgba=torch.cat([p[k].rgba for p in padded]),
                                shadow=torch.cat([p[k].shadow.expand(-1, channels, -1, -1) for p in padded]),
                                name=first.name, prompt_index=first.prompt_index))
        cat = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
        head = stacks[0]
        return LayerStack(background=torch.cat([s.background for s in stacks]), layers=layers,
                          hole=cat([s.hole for s in stacks]), canvas_alpha=cat([s.canvas_alpha for s in stacks]),
                          channels=head.channels, meta=dict(head.meta))

    def split(self) -> list["LayerStack"]:
        """One stack per batch element."""
        return [self.select(b) for b in range(self.batch)]

    def select(self, index: int) -> "LayerStack":
        """The stack of one batch element, still ``[1,C,H,W]``."""
        sl = slice(index, index + 1)
        pick = lambda t: None if t is None else t[sl]  # noqa: E731
        return replace(
            self,
            background=self.background[sl],
            layers=[replace(l, rgba=l.rgba[sl], shadow=l.shadow[sl]) for l in self.layers],
            hole=pick(self.hole),
            canvas_alpha=pick(self.canvas_alpha),
            meta=dict(self.meta),
        )


#: the scale factors :func:`transform_layer` takes: beyond them a layer is a point or all frame
MIN_SCALE, MAX_SCALE = 1e-3, 1e3


@dataclass
class LayerEdit:
    """A per-layer edit applied by :func:`edit_stack`. Offsets are in pixels."""

    visible: bool = True
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    opacity: float = 1.0


def _anchor(alpha: torch.Tensor) -> tuple[float, float]:
    """Bottom-centre of the layer's visible pixels (its contact point), ``(x, y)``."""
    box = bounding_box(alpha, threshold=0.01)
    if box is None:
        h, w = alpha.shape[-2:]
        return (w - 1) / 2.0, (h - 1) / 2.0
    y0, y1, x0, x1 = box
    return (x0 + x1 - 1) / 2.0, float(y1 - 1)


def _shift_exact(t: torch.Tensor, dx: int, dy: int, fill: float) -> torch.Tensor:
    """Integer shift with ``fill`` where nothing moved in; no resampling."""
    out = torch.full_like(t, fill)
    h, w = t.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src_y = slice(max(0, -dy), h - max(0, dy))
    dst_y = slice(max(0, dy), h - max(0, -dy))
    src_x = slice(max(0, -dx), w - max(0, dx))
    dst_x = slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x] = t[..., src_y, src_x]
    return out


def _warp(t: torch.Tensor, dx: float, dy: float, scale: float, anchor: tuple[float, float]) -> torch.Tensor:
    """Bilinear warp: scale about ``anchor`` then translate; zeros outside."""
    b, _, h, w = t.shape
    ys = torch.arange(h, dtype=t.dtype, device=t.device)
    xs = torch.arange(w, dtype=t.dtype, device=t.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    ax, ay = anchor
    src_x = (gx - dx - ax) / scale + ax
    src_y = (gy - dy - ay) / scale + ay
    grid = torch.stack([src_x / max(w - 1, 1) * 2 - 1, src_y / max(h - 1, 1) * 2 - 1], dim=-1)
    return F.grid_sample(t, grid.expand(b, h, w, 2), mode="bilinear", padding_mode="zeros",
                         align_corners=True)


def transform_layer(layer: Layer, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0) -> Layer:
    """Move and scale a layer together with its shadow map.

    Scaling is about the object's contact point (bottom-centre of its alpha), so a scaled
    object stays on its ground line. Whole-pixel moves at scale 1 are exact copies.
    """
    if not (MIN_SCALE <= scale <= MAX_SCALE):
        raise LiWiError(f"scale must be between {MIN_SCALE:g} and {MAX_SCALE:g}, got {scale}")
    if not (math.isfinite(dx) and math.isfinite(dy)):
        raise LiWiError(f"a move must be a finite number of pixels, got dx={dx}, dy={dy}")
    if scale == 1.0 and float(dx).is_integer() and float(dy).is_integer():
        if dx == 0 and dy == 0:
            return layer
        rgba = _shift_exact(layer.rgba, int(dx), int(dy), 0.0)
        shadow = _shift_exact(layer.shadow, int(dx), int(dy), 1.0)
        return replace(layer, rgba=rgba, shadow=shadow)
    anchor = _anchor(layer.alpha)
    # warp premultiplied colour so transparent pixels do not bleed black into edges
    rgba = unpremultiply(_warp(premultiply(layer.rgba), dx, dy, scale, anchor).clamp(0, 1))
    shadow = 1.0 - _warp(1.0 - layer.shadow, dx, dy, scale, anchor).clamp(0, 1)
    return replace(layer, rgba=rgba, shadow=shadow)


def edit_stack(stack: LayerStack, edits: dict[int, LayerEdit] | list[LayerEdit]) -> LayerStack:
    """Apply visibility, move, scale and opacity edits per layer index; returns a new stack.

    Opacity scales both the layer's alpha and its shadow's strength; a hidden layer hides
    its shadow too.
    """
    if isinstance(edits, list):
        edits = dict(enumerate(edits))
    for index in edits:
        stack.layer(index)  # a one-line error for an index the stack does not have
    layers = []
    for i, layer in enumerate(stack.layers):
        edit = edits.get(i, LayerEdit())
        if not edit.visible:
            continue
        layer = transform_layer(layer, edit.dx, edit.dy, edit.scale)
        if not math.isfinite(edit.opacity):
            raise LiWiError(f"opacity must be a number in [0, 1], got {edit.opacity}")
        if edit.opacity != 1.0:
            o = float(min(max(edit.opacity, 0.0), 1.0))
            rgba = torch.cat([layer.rgba[:, :3], layer.rgba[:, 3:4] * o], dim=1)
            layer = replace(layer, rgba=rgba, shadow=1.0 - o * (1.0 - layer.shadow))
        layers.append(layer)
    return replace(stack, layers=layers, meta=dict(stack.meta))


def parse_edit(text: str) -> tuple[int, LayerEdit]:
    """``"1:dx=40,dy=-5,scale=1.2,opacity=0.5,visible=0"`` -> ``(1, LayerEdit(...))``."""
    try:
        index_text, _, rest = text.partition(":")
        edit = LayerEdit()
        for item in filter(None, rest.split(",")):
            key, _, value = item.partition("=")
            key = key.strip()
            if key == "visible":
                edit.visible = value.strip() not in ("0", "false", "no")
            elif key in ("dx", "dy", "scale", "opacity"):
                setattr(edit, key, float(value))
            else:
                raise ValueError(key)
        return int(index_text), edit
    except LiWiError:
        raise
    except ValueError:
        raise LiWiError(f"bad --edit '{text}': use INDEX:dx=..,dy=..,scale=..,opacity=..,visible=0|1") from None
