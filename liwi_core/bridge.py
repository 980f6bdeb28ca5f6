"""From a generative layering model's RGBA layers to a lossless LiWi stack at the photo's resolution.

Generative layering models (Qwen-Image-Layered in ComfyUI core) regenerate a photo as a batch
of RGBA images at 640 or 1024 px: slot 0 the whole image again, then the layers back to front,
usually an opaque background first. Those layers are not pixel-exact: a little shifted, a
little off in colour, at another size. :func:`layers_from_images` keeps what they know (which
pixels belong to which object, what lies behind an object) and rebuilds the stack from the
original photo, so it recomposes to the photo exactly:

1. **Slots.** Slot 0 is dropped when asked (``drop_first``). A layer whose alpha is ~0
   everywhere is dropped as *empty*. A layer that is opaque over (almost) the whole frame
   (:data:`OPAQUE_COVER`) is a background candidate; the *background* is the candidate that
   best explains the photo where no object covers it (median colour difference, after
   alignment and with the generator's colour shift removed). The other candidates are
   *blank plates* and are dropped: a uniform grey or white sheet explains a real photo
   badly, since a real background is not uniform. A candidate that also matches the photo
   under the objects is a copy of the whole image (slot 0 kept by mistake) and is dropped
   too. Every drop gives a message naming the slot and why. An opaque layer that does not
   cover the frame is an object, uniform or not. With no background candidate the hole is
   inpainted (push-pull), as the classical engine does.
2. **Order, front to back.** The slots are assumed back to front (Qwen-Image-Layered's order:
   a later slot is in front). Where two objects overlap, the one whose colour matches the
   photo there is in front (it is the one seen); that overrides the slot order for that
   pair, and pairs that match equally well keep the slot order.
3. **Alignment.** Every kept layer is brought to the photo's aspect ratio at the generated
   size (more than 1% off is an error), then moved by the translation (searched within
   :data:`MAX_SHIFT` of the long side, refined below a pixel) that best matches the photo
   downscaled to that size: an object on its opaque part, leaving out what the objects in
   front of it hide (so objects are aligned front to back), the background where no object
   covers it; colours compared with the generator's colour shift (a per-channel median,
   at most :data:`MAX_COLOUR_SHIFT`) removed.
4. **Alpha at full size.** :func:`~liwi_core.filters.guided_upsample`: a guided filter fitted
   at the generated size against the downscaled photo, applied to the full-size photo, so
   alpha edges follow the photo's edges; kept near the generated alpha.
5. **Peel.** Front to back with :class:`~liwi_core.engines.base.StackBuilder`: each object's
   shadow is the illumination residual of what is left of the photo near the object
   (:func:`~liwi_core.shadow.estimate_shadow`, the classical engine's detector: it looks at
   the photo itself, since a regenerated background differs from the photo in texture and
   light as well as in shadows); then :func:`~liwi_core.engines.exact.explain_object` with
   ``fill`` = what the generated stack has behind the object (the layers behind it over the
   generated background, its colour shift removed), so generated pixels are used only in
   the hole and every layer explains the photo exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .compositing import composite_layers
from .engines.base import StackBuilder
from .engines.exact import explain_object
from .errors import LiWiError
from .filters import ASPECT_TOLERANCE, aspect_mismatch, bounding_box, dilate, guided_upsample, resize
from .layers import LayerStack
from .shadow import estimate_shadow

__all__ = ["EMPTY_ALPHA", "MAX_SHIFT", "OPAQUE_COVER", "GeneratedLayer", "layers_from_images"]

#: a layer opaque (alpha > 0.5) over at least this fraction of the frame is a background candidate
OPAQUE_COVER = 0.97
#: a layer with alpha below this everywhere (or on fewer than a handful of pixels) is empty
EMPTY_ALPHA = 0.02
#: misalignment searched, as a fraction of the generated image's long side (at least 2 px)
MAX_SHIFT = 0.012
#: the most a generator is taken to shift a colour channel (more is another colour, not a shift)
MAX_COLOUR_SHIFT = 0.1
#: colour differences above this count as this much when aligning (an occluded part is simply "wrong")
ALIGN_CAP = 0.08
#: a plate whose colours vary less than this (standard deviation) is called uniform in messages
UNIFORM_STD = 0.02
#: an object is in front of another where their colours differ from the photo by this much less
FRONT_MARGIN = 0.01
#: a background candidate is a copy of the whole image when its error under the objects is
#: within this (median colour difference) of its error elsewhere
COPY_MARGIN = 0.03


@dataclass
class GeneratedLayer:
    """One generated slot at the working size (the photo's aspect, the generated long side)."""

    slot: int
    colour: torch.Tensor  # [1,3,h,w] straight colour
    alpha: torch.Tensor  # [1,1,h,w]
    shift: tuple[float, float] = (0.0, 0.0)  # (dy, dx) applied to align it with the photo
    offset: torch.Tensor | None = None  # [1,3,1,1] its colour shift against the photo
    error: float = 0.0  # median colour difference to the photo where it was compared


def layers_from_images(original: torch.Tensor, generated: torch.Tensor, alpha: torch.Tensor | None = None,
                       drop_first: bool = True, shadow_reach: float = 0.5, shadow_threshold: float = 0.06,
                       shadow_channels: int = 1) -> tuple[LayerStack, list[str]]:
    """A lossless layer stack at the original's resolution from a generative model's layers.

    Args:
        original: ``[1,3,H,W]`` the photo in [0,1].
        generated: ``[N,4,h,w]`` straight RGBA layers in slot order (slot 0 first), or
            ``[N,3,h,w]`` RGB with ``alpha``.
        alpha: ``[N,1,h,w]`` alphas (1 = opaque); replaces the fourth channel when given.
        drop_first: slot 0 is the regenerated whole image (Qwen-Image-Layered), not a layer.
        shadow_reach: how far from an object its shadow is looked for, as a fraction of the
            object's size (0 = no shadow layers).
        shadow_threshold: darkening weaker than this is texture, not shadow.
        shadow_channels: 1 grey or 3 coloured shadow maps.

    Returns:
        ``(stack, messages)``: the stack (background and objects back to front, layer names
        ``slot_K`` with ``prompt_index`` K, the generated slot), and one line per decision
        (which slots were dropped and why, which is the background, the order).

    Raises:
        LiWiError: bad shapes, NaN or Inf, no alpha for RGB layers, or an aspect ratio more
            than 1% off the original's.
    """
    rgb, gen_alpha = _check(original, generated, alpha)
    H, W = original.shape[-2:]
    n, _, h, w = rgb.shape
    size = _working_size((H, W), (h, w))
    guide = resize(original, size)
    messages: list[str] = []
    dropped: dict[str, str] = {}

    def drop(slot: int, why: str) -> None:
        messages.append(f"slot {slot}: dropped, {why}")
        dropped[str(slot)] = why

    layers = []
    for slot in range(n):
        if slot == 0 and drop_first:
            drop(0, "the regenerated whole image (drop_first)")
            continue
        colour, a = _to_working(rgb[slot:slot + 1], gen_alpha[slot:slot + 1], size)
        if int((a > EMPTY_ALPHA).sum()) < max(4, round(1e-4 * a.numel())):
            drop(slot, "empty (alpha ~0 everywhere)")
            continue
        layers.append(GeneratedLayer(slot, colour, a))

    plates = [g for g in layers if float((g.alpha > 0.5).float().mean()) >= OPAQUE_COVER]
    objects = [g for g in layers if g not in plates]
    max_shift = max(2, round(MAX_SHIFT * max(size)))
    for g in objects:  # the colour shift, for the order (alignment refines it)
        g.offset = _robust_offset(g.colour, guide, _interior(g.alpha))
    front_to_back = _order(objects, guide)
    # align front to back, each object where the objects in front of it do not hide it
    hidden = torch.zeros_like(guide[:, :1])
    for g in front_to_back:
        _align(g, _interior(g.alpha), guide, max_shift, exclude=1.0 - dilate((hidden > EMPTY_ALPHA).float(), 2))
        hidden = torch.maximum(hidden, g.alpha)
    background = _choose_background(plates, objects, guide, max_shift, drop)
    if background is not None:
        messages.append(f"slot {background.slot}: the background (used only in the hole under the objects)")
    elif objects:
        messages.append("no generated background: the hole under the objects is filled by push-pull inpainting")
    if objects:
        messages.append("objects front to back: " + ", ".join(f"slot {g.slot}" for g in front_to_back))
    else:
        messages.append("no object layers: the stack is the image alone")

    full_alpha = {g.slot: _full_alpha(g.alpha, guide, original) for g in objects}
    full_colour = {g.slot: _matched(resize(g.colour, (H, W)), g.offset) for g in objects}
    behind_fill = None if background is None else _matched(resize(background.colour, (H, W)), background.offset)

    built = StackBuilder(original)
    for k, g in enumerate(front_to_back):
        a = full_alpha[g.slot]
        if bounding_box(a, 0.0) is None:
            built.add_empty(f"slot_{g.slot}", g.slot, shadow_channels)
            messages.append(f"slot {g.slot}: nothing of it is left at full size (an empty layer keeps its place)")
            continue
        fill = None
        if behind_fill is not None:
            behind = front_to_back[k + 1:][::-1]  # back to front
            fill = composite_layers(behind_fill, [(torch.cat([full_colour[b.slot], full_alpha[b.slot]], 1), None)
                                                  for b in behind]).clamp(0.0, 1.0)
        shadow = _shadow(built.current, a, shadow_reach, shadow_threshold, shadow_channels)
        fg, a, shadow, clean = explain_object(built.current, a, shadow, fill)
        built.add(fg, a, shadow, clean, name=f"slot_{g.slot}", prompt_index=g.slot)
    peeled = built.result()

    settings = {"drop_first": drop_first, "shadow_reach": shadow_reach, "shadow_threshold": shadow_threshold,
                "shadow_channels": shadow_channels}
    meta = {"engine": "generated_layers", "settings": settings,
            "slots": {"background": None if background is None else background.slot,
                      "objects_back_to_front": [g.slot for g in front_to_back[::-1]],
                      "shifts": {str(g.slot): [round(g.shift[0], 2), round(g.shift[1], 2)]
                                 for g in objects + ([background] if background else [])},
                      "dropped": dropped,
                      "generated_size": [h, w]}}
    stack = LayerStack(background=peeled.background, layers=peeled.layers, hole=peeled.hole, channels=3, meta=meta)
    return stack, messages


# --------------------------------------------------------------------------- inputs


def _check(original: torch.Tensor, generated: torch.Tensor, alpha: torch.Tensor | None):
    if original.dim() != 4 or original.shape[0] != 1 or original.shape[1] != 3:
        raise LiWiError(f"the image must be one RGB image [1,3,H,W], got {list(original.shape)}")
    if generated.dim() != 4 or generated.shape[1] not in (3, 4) or generated.shape[0] == 0:
        raise LiWiError(f"the layer images must be a batch of RGB or RGBA images [N,3|4,h,w], got "
                        f"{list(generated.shape)}")
    if alpha is not None:
        if alpha.dim() == 3:
            alpha = alpha[:, None]
        if alpha.dim() != 4 or alpha.shape[1] != 1 or alpha.shape[0] != generated.shape[0]:
            raise LiWiError(f"{generated.shape[0]} layer images need as many masks, got masks of shape "
                            f"{list(alpha.shape)}")
        if tuple(alpha.shape[-2:]) != tuple(generated.shape[-2:]):
            raise LiWiError(f"the layer masks are {alpha.shape[-1]}x{alpha.shape[-2]}, the layer images "
                            f"{generated.shape[-1]}x{generated.shape[-2]}: give masks of the same size")
    elif generated.shape[1] == 3:
        raise LiWiError("the layer images are RGB: give their alphas (layer_masks, 1 = opaque) or RGBA images")
    for name, t in (("image", original), ("layer images", generated), ("layer masks", alpha)):
        if t is not None and not bool(torch.isfinite(t).all()):
            raise LiWiError(f"NaN or Inf in the {name}")
    rgb = generated[:, :3].float().clamp(0.0, 1.0)
    a = (alpha if alpha is not None else generated[:, 3:4]).float().clamp(0.0, 1.0)
    return rgb, a


def _working_size(full: tuple[int, int], gen: tuple[int, int]) -> tuple[int, int]:
    """The generated long side at the original's aspect ratio; an error when the aspects differ by > 1%."""
    (H, W), (h, w) = full, gen
    off = aspect_mismatch((h, w), (H, W))
    if off > ASPECT_TOLERANCE:
        raise LiWiError(f"the layer images are {w}x{h} (aspect {w / h:.3f}) and the image {W}x{H} (aspect "
                        f"{W / H:.3f}): {off:.1%} apart, more than {ASPECT_TOLERANCE:.0%}; generate the "
                        f"layers at the image's aspect ratio")
    s = max(h, w) / max(H, W)
    return max(1, round(H * s)), max(1, round(W * s))


def _to_working(rgb: torch.Tensor, a: torch.Tensor, size: tuple[int, int]):
    """Straight colour and alpha resized to ``size``, through premultiplied colour so that
    transparent pixels' colour does not bleed into the edges."""
    if tuple(rgb.shape[-2:]) == tuple(size):
        return rgb, a
    ar = resize(a, size).clamp(0.0, 1.0)
    pre = resize(rgb * a, size)
    colour = torch.where(ar > 1e-3, pre / ar.clamp_min(1e-3), resize(rgb, size))
    return colour.clamp(0.0, 1.0), ar


# --------------------------------------------------------------------------- alignment


def _robust_offset(colour: torch.Tensor, guide: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``[1,3,1,1]`` per-channel median of ``colour - guide`` where ``weight > 0.5``: the generator's
    colour shift, not swayed by the parts an object in front hides or by a misalignment."""
    sel = weight[0, 0] > 0.5
    if int(sel.sum()) < 16:
        sel = weight[0, 0] > 0
    shift = (colour - guide)[0][:, sel].median(dim=1).values.view(1, 3, 1, 1)
    return shift.clamp(-MAX_COLOUR_SHIFT, MAX_COLOUR_SHIFT)


def _shift_errors(colour: torch.Tensor, weight: torch.Tensor, guide: torch.Tensor, s: int,
                  offset: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    """``[2s+1, 2s+1]``: the mean over ``weight`` (in the layer's frame, moved with it) times
    ``exclude`` (in the photo's frame) of the squared colour difference, ``offset`` removed and
    capped at :data:`ALIGN_CAP` squared, between the layer moved by ``(dy, dx)`` and the photo."""
    y0, y1, x0, x1 = bounding_box(weight, 1e-3)
    h, w = guide.shape[-2:]
    y0, y1, x0, x1 = max(0, y0 - s), min(h, y1 + s), max(0, x0 - s), min(w, x1 + s)
    padded = F.pad(colour - offset, (s, s, s, s), mode="replicate")
    wpad = F.pad(weight, (s, s, s, s), mode="replicate")
    g = guide[..., y0:y1, x0:x1]
    keep = exclude[..., y0:y1, x0:x1]
    # a large region is compared on every other pixel (plenty to place a shift, four times cheaper)
    step = 2 if (y1 - y0) * (x1 - x0) > 250_000 else 1
    g, keep = g[..., ::step, ::step], keep[..., ::step, ::step]
    errors = torch.empty(2 * s + 1, 2 * s + 1)
    for i, dy in enumerate(range(-s, s + 1)):
        # every dx of this dy at once: the layer moved by (dy, dx) is out[y, x] = layer[y - dy, x - dx]
        rows = slice(y0 + s - dy, y1 + s - dy, step)
        c = torch.cat([padded[..., rows, x0 + s - dx:x1 + s - dx:step] for dx in range(-s, s + 1)])
        wt = torch.cat([wpad[..., rows, x0 + s - dx:x1 + s - dx:step] for dx in range(-s, s + 1)]) * keep
        err = ((c - g) ** 2).mean(dim=1, keepdim=True).clamp_(max=ALIGN_CAP ** 2)
        errors[i] = (err * wt).sum(dim=(1, 2, 3)) / wt.sum(dim=(1, 2, 3)).clamp_min(1e-8)
    return errors


def _interior(alpha: torch.Tensor) -> torch.Tensor:
    """Where a layer is (nearly) opaque: there the photo shows its colour (unless something is in
    front); soft edges mix in what lies behind. All of a layer that is nowhere opaque."""
    inner = (alpha >= 0.98).float()
    return inner if int(inner.sum()) >= 16 else alpha


def _subpixel(e_minus: float, e0: float, e_plus: float) -> float:
    curve = e_minus - 2.0 * e0 + e_plus
    return 0.0 if curve <= 1e-12 else max(-0.5, min(0.5, 0.5 * (e_minus - e_plus) / curve))


def _translate(t: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """Content moved by ``(dy, dx)`` pixels (bilinear, borders replicated)."""
    if dy == 0 and dx == 0:
        return t
    h, w = t.shape[-2:]
    ys = torch.arange(h, dtype=t.dtype) - dy
    xs = torch.arange(w, dtype=t.dtype) - dx
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx / max(w - 1, 1) * 2 - 1, gy / max(h - 1, 1) * 2 - 1], dim=-1)[None]
    return F.grid_sample(t, grid.expand(t.shape[0], h, w, 2), mode="bilinear", padding_mode="border",
                         align_corners=True)


def _align(g: GeneratedLayer, weight: torch.Tensor, guide: torch.Tensor, s: int,
           exclude: torch.Tensor | None = None) -> None:
    """Move ``g`` (colour and alpha) by the translation within ``s`` px that best matches the photo
    over ``weight`` (in the layer's frame) where ``exclude`` (in the photo's frame, 0 = ignore:
    what objects in front hide) allows; sets its shift, colour offset and median error there."""
    keep = torch.ones_like(g.alpha) if exclude is None else exclude
    if float((weight * keep).sum()) <= 0:
        g.offset = _robust_offset(g.colour, guide, torch.ones_like(g.alpha))
        return
    errors = _shift_errors(g.colour, weight, guide, s, _robust_offset(g.colour, guide, weight * keep), keep)
    i, j = divmod(int(torch.argmin(errors)), errors.shape[1])
    dy, dx = float(i - s), float(j - s)
    if 0 < i < 2 * s:
        dy += _subpixel(float(errors[i - 1, j]), float(errors[i, j]), float(errors[i + 1, j]))
    if 0 < j < 2 * s:
        dx += _subpixel(float(errors[i, j - 1]), float(errors[i, j]), float(errors[i, j + 1]))
    g.colour = _translate(g.colour, dy, dx).clamp(0.0, 1.0)
    g.alpha = _translate(g.alpha, dy, dx).clamp(0.0, 1.0)
    seen = _translate(weight, dy, dx) * keep
    g.shift = (dy, dx)
    g.offset = _robust_offset(g.colour, guide, seen)
    g.error = _median_error(g, guide, seen)


def _median_error(g: GeneratedLayer, guide: torch.Tensor, weight: torch.Tensor) -> float:
    """Median over ``weight > 0.5`` of the per-pixel mean absolute colour difference to the photo
    (the colour shift removed): how well the layer explains the photo there, not swayed by the
    few pixels a shadow or a small object changes."""
    sel = weight[0, 0] > 0.5
    if int(sel.sum()) == 0:
        return 0.0
    diff = (g.colour - g.offset - guide).abs().mean(dim=1)[0]
    return float(diff[sel].median())


# --------------------------------------------------------------------------- slots


def _choose_background(plates: list[GeneratedLayer], objects: list[GeneratedLayer], guide: torch.Tensor,
                       s: int, drop) -> GeneratedLayer | None:
    """The plate that best explains the photo where no object covers it; the others are dropped."""
    if not plates:
        return None
    union = torch.zeros_like(guide[:, :1])
    for g in objects:
        union = torch.maximum(union, g.alpha)
    visible = 1.0 - dilate((union > EMPTY_ALPHA).float(), s + 1)
    if float(visible.mean()) < 0.01:  # the objects cover everything: compare everywhere
        visible = torch.ones_like(visible)
    under = (union > 0.5).float()
    for g in plates:
        _align(g, torch.ones_like(visible), guide, s, exclude=visible)
    candidates = []
    for g in plates:
        if float(under.sum()) >= 16 and _median_error(g, guide, under) <= g.error + COPY_MARGIN:
            drop(g.slot, f"a copy of the whole image (it matches the photo under the objects too, median error "
                         f"{_median_error(g, guide, under):.3f}; is slot 0 kept by mistake?)")
        else:
            candidates.append(g)
    if not candidates:
        return None
    best = min(candidates, key=lambda g: g.error)
    for g in candidates:
        if g is best:
            continue
        uniform = float(g.colour.std(dim=(-2, -1)).max()) < UNIFORM_STD
        drop(g.slot, f"a blank plate ({'uniform colour, ' if uniform else ''}opaque over the whole frame; it "
                     f"explains the photo worse than slot {best.slot}, the background: median colour error "
                     f"{g.error:.3f} vs {best.error:.3f})")
    return best


def _order(objects: list[GeneratedLayer], guide: torch.Tensor) -> list[GeneratedLayer]:
    """Front to back: slot order (a later slot is in front) except where an overlap tells otherwise."""
    in_front_of: dict[int, set[int]] = {g.slot: set() for g in objects}  # slot -> slots in front of it
    for ia, a in enumerate(objects):
        for b in objects[ia + 1:]:
            overlap = ((a.alpha > 0.5) & (b.alpha > 0.5)).float()
            if float(overlap.sum()) < 16:
                continue
            ea, eb = (_overlap_error(g, guide, overlap) for g in (a, b))
            if ea + FRONT_MARGIN < eb:
                in_front_of[b.slot].add(a.slot)
            elif eb + FRONT_MARGIN < ea:
                in_front_of[a.slot].add(b.slot)
    placed: list[GeneratedLayer] = []
    left = sorted(objects, key=lambda g: -g.slot)  # front-most slot first
    while left:
        done = {g.slot for g in placed}
        free = [g for g in left if in_front_of[g.slot] <= done]
        pick = free[0] if free else left[0]  # a cycle: fall back to slot order
        placed.append(pick)
        left.remove(pick)
    return placed


def _overlap_error(g: GeneratedLayer, guide: torch.Tensor, overlap: torch.Tensor) -> float:
    """Mean absolute colour difference to the photo over ``overlap`` (the colour shift removed)."""
    diff = (g.colour - g.offset - guide).abs().mean(dim=1, keepdim=True)
    return float((diff * overlap).sum() / overlap.sum().clamp_min(1e-8))


# --------------------------------------------------------------------------- full size


def _matched(colour: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
    """Generated colours with the generator's colour shift removed."""
    return colour if offset is None else (colour - offset).clamp(0.0, 1.0)


def _full_alpha(a: torch.Tensor, guide: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Alpha at the original's size along the photo's edges (guided upsampling), kept near the
    generated alpha, with near-0 and near-1 values snapped."""
    H, W = original.shape[-2:]
    up = guided_upsample(a, guide, original, r=2, eps=1e-4).clamp(0.0, 1.0)
    scale = max(H / a.shape[-2], W / a.shape[-1])
    near = dilate((resize(a, (H, W), mode="bilinear") > 0.01).float(), max(1, math.ceil(scale)))
    up = up * near
    return torch.where(up < 0.01, torch.zeros_like(up), torch.where(up > 0.99, torch.ones_like(up), up))


def _shadow(image: torch.Tensor, alpha: torch.Tensor, reach_fraction: float, threshold: float,
            channels: int) -> torch.Tensor:
    """The object's cast shadow in its region of interest (box grown by the reach), 1 elsewhere."""
    h, w = image.shape[-2:]
    ones = torch.ones((1, channels, h, w), dtype=image.dtype)
    box = bounding_box(alpha, EMPTY_ALPHA)
    if box is None or reach_fraction <= 0:
        return ones
    y0, y1, x0, x1 = box
    size = max(y1 - y0, x1 - x0)
    reach = round(reach_fraction * size)
    pad = reach + max(8, size // 8)
    roi = (slice(None), slice(None), slice(max(0, y0 - pad), min(h, y1 + pad)),
           slice(max(0, x0 - pad), min(w, x1 + pad)))
    ones[roi] = estimate_shadow(image[roi], alpha[roi], reach, threshold, channels)
    return ones
