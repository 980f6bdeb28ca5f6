"""``decompose``: one image (or a batch) plus one mask per object -> a :class:`LayerStack`.

Input rules, shared by the CLI and the nodes:

* ``image`` is ``[B,C,H,W]`` in [0,1] with C = 1 (grey), 3 (RGB) or 4 (RGBA). Grey is
  decomposed as RGB and recomposes to grey; for RGBA the colour is decomposed and the
  input alpha is kept as the stack's ``canvas_alpha``.
* ``masks`` is ``[N,1,H,W]`` or ``[N,H,W]``, 1 = object. With one image, the N masks are
  N objects of it. With B > 1 images, either N = B (one object per image) or N = 1 (the
  same mask for every image).
* Masks are ordered front to back as given (``order="given"``: the first mask is the
  front-most object), or by ``order="bottom"``: the object whose mask reaches lower in
  the frame is nearer the camera (objects standing on one ground plane).
* A mask of another size with the same aspect ratio (within 1%) is resized with a
  warning; any other size is an error. An empty mask gives an empty layer (alpha 0,
  no shadow) so layer indices stay aligned with prompts. A mask covering the whole
  frame gives an opaque layer and a background that is all hole (mid grey).
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from .engines.classical import ClassicalSettings, peel_objects
from .errors import LiWiError
from .filters import bounding_box, resize
from .engines.learned import peel_learned
from .layers import Layer, LayerStack

__all__ = ["decompose", "prepare_masks", "ORDERS"]

ORDERS = ("given", "bottom")


def _check_finite(t: torch.Tensor, what: str) -> None:
    if not torch.isfinite(t).all():
        raise LiWiError(f"the {what} contains NaN or infinite values; fix the node or file that produced it")


def prepare_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Masks as ``[N,1,H,W]`` float in [0,1] at ``size``; see the module rules."""
    if masks.dim() == 2:
        masks = masks[None, None]
    elif masks.dim() == 3:
        masks = masks[:, None]
    elif masks.dim() != 4 or masks.shape[1] != 1:
        raise LiWiError(f"masks must be [N,H,W] or [N,1,H,W], got shape {tuple(masks.shape)}")
    masks = masks.float()
    _check_finite(masks, "mask")
    h, w = size
    mh, mw = masks.shape[-2:]
    if (mh, mw) != (h, w):
        if abs(mw / mh - w / h) > 0.01 * (w / h):
            raise LiWiError(f"mask is {mw}x{mh} but the image is {w}x{h}: give a mask of the image's size")
        warnings.warn(f"LiWi: mask {mw}x{mh} resized to the image's {w}x{h}", stacklevel=3)
        masks = resize(masks, (h, w), mode="bilinear")
    return masks.clamp(0.0, 1.0)


def _front_to_back(masks: torch.Tensor, order: str) -> list[int]:
    indices = list(range(masks.shape[0]))
    if order == "given":
        return indices
    if order == "bottom":
        def lowest(i: int) -> int:
            box = bounding_box(masks[i:i + 1])
            return box[1] if box else -1
        return sorted(indices, key=lambda i: -lowest(i))
    raise LiWiError(f"unknown order '{order}': use one of {', '.join(ORDERS)}")


