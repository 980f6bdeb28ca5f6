"""Automatic mode: object proposals from the salient-object network, as rough masks.

The pretrained U²-Net small (:mod:`liwi_core.saliency`) marks what a photo is about. Its
map is thresholded and split into instances: connected parts, and parts that a higher
threshold separates (two objects touching in the map usually meet in a valley of it), and
an object standing in front of another, cut out along its outline inside the region when it
differs in colour and the network, zoomed on it, sees it alone. Slivers a split leaves along
an outline go back to the piece they belong to; small fragments are dropped, and thin ones
unless the network is sure of them and not of their surroundings (a candy cane stays, a wisp
of a vague region goes). Objects are ordered front to back by occlusion where they touch,
else by the ground line. Each proposal is a rough mask, so any engine then
decomposes it exactly as it decomposes a user's mask: automatic layers get the same alpha,
shadow and background quality as prompted ones.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .errors import LiWiError
from .filters import dilate, erode, lab_edges, resize
from .options import check_settings, option
from .precision import using_precision

__all__ = ["FIND_OBJECTS_OPTIONS", "ProposalSettings", "Proposals", "content_box", "find_objects", "proposal_model",
           "saliency_model", "split_numbers"]

#: proposals are found at most at this size (the network itself sees 320 px)
WORK_SIDE = 512
#: letterbox or pillarbox bars (:func:`content_box`): edge rows / columns whose pixels, all but
#: 1 - :data:`BORDER_SHARE` of them (a bird in a clear sky breaks the band), are within this of
#: the edge's colour (0-1 scale, any channel) ...
BORDER_TOLERANCE = 6 / 255
BORDER_SHARE = 0.995
#: ... ending at a row that differs from that colour on nearly all its pixels (a straight edge of
#: content along the whole side, not an object's top on a flat ground), by at least this (median)
BORDER_STEP = 0.08
#: thresholds tried above ``threshold`` to split touching objects
SPLIT_LEVELS = (0.7, 0.85, 0.95)
#: fractions of the largest inscribed radius that cut a shape into blobs, coarse to fine (0.5
#: too cut single objects at a neck on real photos: a camel, a gibbon, the Eiffel tower)
SHAPE_LEVELS = (0.4, 0.3, 0.2)
#: an object the network is sure of: mean saliency inside at least this ...
CONFIDENT = 0.8
#: ... and at most this in a ring around it (3% of the image wide): it stands out. On noise or
#: a texture the map hovers near 0.5 everywhere and nothing passes (measured: 0.6 inside, 0.4
#: around on uniform noise; 0.89 to 0.995 inside, 0.02 to 0.19 around on the example photos)
SURROUND = 0.3
#: the cut-finding side (px) and the depth of a silhouette's dent, as a fraction of the part's size
CUT_SIDE = 112
DENT = 0.04
MAX_DENTS = 6
#: a piece cut off is at least this fraction of its part ...
MIN_PIECE = 0.1
#: ... and shares at most this much of its colours with the rest (Bhattacharyya coefficient)
SAME_COLOURS = 0.55
#: a proposer's core (an object less its rim) is at least this fraction of the smallest object
MIN_CORE = 0.2
#: a proposer's edge probability above which a pixel is rim, not core
EDGE_CUT = 0.5
#: automatic mode's own network, where bundled (:func:`proposal_model`)
PROPOSER_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "liwi-proposer"
#: one touching object is in front of another when it fills this much more of the other's bite
OCCLUSION = 0.05
#: two objects whose lowest points are within this fraction of the image's height stand level:
#: the ground line does not say which is nearer, the bite does
LEVEL = 0.02


#: the settings LiWi Find Objects shows as widgets, in this order (later ones last, so saved
#: workflows keep their widget values in place); the node always offers the cuts it does not take
FIND_OBJECTS_OPTIONS = ("max_objects", "min_size", "threshold", "split")


@dataclass
class ProposalSettings:
    """How automatic mode finds objects (shown as CLI flags and Find Objects widgets)."""

    max_objects: int = option(4, "At most this many objects (the largest are kept).", minimum=1, maximum=32,
                              step=1)
    min_size: float = option(0.01, "Smallest object, as a fraction of the image's area.", minimum=0.0,
                             maximum=0.5, step=0.001)
    threshold: float = option(0.5, "Saliency above which a pixel belongs to an object; lower finds more "
                                   "and fainter objects.", minimum=0.05, maximum=0.95, step=0.05)
    split: str = option("", "Offered cuts to take, by number (1, or 1,3): each offered piece becomes an object "
                            "of its own, cut from the object that held it. Cuts are offered where an object may "
                            "hold another in front of it but the two share too many colours to be sure; the "
                            "numbers are those of the same photo found with the same settings.")
    offer_cuts: bool = option(False, "Also look for the cuts that were not taken (one more network look per "
                                     "candidate) and say them in the message, numbered for split.")


@dataclass
class Proposals:
    """What :func:`find_objects` found in one image.

    Attributes:
        masks: ``[N,1,H,W]`` rough masks (1 = object), front to back; ``N`` may be 0.
        saliency: ``[1,1,H,W]`` the network's map in [0,1].
        message: one line saying what was found, or why nothing was.
        offered: ``[K,1,H,W]`` rough masks of the pieces offered as cuts (``split`` numbers them
            1..K, taken or not), or None where none were looked for (``offer_cuts`` and ``split``
            both unset).
        offered_in: for each offered piece, the number (1-based, front to back) of the object
            that holds it as found without any split.
    """

    masks: torch.Tensor
    saliency: torch.Tensor
    message: str
    offered: torch.Tensor | None = None
    offered_in: tuple[int, ...] = ()


_MODEL = None
_PROPOSER: list = []


def proposal_model():
    """The network automatic mode finds objects with, loaded once per process (on the CPU): the
    bundled proposer (:data:`PROPOSER_CHECKPOINT`, U²-Net small fine-tuned to mark objects and
    the rims between them, :mod:`liwi_core.train_proposer`) where it is there, else the
    pretrained saliency network."""
    if not _PROPOSER:
        from .saliency import load_saliency_model

        _PROPOSER.append(load_saliency_model(PROPOSER_CHECKPOINT) if PROPOSER_CHECKPOINT.is_dir()
                         else saliency_model())
    return _PROPOSER[0]


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
    # watershed lines (-1) inside the part go to a neighbouring region (above, left, below, right)
    lines = (markers == -1) & part
    for _ in range(2):  # a pixel where two lines cross has its neighbours on lines too
        for dy, dx in ((1, 0), (0, 1), (-1, 0), (0, -1)):
            for region in regions:
                shifted = np.zeros_like(region)
                shifted[max(dy, 0):region.shape[0] + min(dy, 0), max(dx, 0):region.shape[1] + min(dx, 0)] = \
                    region[max(-dy, 0):region.shape[0] + min(-dy, 0), max(-dx, 0):region.shape[1] + min(-dx, 0)]
                taken = lines & shifted
                region |= taken
                lines &= ~taken
    return regions


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb, np.float32), cv2.COLOR_RGB2Lab)


def _gradient(lab: np.ndarray) -> np.ndarray:
    """Colour edge strength of an ``[H,W,3]`` Lab array (:func:`liwi_core.filters.lab_edges`)."""
    t = torch.from_numpy(np.ascontiguousarray(lab, np.float32)).permute(2, 0, 1)[None]
    return lab_edges(t)[0, 0].numpy()


_STEPS = [(-1, -1, 1.4142), (-1, 0, 1.0), (-1, 1, 1.4142), (0, -1, 1.0), (0, 1, 1.0), (1, -1, 1.4142),
          (1, 0, 1.0), (1, 1, 1.4142)]


def _cheapest_path(cost: np.ndarray, start: tuple[int, int], targets: np.ndarray) -> np.ndarray | None:
    """The cheapest path from ``start`` to any of ``targets`` (Dijkstra on the 8-connected grid,
    stopping at the first target reached; a step costs the mean of both pixels' costs times its
    length; ``inf`` is a wall), as a mask; None when no target can be reached."""
    h, w = cost.shape
    costs = cost.ravel().tolist()
    goal = targets.ravel().tolist()
    total = [float("inf")] * (h * w)
    prev = [-1] * (h * w)
    first = start[0] * w + start[1]
    total[first] = 0.0
    heap = [(0.0, first)]
    while heap:
        d, i = heapq.heappop(heap)
        if d > total[i]:
            continue
        if goal[i]:
            path = np.zeros(h * w, bool)
            while i >= 0:
                path[i] = True
                i = prev[i]
            return path.reshape(h, w)
        y, x = divmod(i, w)
        ci = costs[i]
        for dy, dx, step in _STEPS:
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w:
                j = yy * w + xx
                nd = d + step * 0.5 * (ci + costs[j])
                if nd < total[j]:
                    total[j], prev[j] = nd, i
                    heapq.heappush(heap, (nd, j))
    return None


def _colour_overlap(lab: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya coefficient of the colour histograms of regions ``a`` and ``b`` (1 = same colours)."""
    bins = np.stack([np.clip(lab[..., 0] / 100 * 8, 0, 7), np.clip((lab[..., 1] + 64) / 16, 0, 7),
                     np.clip((lab[..., 2] + 64) / 16, 0, 7)], -1).astype(np.int32)
    index = bins[..., 0] * 64 + bins[..., 1] * 8 + bins[..., 2]
    ha = np.bincount(index[a], minlength=512) / max(1, int(a.sum()))
    hb = np.bincount(index[b], minlength=512) / max(1, int(b.sum()))
    return float(np.sqrt(ha * hb).sum())


