"""Automatic mode: object proposals from the salient-object network, as rough masks.

The pretrained U²-Net small (:mod:`liwi_core.saliency`) marks what a photo is about. Its
map is thresholded and split into instances: connected parts, and parts that a higher
threshold separates (two objects touching in the map usually meet in a valley of it).
Small and thin fragments are dropped. Each proposal is a rough mask, so any engine then
decomposes it exactly as it decomposes a user's mask: automatic layers get the same alpha,
shadow and background quality as prompted ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .filters import dilate, erode, resize
from .options import check_settings, option

__all__ = ["ProposalSettings", "Proposals", "find_objects", "saliency_model"]

#: proposals are found at most at this size (the network itself sees 320 px)
WORK_SIDE = 512
#: thresholds tried above ``threshold`` to split touching objects
SPLIT_LEVELS = (0.7, 0.85, 0.95)
#: fractions of the largest inscribed radius that cut a shape into blobs, coarse to fine
SHAPE_LEVELS = (0.5, 0.4, 0.3, 0.2)
#: an object the network is sure of: mean saliency inside at least this ...
CONFIDENT = 0.8
#: ... and at most this in a ring around it (3% of the image wide): it stands out. On noise or
#: a texture the map hovers near 0.5 everywhere and nothing passes (measured: 0.6 inside, 0.4
#: around on uniform noise; 0.89 to 0.995 inside, 0.02 to 0.19 around on the example photos)
SURROUND = 0.3


@dataclass
class ProposalSettings:
    """How automatic mode finds objects (shown as CLI flags and Find Objects widgets)."""

    max_objects: int = option(4, "At most this many objects (the largest are kept).", minimum=1, maximum=32,
                              step=1)
    min_size: float = option(0.01, "Smallest object, as a fraction of the image's area.", minimum=0.0,
                             maximum=0.5, step=0.001)
    threshold: float = option(0.5, "Saliency above which a pixel belongs to an object; lower finds more "
                                   "and fainter objects.", minimum=0.05, maximum=0.95, step=0.05)


@dataclass
class Proposals:
    """What :func:`find_objects` found in one image.

    Attributes:
        masks: ``[N,1,H,W]`` rough masks (1 = object), front to back; ``N`` may be 0.
        saliency: ``[1,1,H,W]`` the network's map in [0,1].
        message: one line saying what was found, or why nothing was.
    """

    masks: torch.Tensor
    saliency: torch.Tensor
    message: str


_MODEL = None


def saliency_model():
    """The bundled saliency network, loaded once per process (on the CPU)."""
    global _MODEL
    if _MODEL is None:
        from .saliency import load_saliency_model

        _MODEL = load_saliency_model()
    return _MODEL


def _components(binary: np.ndarray) -> list[np.ndarray]:
    count, labels = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8)
    return [labels == i for i in range(1, count)]


def _watershed(part: np.ndarray, relief: np.ndarray, cores: list[np.ndarray]) -> list[np.ndarray]:
    """``part`` shared among ``cores``: each pixel goes to the core it reaches first, climbing ``relief``."""
    markers = np.zeros(part.shape, np.int32)
    for i, core in enumerate(cores, start=1):
        markers[core] = i
    markers[~part] = -1
    scaled = (255 * relief / max(float(relief.max()), 1e-6)).astype(np.uint8)
    cv2.watershed(np.repeat(scaled[..., None], 3, axis=2), markers)
    regions = [(markers == i) & part for i in range(1, len(cores) + 1)]
    # watershed lines (-1) inside the part go to the region of the pixel above them
    lines = (markers == -1) & part
    for region in regions:
        region |= lines & np.roll(region, 1, axis=0)
    return regions


def _rests_on(region: np.ndarray, others: np.ndarray, reach: int) -> bool:
    """Whether ``region``'s bottom lies on ``others``: its lowest rows have another part right below.
    A part held up by another (a head on a body) belongs to it; a separate object has its own support."""
    rows = np.nonzero(region.any(axis=1))[0]
    bottom = region.copy()
    bottom[: rows.max() - max(1, (rows.max() - rows.min()) // 20)] = False
    below = np.zeros_like(region)
    for dy in range(1, reach + 1):
        below[dy:] |= bottom[:-dy]
    return bool((below & others).sum() > 0.5 * bottom.sum())


def _split(part: np.ndarray, saliency: np.ndarray, min_area: float) -> list[np.ndarray]:
    """``part`` as the objects in it: parts a higher saliency threshold separates (two objects
    meeting in a valley of the map), else blobs its shape separates (distance-transform
    watershed) that each stand on their own support. ``[part]`` when nothing separates it."""
    for level in SPLIT_LEVELS:
        cores = [c for c in _components(part & (saliency > level)) if c.sum() >= min_area]
        if len(cores) >= 2:
            return _watershed(part, 1.0 - saliency, cores)
    # the frame's edge bounds a cut-off object like its own outline does
    dist = cv2.distanceTransform(np.pad(part.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    reach = max(2, round(0.01 * max(part.shape)))
    for fraction in SHAPE_LEVELS:
        cores = [c for c in _components(dist > fraction * dist.max()) if c.sum() >= 0.05 * min_area]
        if len(cores) < 2:
            continue
        regions = _supported(_watershed(part, dist.max() - dist, cores), reach)
        if len(regions) >= 2:
            return regions
    return [part]


def _supported(regions: list[np.ndarray], reach: int) -> list[np.ndarray]:
    """The regions that stand on their own; each one resting on others joins the one it touches most."""
    resting = [_rests_on(r, np.logical_or.reduce([o for o in regions if o is not r]), reach) for r in regions]
    keep = [r for r, rests in zip(regions, resting) if not rests]
    for region, rests in zip(regions, resting):
        if rests and keep:
            touch = [int((_grow(region, reach) & k).sum()) for k in keep]
            keep[int(np.argmax(touch))] |= region
    return keep


def _as_tensor(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mask.astype(np.float32))[None, None]


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    """``mask`` dilated by a ``(2r+1)^2`` square (:func:`liwi_core.filters.dilate`)."""
    return dilate(_as_tensor(mask), r)[0, 0].numpy() > 0.5


def _stands_out(part: np.ndarray, saliency: np.ndarray) -> bool:
    """The network is sure of ``part`` and of what surrounds it (see :data:`CONFIDENT`, :data:`SURROUND`)."""
    ring = _grow(part, max(2, round(0.03 * max(part.shape)))) & ~part
    return float(saliency[part].mean()) >= CONFIDENT and (not ring.any() or float(saliency[ring].mean()) <= SURROUND)


def _is_thin(part: np.ndarray, side: int) -> bool:
    """Whiskers, wires, edges: most of the part disappears when eroded by 1% of the image."""
    t = _as_tensor(part)
    return float(erode(t, max(1, round(0.01 * side))).sum()) < 0.3 * float(t.sum())


@torch.no_grad()
def find_objects(image: torch.Tensor, settings: ProposalSettings | None = None, model=None) -> Proposals:
    """Salient objects of one image as rough masks, front to back (the one reaching lowest first).

    Args:
        image: ``[1,C,H,W]`` in [0,1] (C = 1, 3 or 4).
        settings: :class:`ProposalSettings` (default ones when None).
        model: a saliency network (:func:`liwi_core.saliency.load_saliency_model`); default
            the bundled one.
    """
    from .decompose import front_to_back
    from .saliency import saliency_map

    settings = check_settings(settings or ProposalSettings())
    model = model if model is not None else saliency_model()
    h, w = image.shape[-2:]
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = resize(image.float(), (max(1, round(h * scale)), max(1, round(w * scale))))
    saliency = saliency_map(model, small, normalize=False)
    sal = saliency[0, 0].cpu().numpy()
    min_area = settings.min_size * sal.size
    parts = []
    for part in _components(sal > settings.threshold):
        if part.sum() >= min_area:
            parts += [p for p in _split(part, sal, min_area) if p.sum() >= min_area]
    found = len(parts)
    parts = [p for p in parts if not _is_thin(p, max(sal.shape))]
    thin = found - len(parts)
    parts = [p for p in parts if _stands_out(p, sal)]
    vague = found - thin - len(parts)
    parts = sorted(parts, key=lambda p: -int(p.sum()))[: settings.max_objects]
    if not parts:
        peak = float(sal.max())
        why = (f"the saliency peaks at {peak:.2f}, below the threshold {settings.threshold}"
               if peak <= settings.threshold else
               "nothing salient stands out from its surroundings (texture or noise?)" if vague else
               f"what stands out is smaller than {settings.min_size:.1%} of the image or thin")
        return Proposals(torch.zeros((0, 1, h, w)), resize(saliency, (h, w)), f"no object found: {why}")
    masks = torch.from_numpy(np.stack(parts).astype(np.float32))[:, None]
    # a rough mask a little larger than the object, as a user would draw it; the engine snaps it
    grow = max(1, round(0.01 * max(sal.shape)))
    masks = (resize(dilate(masks, grow), (h, w), mode="bilinear") > 0.5).float()
    masks = masks[front_to_back(masks, "bottom")]
    dropped = [f"{n} {what}" for n, what in ((thin, "thin fragment(s)"), (vague, "vague region(s)")) if n]
    note = f" ({', '.join(dropped)} dropped)" if dropped else ""
    return Proposals(masks, resize(saliency, (h, w)), f"found {len(parts)} object(s){note}")