def decompose(image: torch.Tensor, masks: torch.Tensor | None, settings: ClassicalSettings | None = None,
              order: str = "given", names: list[str] | None = None,
              progress: Callable[[int, int], None] | None = None, model=None,
              max_objects: int = 4) -> LayerStack:
    """Split ``image`` into a clean background and one layer (with shadow) per mask.

    Args:
        image: ``[B,C,H,W]`` in [0,1], C in {1, 3, 4}.
        masks: one mask per object (see the module rules); ``None`` asks for automatic mode,
            which needs ``model``.
        settings: classical engine settings.
        order: ``"given"`` or ``"bottom"`` (front-to-back rule).
        names: layer names per mask index (default ``object_<i>``).
        progress: called as ``progress(done, total)`` after each object.
        model: a loaded ``LiWiNet`` (:func:`liwi_core.engines.learned.load_model`): the learned
            engine is used instead of the classical one.
        max_objects: automatic mode stops after this many objects. Images of a batch that
            give fewer layers get empty back-most layers so the stack stays batched.

    Returns:
        A :class:`LayerStack` whose ``composite()`` equals the input's colour.
    """
    if masks is None and model is None:
        raise LiWiError("no mask given: connect a MASK with one mask per object "
                        "(automatic mode needs the learned model from LiWi Load Model)")
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[1] not in (1, 3, 4):
        raise LiWiError(f"image must be [B,C,H,W] with 1, 3 or 4 channels, got shape {tuple(image.shape)}")
    if image.shape[-1] < 1 or image.shape[-2] < 1:
        raise LiWiError("the image is empty (0 pixels)")
    image = image.float()
    _check_finite(image, "image")
    image = image.clamp(0.0, 1.0)
    settings = settings or ClassicalSettings()
    if settings.shadow_channels not in (1, 3):
        raise LiWiError(f"shadow_channels must be 1 or 3, got {settings.shadow_channels}")
    b, c, h, w = image.shape
    rgb = image if c == 3 else (image.expand(b, 3, h, w) if c == 1 else image[:, :3])
    if masks is None:
        return _automatic(rgb, image, c, model, max_objects, progress)
    masks = prepare_masks(masks, (h, w))
    n = masks.shape[0]
    if b == 1:
        per_image = [masks]
    elif n == b:
        per_image = [masks[i:i + 1] for i in range(b)]
    elif n == 1:
        per_image = [masks] * b
    else:
        raise LiWiError(f"{b} images and {n} masks: give one mask per image, one mask for all, "
                        "or a single image with one mask per object")

    total = b * per_image[0].shape[0]
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    results = []
    for i in range(b):
        m = per_image[i]
        order_idx = _front_to_back(m, order)
        layer_names = [(names[j] if names and j < len(names) else f"object_{j}") for j in order_idx]
        prompt_index = order_idx if b == 1 else [i if n == b else 0 for _ in order_idx]
        one = rgb[i:i + 1].contiguous()
        ordered = [m[j:j + 1] for j in order_idx]
        if model is not None:
            background, layers, hole = peel_learned(one, ordered, model, layer_names, step=step)
            for layer, index in zip(layers[::-1], prompt_index):
                layer.prompt_index = index
            results.append((background, layers, hole))
        else:
            results.append(peel_objects(one, ordered, layer_names, prompt_index, settings, step))
    meta = ({"engine": "learned", "settings": dict(model.config)} if model is not None else
            {"engine": "classical", "settings": settings.to_dict()})
    return _batched(results, image, c, {**meta, "order": order})


def _batched(results, image: torch.Tensor, channels: int, meta: dict) -> LayerStack:
    """One stack from per-image ``(background, layers, hole)``; shorter stacks get empty
    back-most layers (alpha 0, no shadow) so every image has the same layer count."""
    count = max(len(r[1]) for r in results)
    padded = []
    for background, layers, hole in results:
        empty = [Layer(rgba=torch.zeros_like(background[:, :1]).expand(-1, 4, -1, -1).clone(),
                       shadow=torch.ones_like(background[:, :1]), name="empty") for _ in range(count - len(layers))]
        padded.append((background, empty + list(layers), hole))
    layers = []
    for k in range(count):
        first = padded[0][1][k]
        channels_k = max(r[1][k].shadow.shape[1] for r in padded)
        layers.append(Layer(rgba=torch.cat([r[1][k].rgba for r in padded]),
                            shadow=torch.cat([r[1][k].shadow.expand(-1, channels_k, -1, -1) for r in padded]),
                            name=first.name, prompt_index=first.prompt_index))
    return LayerStack(background=torch.cat([r[0] for r in padded]), layers=layers,
                      hole=torch.cat([r[2] for r in padded]),
                      canvas_alpha=image[:, 3:4] if channels == 4 else None, channels=channels, meta=meta)


def _automatic(rgb: torch.Tensor, image: torch.Tensor, channels: int, model, max_objects: int,
               progress) -> LayerStack:
    """Automatic mode: the learned model finds and peels objects with no prompt."""
    results = []
    for i in range(rgb.shape[0]):
        results.append(peel_learned(rgb[i:i + 1].contiguous(), None, model, max_objects=max_objects))
        if progress is not None:
            progress(i + 1, rgb.shape[0])
    return _batched(results, image, channels, {"engine": "learned", "settings": dict(model.config),
                                               "mode": "automatic"})