def _occludes(a: np.ndarray, b: np.ndarray) -> float:
    """How much ``a`` looks in front of ``b`` where they meet (> 0: in front): an object hidden in
    part has a bite taken out of its outline, which the one in front fills, so ``a`` covers more of
    ``b``'s convex hull than ``b`` covers of ``a``'s (fractions of each one's own area)."""
    def hull(m):
        pts = cv2.findNonZero(m.astype(np.uint8))
        out = np.zeros(m.shape, np.uint8)
        cv2.fillConvexPoly(out, cv2.convexHull(pts), 1)
        return out.astype(bool)
    return float((hull(b) & a).sum()) / max(1, int(a.sum())) - float((hull(a) & b).sum()) / max(1, int(b.sum()))


def _dents(small: np.ndarray, frame: np.ndarray, side: int) -> list[tuple[int, int]]:
    """Concave corners of ``small``'s outline, deepest first: points that lie at least
    :data:`DENT` ``* side`` inside the chord between the outline points a few steps either side
    (at two spans, so a dent is found even when a deeper one shares its stretch of convex hull).
    Points on the frame's edge are no corners."""
    contours, _ = cv2.findContours(small.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea)[:, 0].astype(np.float32)
    n = len(c)
    found: dict[int, float] = {}
    for span in (max(3, round(0.06 * side)), max(4, round(0.12 * side))):
        if 2 * span >= n:
            continue
        before, after = np.roll(c, span, axis=0), np.roll(c, -span, axis=0)
        chord = after - before
        length = np.maximum(np.hypot(chord[:, 0], chord[:, 1]), 1e-6)
        depth = np.abs(chord[:, 0] * (c[:, 1] - before[:, 1]) - chord[:, 1] * (c[:, 0] - before[:, 0])) / length
        mid = np.round((before + after) / 2).astype(int)
        outside = ~small[np.clip(mid[:, 1], 0, small.shape[0] - 1), np.clip(mid[:, 0], 0, small.shape[1] - 1)]
        xs, ys = c[:, 0].astype(int), c[:, 1].astype(int)
        depth = np.where(outside & ~frame[ys, xs], depth, 0.0)
        for i in np.argsort(-depth):
            if depth[i] < DENT * side:
                break
            near = [j for j in found if min(abs(j - i), n - abs(j - i)) <= span]
            if not near:
                found[int(i)] = float(depth[i])
    order = sorted(found, key=lambda i: -found[i])
    return [(int(c[i, 1]), int(c[i, 0])) for i in order]


