"""``decompose``: one image (or a batch) plus one mask per object -> a :class:`LayerStack`.

Input rules, shared by the CLI and the nodes:

* ``image`` is ``[B,C,H,W]`` in [0,1] with C = 1 (grey), 3 (RGB) or 4 (RGBA). Grey is
  decomposed as RGB and recomposes to grey; for RGBA the colour is decomposed and the
  input alpha is kept as the stack's ``canvas_alpha``.
* Both are torch tensors. A float image must hold values in [0,1] (a little beyond is clamped);
  values above :data:`MAX_IMAGE_VALUE` or an integer image (0-255) are an error, not a white
  picture. Gradients are not followed (the input is detached).
* ``masks`` is ``[N,1,H,W]`` or ``[N,H,W]`` (or a list of ``[H,W]`` / ``[1,H,W]`` masks), 1 =
  object; an integer mask with values above 1 is read on the 0-255 scale. With one image, the N masks are
  N objects of it. With B > 1 images, either N = B (one object per image) or N = 1 (the
  same mask for every image).
* Masks are ordered front to back as given (``order="given"``: the first mask is the
  front-most object), or by ``order="bottom"``: the object whose mask reaches lower in
  the frame is nearer the camera (objects standing on one ground plane).
* A mask of another size with the same aspect ratio (within 1%) is resized with a
  warning; any other size is an error. An empty mask gives an empty layer (alpha 0,
  no shadow, and a warning) so layer indices stay aligned with prompts. A mask covering the whole
  frame gives an opaque layer and a background that is all hole (mid grey).
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from .errors import LiWiError
from .filters import ASPECT_TOLERANCE, aspect_mismatch, bounding_box, resize
from .layers import LayerStack, default_layer_name

__all__ = ["decompose", "prepare_masks", "front_to_back", "ORDERS", "MASK_KINDS"]

ORDERS = ("given", "bottom")
#: what the masks given to :func:`decompose` are: ``"drawn"`` by a user or a segmentation model, or
#: ``"found"`` by automatic mode's search (:func:`liwi_core.proposals.find_objects`, LiWi Find Objects)
MASK_KINDS = ("drawn", "found")
#: a float image whose values go above this is on another scale (0-255), not slightly out of range
MAX_IMAGE_VALUE = 2.0


def _check_finite(t: torch.Tensor, what: str) -> None:
    if not torch.isfinite(t).all():
        raise LiWiError(f"the {what} contains NaN or infinite values; fix the node or file that produced it")


def _check_tensor(t, what: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise LiWiError(f"the {what} must be a torch tensor, got {type(t).__name__}")


def prepare_masks(masks, size: tuple[int, int]) -> torch.Tensor:
    """Masks as ``[N,1,H,W]`` float in [0,1] at ``size``; see the module rules."""
    if isinstance(masks, (list, tuple)):
        if not masks:
            raise LiWiError("the list of masks is empty: give None for automatic mode")
        return torch.cat([prepare_masks(m, size) for m in masks])
    _check_tensor(masks, "mask")
    masks = masks.detach()
    if not masks.is_floating_point() and masks.dtype != torch.bool and int(masks.max()) > 1:
        masks = masks.float() / 255.0
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
        if aspect_mismatch((mh, mw), (h, w)) > ASPECT_TOLERANCE:
            raise LiWiError(f"mask is {mw}x{mh} but the image is {w}x{h}: give a mask of the image's size")
        warnings.warn(f"LiWi: mask {mw}x{mh} resized to the image's {w}x{h}", stacklevel=3)
        masks = resize(masks, (h, w), mode="bilinear")
    return masks.clamp(0.0, 1.0)


def front_to_back(masks: torch.Tensor, order: str) -> list[int]:
    """Mask indices front to back: as given, or by the lowest point of each mask (``"bottom"``)."""
    indices = list(range(masks.shape[0]))
    if order == "given":
        return indices
    if order == "bottom":
        def lowest(i: int) -> int:
            box = bounding_box(masks[i:i + 1])
            return box[1] if box else -1
        return sorted(indices, key=lambda i: -lowest(i))
    raise LiWiError(f"unknown order '{order}': use one of {', '.join(ORDERS)}")


def decompose(image: torch.Tensor, masks: torch.Tensor | None, engine=None, order: str = "given",
              names: list[str] | None = None, progress: Callable[[int, int], None] | None = None,
              find=None, mask_kind: str = "drawn") -> LayerStack:
    """Split ``image`` into a clean background and one layer (with shadow) per mask.

    Args:
        image: ``[B,C,H,W]`` in [0,1], C in {1, 3, 4}.
        masks: one mask per object (see the module rules); ``None`` asks for automatic mode:
            engines that find objects themselves do; for the others the salient-object
            network proposes the masks (:func:`liwi_core.proposals.find_objects`), and they
            are decomposed as a user's would be. An image where nothing is found gives the
            background alone (the image itself, no layer) and a warning; ``meta["found"]``
            says what was found in each image.
        engine: an engine from :func:`liwi_core.engines.create`; default
            :data:`~liwi_core.engines.DEFAULT_ENGINE` (the refined one).
        order: ``"given"`` or ``"bottom"`` (front-to-back rule).
        names: layer names per mask index (default ``object_<i>``).
        progress: called as ``progress(done, total)`` after each object; in automatic mode also once
            each image's objects are found, ``total`` then counting the objects found so far plus
            one per image not yet searched (engines that find objects themselves: one per image).
        find: automatic mode's :class:`~liwi_core.proposals.ProposalSettings` (default ones).
        mask_kind: what ``masks`` are (:data:`MASK_KINDS`). ``"drawn"``: a user's brush, box or
            outline, or a segmentation model's mask; one off the object's edges by an even margin
            (a loose or timid brush) is moved onto them. ``"found"``: automatic mode's proposals
            (:func:`~liwi_core.proposals.find_objects`, LiWi Find Objects), edited or not, which
            follow the network's smooth map rather than a brush: they are decomposed as automatic
            mode decomposes its own (no search for an even offset; the refined engine cuts each by
            its zoomed looks where they cover it), so unedited proposals give automatic mode's
            layers. Engines that do not snap masks (learned, baseline) treat both alike.

    Returns:
        A :class:`LayerStack` whose ``composite()`` equals the input's colour. Images of a batch
        that give fewer layers (automatic mode) get empty back-most layers so the stack stays batched.
    """
    if engine is None:
        from .engines import DEFAULT_ENGINE, create
        engine = create(DEFAULT_ENGINE)
    _check_tensor(image, "image")
    image = image.detach()
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[1] not in (1, 3, 4):
        raise LiWiError(f"image must be [B,C,H,W] with 1, 3 or 4 channels, got shape {tuple(image.shape)}")
    if image.shape[-1] < 1 or image.shape[-2] < 1:
        raise LiWiError("the image is empty (0 pixels)")
    if not image.is_floating_point():
        raise LiWiError(f"the image is {str(image.dtype).removeprefix('torch.')}: give float values in [0,1] "
                        "(divide 8-bit values by 255)")
    image = image.float()
    _check_finite(image, "image")
    if image.numel() and float(image.max()) > MAX_IMAGE_VALUE:
        raise LiWiError(f"the image's values go up to {float(image.max()):g}: give values in [0,1] "
                        "(divide 8-bit values by 255)")
    image = image.clamp(0.0, 1.0)
    b, c, h, w = image.shape
    rgb = image if c == 3 else (image.expand(b, 3, h, w) if c == 1 else image[:, :3])
    if mask_kind not in MASK_KINDS:
        raise LiWiError(f"unknown mask_kind '{mask_kind}': use one of {', '.join(MASK_KINDS)}")
    meta = {**engine.meta(), "order": order}
    if masks is None:
        results, found = [], []
        counter = _ObjectProgress(progress, b)
        for i in range(b):
            one = rgb[i:i + 1].contiguous()
            if engine.needs_masks:
                results.append(_proposed(engine, one, find, found, counter))
            else:
                results.append(engine.peel(one, None, None, None, find=find))
                found.append(f"{len(results[-1].layers)} object(s)")
                counter.image_done()
        return _batched(results, image, c, {**engine.meta(), "mode": "automatic", "found": found})
    masks = prepare_masks(masks, (h, w))
    n = masks.shape[0]
    for i in range(n):
        if not bool((masks[i] > 0).any()):
            warnings.warn(f"LiWi: mask {i + 1} of {n} is empty: its layer is empty", stacklevel=2)
    if b == 1:
        per_image = [masks]
    elif n == b:
        per_image = [masks[i:i + 1] for i in range(b)]
    elif n == 1:
        per_image = [masks] * b
    else:
        raise LiWiError(f"{b} images and {n} masks: give one mask per image, one mask for all, "
                        "or a single image with one mask per object")

    # drawn masks call peel as before, so an engine written without ``find`` keeps working with them
    as_found = {}
    if mask_kind == "found":
        from .proposals import ProposalSettings

        as_found = {"find": find if find is not None else ProposalSettings()}
        meta["masks"] = "found"
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
        order_idx = front_to_back(m, order)
        layer_names = [(names[j] if names and j < len(names) else default_layer_name(j)) for j in order_idx]
        prompt_index = order_idx if b == 1 else [i if n == b else 0 for _ in order_idx]
        results.append(engine.peel(rgb[i:i + 1].contiguous(), [m[j:j + 1] for j in order_idx], layer_names,
                                   prompt_index, step, **as_found))
    return _batched(results, image, c, meta)


class _ObjectProgress:
    """Automatic mode's ``progress(done, total)`` counted in objects, whose number only each image's
    search tells: ``total`` is the objects found so far plus one for each image not yet searched
    (an image where nothing is found, or whose engine finds objects itself, counts one). So a
    photo with three objects reports 0/3 once they are found, then 1/3, 2/3, 3/3 as each is
    peeled, and ComfyUI's progress bar moves, and its Cancel is heard, between objects."""

    def __init__(self, progress: Callable[[int, int], None] | None, images: int):
        self.progress, self.done, self.total = progress, 0, images

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)

    def found(self, count: int) -> None:
        """An image's search found ``count`` objects (its one unit becomes ``count``)."""
        self.total += max(count, 1) - 1
        self._report()

    def step(self) -> None:
        """One object peeled."""
        self.done += 1
        self._report()

    def image_done(self) -> None:
        """An image counted as one unit is finished."""
        self.step()


def _proposed(engine, image: torch.Tensor, find, found: list[str], counter: _ObjectProgress):
    """Automatic mode for an engine that needs masks: the proposals, decomposed as prompts."""
    from .engines.base import Peeled
    from .proposals import ProposalSettings, find_objects

    proposals = find_objects(image, find)
    found.append(proposals.message)
    count = len(proposals.masks)
    counter.found(count)
    if not count:
        warnings.warn(f"LiWi: {proposals.message}; the result is the background alone", stacklevel=3)
        counter.image_done()
        return Peeled(image, [], torch.zeros_like(image[:, :1]))
    return engine.peel(image, list(proposals.masks[:, None]), [default_layer_name(j) for j in range(count)],
                       list(range(count)), counter.step, find=find if find is not None else ProposalSettings())


def _batched(results, image: torch.Tensor, channels: int, meta: dict) -> LayerStack:
    """One stack from each image's :class:`~liwi_core.engines.base.Peeled`."""
    stacks = [LayerStack(background=r.background, layers=r.layers, hole=r.hole) for r in results]
    stack = LayerStack.concat(stacks)
    stack.canvas_alpha = image[:, 3:4] if channels == 4 else None
    stack.channels = channels
    stack.meta = meta
    return stack