def _cut_candidates(part: np.ndarray, lab: np.ndarray, grad: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Ways to cut ``part`` in two along an outline inside it: from each deep dent of its silhouette
    (where two overlapping objects' outlines cross) the path along the strongest colour edges to
    another dent or to the frame. Returns ``(piece, other piece, edge strength)`` at ``part``'s
    size; the strength is the cut's mean edge strength relative to the part's strong edges."""
    ys, xs = np.nonzero(part)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = part[y0:y1, x0:x1]
    s = min(1.0, CUT_SIDE / max(crop.shape))
    size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
    small = cv2.resize(crop.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
    # edges between regions, seen at the cut's scale: an object's outline stays, fine texture averages out
    g = _gradient(cv2.resize(lab[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA))
    if small.sum() < 50:
        return []
    g = np.clip(g / max(float(np.percentile(g[small], 98)), 1e-6), 0, 1)
    side = max(small.shape)
    # distance to the outline; the frame's edge is no outline (pads repeat the crop's edge)
    edge = (y0 == 0, y1 == part.shape[0], x0 == 0, x1 == part.shape[1])
    padded = np.pad(small, 1)
    for k, (sl, src) in enumerate(((np.s_[0, :], np.s_[1, :]), (np.s_[-1, :], np.s_[-2, :]),
                                   (np.s_[:, 0], np.s_[:, 1]), (np.s_[:, -1], np.s_[:, -2]))):
        if edge[k]:
            padded[sl] = padded[src]
    inside = cv2.distanceTransform(padded.astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    band = max(2.0, 0.03 * side)
    # the strongest edges are far cheaper than shading and texture; the outline's band costs as
    # much as a flat region, so a cut runs inside the part
    cost = 1.0 / (g * g + 0.01)
    cost[inside <= band] = 100.0
    cost[~small] = np.inf
    frame = np.zeros_like(small)
    if edge[0]: frame[0] = small[0]
    if edge[1]: frame[-1] = small[-1]
    if edge[2]: frame[:, 0] = small[:, 0]
    if edge[3]: frame[:, -1] = small[:, -1]
    dents = _dents(small, frame, side)
    out = []
    for start in dents[:MAX_DENTS]:
        targets = frame.copy()
        for other in dents:
            targets[other] = True
        yy, xx = np.mgrid[: small.shape[0], : small.shape[1]]
        targets &= (yy - start[0]) ** 2 + (xx - start[1]) ** 2 >= (0.15 * side) ** 2
        path = _cheapest_path(cost, start, targets & small)
        if path is None:
            continue
        count, labels = cv2.connectedComponents((small & ~path).astype(np.uint8), connectivity=4)
        areas = np.bincount(labels.ravel(), minlength=count)[1:]
        if count < 3:
            continue
        a, b = np.argsort(areas)[::-1][:2] + 1
        interior = path & (inside > band)
        strength = float(g[interior].mean()) if interior.any() else 0.0
        pieces = []
        for label in (a, b):
            m = cv2.resize((labels == label).astype(np.uint8), (crop.shape[1], crop.shape[0]),
                           interpolation=cv2.INTER_NEAREST).astype(bool)
            full = np.zeros_like(part)
            full[y0:y1, x0:x1] = erode(_as_tensor(m), max(1, round(1 / s)))[0, 0].numpy() > 0.5
            pieces.append(full & part)
        if min(p.sum() for p in pieces) == 0:
            continue
        first, second = _watershed(part, grad, pieces)
        out.append((first, second, strength))
    return out


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


def _zoomed(model, image: torch.Tensor, piece: np.ndarray, rest: np.ndarray) -> tuple[float, float]:
    """The network's second look, at ``piece``'s box (15% margin) alone: its mean saliency inside
    ``piece`` and inside the part of ``rest`` in that box."""
    from .saliency import saliency_map

    ys, xs = np.nonzero(piece)
    h, w = piece.shape
    my, mx = int(0.15 * (ys.max() - ys.min() + 1)), int(0.15 * (xs.max() - xs.min() + 1))
    y0, y1 = max(0, ys.min() - my), min(h, ys.max() + my + 1)
    x0, x1 = max(0, xs.min() - mx), min(w, xs.max() + mx + 1)
    zoom = saliency_map(model, image[:, :, y0:y1, x0:x1], normalize=False)[0, 0].cpu().numpy()
    inside, other = piece[y0:y1, x0:x1], rest[y0:y1, x0:x1]
    return float(zoom[inside].mean()), float(zoom[other].mean()) if other.any() else 0.0


def _separate(part: np.ndarray, image: torch.Tensor, lab: np.ndarray, grad: np.ndarray, model,
              min_area: float, offer: bool = False) -> tuple[list[np.ndarray], np.ndarray | None]:
    """``part`` as two objects when one stands in front of the other: a cut along an outline inside
    it (:func:`_cut_candidates`) whose smaller side is big enough, differs in colour from the other
    side, and that the network, looking at that side alone, is sure of while the other side in
    view fades (:data:`CONFIDENT`, :data:`SURROUND`). A limb, a head or a pattern keeps its colours
    or its salient surroundings and stays whole. ``([part], offered)`` when no cut passes, where
    ``offered`` is, with ``offer``, the smaller side of the first cut that fails the colour test
    alone (the astronaut's helmet, whose black and white her suit shares), else None."""
    candidates = []
    for a, b, _ in _cut_candidates(part, lab, grad):
        piece, rest = (a, b) if a.sum() <= b.sum() else (b, a)
        if piece.sum() < max(min_area, MIN_PIECE * part.sum()):
            continue
        if _colour_overlap(lab, a, b) > SAME_COLOURS:
            candidates.append((piece, rest))
            continue
        inside, around = _zoomed(model, image, piece, rest)
        if inside >= CONFIDENT and around <= SURROUND:
            return [piece, rest], None
    for piece, rest in candidates if offer else ():
        inside, around = _zoomed(model, image, piece, rest)
        if inside >= CONFIDENT and around <= SURROUND:
            return [part], piece
    return [part], None


def _order(parts: list[np.ndarray], reach: int, level: int = 0) -> list[int]:
    """Front to back: by the ground line (the one reaching lowest first), except where two touch,
    stand level (lowest points at most ``level`` px apart, as when the frame's bottom cuts both:
    an object held in front of a person in a portrait) and one plainly fills the other's bite
    (:func:`_occludes`): that one goes in front. Where one reaches clearly lower, the ground
    line decides: the bite of two rough proposals split from one region of the map is often the
    split's, not the scene's (on the four tuning sets it put the farther one in front in 8 of 19
    touching pairs, the ground line in none; docs/automatic-mode.md, Front to back)."""
    lowest = [int(np.nonzero(p.any(axis=1))[0].max()) for p in parts]
    order = sorted(range(len(parts)), key=lambda i: -lowest[i])
    for _ in range(len(parts)):
        moved = False
        for i in range(len(order)):
            for j in range(i + 1, len(order)):
                back, front = parts[order[i]], parts[order[j]]
                if abs(lowest[order[i]] - lowest[order[j]]) > level:
                    continue
                if (_grow(front, reach) & back).any() and _occludes(front, back) > OCCLUSION:
                    order.insert(i, order.pop(j))
                    moved = True
                    break
            if moved:
                break
        if not moved:
            break
    return order


def _as_tensor(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mask.astype(np.float32))[None, None]


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    """``mask`` dilated by a ``(2r+1)^2`` square (:func:`liwi_core.filters.dilate`)."""
    return dilate(_as_tensor(mask), r)[0, 0].numpy() > 0.5


def _stands_out(part: np.ndarray, saliency: np.ndarray, others: np.ndarray | None = None) -> bool:
    """The network is sure of ``part`` and of what surrounds it (see :data:`CONFIDENT`, :data:`SURROUND`);
    ``others`` (objects found beside it, which may touch it) are no surroundings, unless they are
    all it has. A part with nothing around it (the map above the threshold over the whole frame,
    as on small noise images, or a piece of such a region hemmed in by the others) has shown
    nothing to stand out from and does not; no part of the 436 training photos has an empty ring."""
    ring = _grow(part, max(2, round(0.03 * max(part.shape)))) & ~part
    if others is not None and (ring & ~others).any():
        ring &= ~others
    return (float(saliency[part].mean()) >= CONFIDENT and bool(ring.any())
            and float(saliency[ring].mean()) <= SURROUND)


def _is_thin(part: np.ndarray, side: int) -> bool:
    """Whiskers, wires, edges: most of the part disappears when eroded by 1% of the image."""
    t = _as_tensor(part)
    return float(erode(t, max(1, round(0.01 * side))).sum()) < 0.3 * float(t.sum())


def _parts_of_saliency(sal: np.ndarray, small: torch.Tensor, threshold: float, min_area: float,
                       model, offer: bool = False) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Objects in a one-channel saliency map: connected parts split where the map has a valley or
    the shape a waist (:func:`_split`), and an object standing in front of another cut out of
    their region along its outline (:func:`_separate`). Returns the parts and, for each, the
    piece offered as a cut of it (with ``offer``; else None)."""
    parts = []
    for part in _components(sal > threshold):
        if part.sum() >= min_area:
            parts += _rejoin_thin([p for p in _split(part, sal, min_area) if p.sum() >= min_area],
                                  max(sal.shape))
    rgb = small[0, :3] if small.shape[1] >= 3 else small[0, :1].expand(3, -1, -1)
    lab = _lab(rgb.permute(1, 2, 0).cpu().numpy())
    grad = _gradient(lab)
    # a part that may hold an object in front of another (the checks in find_objects decide what is kept)
    every = np.logical_or.reduce(parts) if parts else None
    found, offers = [], []
    for p in parts:
        if _stands_out(p, sal, every & ~p) and not _is_thin(p, max(sal.shape)):
            pieces, offered = _separate(p, small, lab, grad, model, min_area, offer)
        else:
            pieces, offered = [p], None
        found += pieces
        offers += [offered] * len(pieces)
    return found, offers


def _rejoin_thin(pieces: list[np.ndarray], side: int) -> list[np.ndarray]:
    """The pieces one connected part was split into, with the thin ones (:func:`_is_thin`) given
    back to the piece they touch most: a split leaves slivers along an outline (a camel's legs, a
    flower's rim) that are fragments of their neighbour, not objects. When every piece is thin,
    the split cut a thin object apart: it is one piece again."""
    if len(pieces) < 2:
        return pieces
    thin = [_is_thin(p, side) for p in pieces]
    if all(thin):
        return [np.logical_or.reduce(pieces)]
    kept = [p.copy() for p, t in zip(pieces, thin) if not t]
    for piece, is_thin in zip(pieces, thin):
        if is_thin:
            grown = _grow(piece, 2)
            touch = [int((grown & k).sum()) for k in kept]
            if max(touch) > 0:
                kept[int(np.argmax(touch))] |= piece
            else:
                kept.append(piece)
    return kept


def _parts_between_edges(objects: np.ndarray, edges: np.ndarray, min_area: float) -> list[np.ndarray]:
    """Objects from a proposer's two maps: each connected region of ``objects`` is shared among the
    cores its ``edges`` (probability) leave when taken away, by a watershed climbing the edges;
    a core smaller than :data:`MIN_CORE` of ``min_area`` is a crumb of an edge, not an object."""
    parts = []
    for part in _components(objects):
        if part.sum() < min_area:
            continue
        cores = [c for c in _components(part & (edges < EDGE_CUT)) if c.sum() >= MIN_CORE * min_area]
        if len(cores) < 2:
            parts.append(part)
            continue
        parts += [r for r in _watershed(part, edges, cores) if r.sum() >= min_area]
    return parts


@torch.no_grad()
def find_objects(image: torch.Tensor, settings: ProposalSettings | None = None, model=None) -> Proposals:
    """Salient objects of one image as rough masks, front to back (:func:`_order`: one filling a
    touching one's bite in front of it, else the one reaching lowest first).

    Args:
        image: ``[1,C,H,W]`` in [0,1] (C = 1, 3 or 4).
        settings: :class:`ProposalSettings` (default ones when None).
        model: a :class:`~liwi_core.saliency.U2NetP`: a saliency network (one output channel)
            or a proposer (two: objects and their rims, :mod:`liwi_core.train_proposer`);
            default :func:`proposal_model`.
    """
    settings = check_settings(settings or ProposalSettings())
    model = model if model is not None else proposal_model()
    h, w = image.shape[-2:]
    # letterbox bars are no part of the photo, and shown them the network sees another picture
    # (a barred cheetah was lost)
    y0, y1, x0, x1 = content_box(image)
    # the thresholds below were chosen on float32 maps, and in bfloat16 a few of their decisions
    # flip (photo tuning scenes: matched IoU 0.758 -> 0.741); one photo's few passes stay exact
    with using_precision("float32"):
        found = _find_objects(image[..., y0:y1, x0:x1], settings, model)
    if (y0, y1, x0, x1) == (0, h, 0, w):
        return found
    pad = (x0, w - x1, y0, h - y1)
    return Proposals(F.pad(found.masks, pad), F.pad(found.saliency, pad), found.message,
                     None if found.offered is None else F.pad(found.offered, pad), found.offered_in)


def content_box(image: torch.Tensor) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``, end exclusive: ``image`` ``[1,C,H,W]`` in [0,1] less letterbox or
    pillarbox bars, each side on its own. A side's band is the edge rows (columns) of the edge
    row's own colour (its median; all but 1 - :data:`BORDER_SHARE` of their pixels within
    :data:`BORDER_TOLERANCE` of it), kept only where the first row past it differs from that
    colour on at least 95% of its pixels, by :data:`BORDER_STEP` or more: a straight edge of
    content along the whole side. On a flat ground with an object on it the rows above the
    object are uniform too, but the first row past them is mostly ground, so nothing is taken
    off; neither is a clear sky's slow gradient. The whole image when no side has such a band,
    or when less than 16 px would be left."""
    h, w = image.shape[-2:]
    rgb = image[0, :3].float() if image.shape[1] >= 3 else image[0, :1].float()

    def band(lines, count: int) -> int:
        # lines(i, j): the ``[j - i, C, L]`` rows (or columns) i..j-1 counted from one edge inward,
        # read in growing chunks, since most photos end their band at the first row (the whole of
        # a 6000x4000 photo read four times took 1.6 s)
        colour = lines(0, 1)[0].median(dim=-1).values[:, None]
        start, chunk = 0, 8
        while start < count:
            step = (lines(start, min(count, start + chunk)) - colour).abs().amax(dim=1)
            near = (step <= BORDER_TOLERANCE).float().mean(dim=-1)
            past = torch.nonzero(near < BORDER_SHARE).flatten()
            if len(past):
                i = int(past[0])
                edge = start + i > 0 and float(near[i]) <= 0.05 and float(step[i].median()) >= BORDER_STEP
                return start + i if edge else 0
            start, chunk = start + chunk, chunk * 2
        return 0

    # a frame on all four sides is not taken off: each side's first row of content holds the
    # other sides' bands, so none ends at a straight edge (nor would a box product on white)
    y0 = band(lambda i, j: rgb[:, i:j].permute(1, 0, 2), h)
    y1 = h - band(lambda i, j: rgb[:, h - j:h - i].flip(1).permute(1, 0, 2), h)
    x0 = band(lambda i, j: rgb[:, :, i:j].permute(2, 0, 1), w)
    x1 = w - band(lambda i, j: rgb[:, :, w - j:w - i].flip(2).permute(2, 0, 1), w)
    if y1 - y0 < 16 or x1 - x0 < 16:
        return 0, h, 0, w
    return y0, y1, x0, x1


def _find_objects(image: torch.Tensor, settings: ProposalSettings, model) -> Proposals:
    from .saliency import saliency_map

    h, w = image.shape[-2:]
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = resize(image.float(), (max(1, round(h * scale)), max(1, round(w * scale))))
    # the network looks at the photo itself (resized straight to its input, as rembg does), so
    # that an engine zooming on an object that fills the frame gives it the same input again
    maps = saliency_map(model, image, normalize=False, size=tuple(small.shape[-2:]))
    saliency = maps[:, :1]
    sal = saliency[0, 0].cpu().numpy()
    min_area = settings.min_size * sal.size
    chosen = split_numbers(settings.split)
    offer = settings.offer_cuts or bool(chosen)
    if maps.shape[1] == 2:  # a proposer: the objects, and the rims that part touching ones
        parts = _parts_between_edges(sal > settings.threshold, maps[0, 1].cpu().numpy(), min_area)
        offers = [None] * len(parts)
    else:
        parts, offers = _parts_of_saliency(sal, small, settings.threshold, min_area, model, offer)
    # a thin part is kept only when the network is sure of it and not of what surrounds it (a
    # candy cane, a syringe, an insect's legs); a thin fragment of a vague region is dropped
    every = np.logical_or.reduce(parts) if parts else None
    standing = [_stands_out(p, sal, every & ~p) for p in parts]
    thin = sum(1 for p, ok in zip(parts, standing) if not ok and _is_thin(p, max(sal.shape)))
    vague = standing.count(False) - thin
    kept = sorted((i for i, ok in enumerate(standing) if ok), key=lambda i: -int(parts[i].sum()))
    kept = kept[: settings.max_objects]
    if not kept:
        if chosen:
            raise LiWiError(f"split {settings.split}: no cut was offered (no object found)")
        peak = float(sal.max())
        why = (f"the saliency peaks at {peak:.2f}, below the threshold {settings.threshold}"
               if peak <= settings.threshold else
               "nothing salient stands out from its surroundings (texture or noise?)" if vague else
               f"what stands out is smaller than {settings.min_size:.1%} of the image or thin")
        return Proposals(torch.zeros((0, 1, h, w)), resize(saliency, (h, w)), f"no object found: {why}",
                         torch.zeros((0, 1, h, w)) if offer else None)
    reach, level = max(2, round(0.01 * max(sal.shape))), round(LEVEL * sal.shape[0])
    parts, offers = zip(*[(parts[kept[i]], offers[kept[i]]) for i in _order([parts[i] for i in kept], reach, level)])
    # offered cuts are numbered front to back, as found without any split, so that a number
    # means the same piece when the photo is found again to take it
    offered = [(j, piece) for j, piece in enumerate(offers) if piece is not None]
    if any(k > len(offered) for k in chosen):
        numbers = "" if not offered else " (number 1)" if len(offered) == 1 else f" (numbers 1-{len(offered)})"
        raise LiWiError(f"split {settings.split}: only {len(offered)} cut(s) offered{numbers}")
    found = list(parts)
    if chosen:
        for k in chosen:
            j, piece = offered[k - 1]
            found[j] = found[j] & ~piece
            found.append(piece)
        found = [found[i] for i in _order(found, reach, level)]
    # a rough mask a little larger than the object, as a user would draw it; the engine snaps it
    grow = max(1, round(0.01 * max(sal.shape)))

    def rough(pieces: list[np.ndarray], behind: bool = False) -> torch.Tensor:
        if not pieces:
            return torch.zeros((0, 1, h, w))
        masks = torch.from_numpy(np.stack(pieces).astype(np.float32))[:, None]
        grown = dilate(masks, grow)
        if behind:
            # an object's margin stops at the objects in front of it: the engine completes a layer
            # under those where its mask goes on (exact.hidden_part), and a margin is no shape, so
            # it left an opaque band along the front object's outline (the astronaut's layer kept
            # an arc of her helmet's rim, over the wall)
            grown = grown * ((torch.cumsum(masks, 0) - masks) < 0.5)
        return (resize(grown, (h, w), mode="bilinear") > 0.5).float()

    dropped = [f"{n} {what}" for n, what in ((thin, "thin fragment(s)"), (vague, "vague region(s)")) if n]
    note = f" ({', '.join(dropped)} dropped)" if dropped else ""
    message = f"found {len(found)} object(s){note}"
    if offer:
        message += _offers_message(offered, parts, chosen)
    return Proposals(rough(found, behind=True), resize(saliency, (h, w)), message,
                     rough([piece for _, piece in offered]) if offer else None,
                     tuple(j + 1 for j, _ in offered))


def split_numbers(text: str) -> tuple[int, ...]:
    """The offered cuts a ``split`` setting names (``"1"``, ``"1,3"``; blank: none), sorted, or a
    one-line :class:`LiWiError`."""
    words = [w.strip() for w in str(text).replace(";", ",").split(",")]
    if not any(words):
        return ()
    # ASCII digits only: str.isdigit() also takes superscripts, which int() refuses
    if not all(w.isascii() and w.isdigit() and int(w) > 0 for w in words):
        raise LiWiError(f"split {text!r}: give offered cut numbers separated by commas, such as 1 or 1,3")
    return tuple(sorted({int(w) for w in words}))


def _offers_message(offered: list[tuple[int, np.ndarray]], parts, chosen: tuple[int, ...]) -> str:
    if not offered:
        return "; no cut offered"
    said = [f"{k}: {int(round(100 * piece.sum() / parts[j].sum()))}% of object {j + 1}"
            + (", taken" if k in chosen else "") for k, (j, piece) in enumerate(offered, 1)]
    return f"; {len(offered)} cut(s) offered, split takes them by number ({'; '.join(said)})"
