"""ADD's agents: a planner that decides what each sample is made of, and a curator that
checks every composed sample and tells the planner to keep, retry or drop it.

Both are deterministic functions of the seed, the sample index and the attempt number,
so a run can be split over processes and resumed without changing its result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from ..errors import LiWiError
from ..filters import bounding_box, dilate, resize
from ..imageio import to_uint8
from ..layers import LayerStack
from ..metrics import recompose_psnr

__all__ = ["Source", "Plan", "plan_sample", "CuratorVerdict", "curate", "CuratorLimits", "sample_generator"]


@dataclass
class Source:
    """A usable source photo: its id (path relative to the image folder) and its masks' files."""

    id: str
    path: str
    masks: list[str] = field(default_factory=list)
    donors: list[int] | None = None  # masks whose object is whole in the photo (default: all)
    bottom_cut: list[int] = field(default_factory=list)  # donors cut only by the photo's bottom edge
    background_ok: bool = True       # little enough of it is hidden by its objects
    cutout: bool = False             # an RGBA cut-out: its alpha is the object, never a background

    @property
    def donor_masks(self) -> list[int]:
        return list(range(len(self.masks))) if self.donors is None else self.donors

    @property
    def is_donor(self) -> bool:
        """Photos with usable masks give foreground objects."""
        return bool(self.donor_masks)


@dataclass
class Plan:
    """What one sample is made of."""

    index: int
    attempt: int
    background: str
    objects: list[tuple[str, int]]  # (donor source id, mask index), back to front after placement
    seed: int


def sample_generator(seed: int, index: int, attempt: int) -> torch.Generator:
    """The random stream of one attempt at one sample: independent of every other sample."""
    digest = hashlib.sha256(f"liwi-add/{seed}/{index}/{attempt}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def plan_sample(sources: list[Source], seed: int, index: int, attempt: int,
                max_objects: int = 3, min_objects: int = 1) -> Plan:
    """Choose a background photo and 1..max_objects foreground objects for a sample.

    Backgrounds cycle through all sources in a seed-shuffled order, so a collection is
    used evenly; objects are drawn from the donors' masks, never from the background photo
    itself (it would paste an object back onto the place it was cut from).
    """
    if not sources:
        raise ValueError("no sources")
    # a cut-out is never a background: its hidden colours behind the alpha would become the scene
    backgrounds = [s for s in sources if s.background_ok] or [s for s in sources if not s.cutout]
    if not backgrounds:
        raise LiWiError("no usable background photo: every source is a cut-out (give --images a folder of photos)")
    order = torch.randperm(len(backgrounds), generator=sample_generator(seed, -1, 0)).tolist()
    g = sample_generator(seed, index, attempt)
    background = backgrounds[order[(index + attempt) % len(backgrounds)]]
    pool = [(s.id, m) for s in sources if s.id != background.id for m in s.donor_masks]
    if not pool:
        pool = [(s.id, m) for s in sources for m in s.donor_masks]
    count = int(torch.randint(min(min_objects, max_objects), max_objects + 1, (1,), generator=g))
    picks = torch.randint(0, len(pool), (count,), generator=g).tolist() if pool else []
    return Plan(index=index, attempt=attempt, background=background.id, objects=[pool[i] for i in picks],
                seed=int(torch.randint(0, 2**31 - 1, (1,), generator=g)))


@dataclass
class CuratorLimits:
    """Thresholds of the curator (all written to the run's config)."""

    min_psnr: float = 45.0          # recomposition of the 8-bit files vs the 8-bit composite
    min_alpha_area: float = 0.002   # object area as a fraction of the canvas
    max_hard_fill: float = 0.985    # alpha box almost full and no soft pixel: a pasted block
    max_shadow_area: float = 0.5    # fraction of the canvas a shadow may darken by > 10%
    min_visible: float = 0.4        # fraction of each object left visible by those in front
    min_score: float = 0.35


@dataclass
class CuratorVerdict:
    keep: bool
    reasons: list[str]
    score: float
    key: str


def _quantized(t: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(to_uint8(t)).permute(2, 0, 1)[None].float() / 255.0


def _lossless_psnr(stack: LayerStack, composite: torch.Tensor) -> float:
    """PSNR of the stack recomposed from its 8-bit files against the 8-bit composite."""
    from ..compositing import composite_layers

    layers = [(_quantized(l.rgba), _quantized(l.shadow)) for l in stack.layers]
    return recompose_psnr(composite_layers(_quantized(stack.background), layers), _quantized(composite))


def content_key(composite: torch.Tensor) -> str:
    """A perceptual hash (16x16 mean hash of the luminance): equal for near-duplicates."""
    small = resize(composite.mean(dim=1, keepdim=True), (16, 16))
    bits = (small > small.mean()).flatten().to(torch.uint8).tolist()
    return hashlib.sha1(bytes(bits)).hexdigest()[:16]


def curate(stack: LayerStack, composite: torch.Tensor, seen_keys: set[str],
           limits: CuratorLimits | None = None, open_bottom: list[bool] | None = None) -> CuratorVerdict:
    """Check one sample; every failed check adds a reason.

    Checks: the 8-bit files recompose to the composite (PSNR >= min_psnr); each alpha is
    neither empty nor a hard rectangular block; no object is cut off by the canvas edge;
    (``open_bottom[i]``: layer i is a bust, cut by the frame's bottom on purpose); each
    shadow darkens at most ``max_shadow_area`` of the canvas and mostly near its
    object; each object stays visible enough behind the ones in front; the sample is not a
    near-duplicate of one already kept. The quality score (0..1) is the mean of the
    objects' visibility, soft-edge presence and contrast against their surroundings.
    """
    limits = limits or CuratorLimits()
    reasons: list[str] = []
    h, w = stack.size
    psnr = _lossless_psnr(stack, composite)
    if psnr < limits.min_psnr:
        reasons.append(f"not lossless: {psnr:.1f} dB")
    scores = []
    for i, layer in enumerate(stack.layers):
        alpha = layer.alpha
        area = float(alpha.mean())
        if area < limits.min_alpha_area:
            reasons.append(f"layer {i}: alpha empty ({area:.4f} of the canvas)")
            continue
        box = bounding_box(alpha, 0.5)
        if box is None:
            reasons.append(f"layer {i}: alpha never above 0.5")
            continue
        y0, y1, x0, x1 = box
        inside = alpha[..., y0:y1, x0:x1]
        soft = float(((alpha > 0.02) & (alpha < 0.98)).float().sum() / (alpha > 0.02).float().sum())
        if float((inside > 0.98).float().mean()) > limits.max_hard_fill and soft < 0.002:
            reasons.append(f"layer {i}: alpha is a hard block")
        edges = [alpha[..., 0, :], alpha[..., :, 0], alpha[..., :, -1]]
        if not (open_bottom and open_bottom[i]):
            edges.append(alpha[..., -1, :])
        border = torch.cat(edges, dim=-1)
        if float(border.max()) > 0.5:
            reasons.append(f"layer {i}: object cut off by the canvas edge")
        darkened = (layer.shadow.mean(dim=1, keepdim=True) < 0.9).float()
        if float(darkened.mean()) > limits.max_shadow_area:
            reasons.append(f"layer {i}: shadow covers {float(darkened.mean()):.0%} of the frame")
        elif float(darkened.sum()) > 0:
            near = dilate((alpha > 0.5).float(), max(4, (y1 - y0)))
            if float((darkened * near).sum() / darkened.sum()) < 0.8:
                reasons.append(f"layer {i}: shadow detached from its object")
        covered = torch.zeros_like(alpha)
        for front in stack.layers[i + 1:]:
            covered = covered + (1 - covered) * front.alpha
        visible = float((alpha * (1 - covered)).sum() / alpha.sum())
        if visible < limits.min_visible:
            reasons.append(f"layer {i}: only {visible:.0%} visible")
        ring = (dilate((alpha > 0.5).float(), 6) - (alpha > 0.02).float()).clamp(0, 1)
        obj_mean = (composite * (alpha > 0.9)).sum(dim=(2, 3)) / (alpha > 0.9).sum().clamp_min(1)
        ring_mean = (composite * ring).sum(dim=(2, 3)) / ring.sum().clamp_min(1)
        contrast = min(1.0, float((obj_mean - ring_mean).abs().sum()) / 0.3)
        scores.append((visible + min(1.0, soft / 0.02) + contrast) / 3.0)
    score = sum(scores) / len(scores) if scores else 0.0
    if not scores:
        reasons.append("no object layer")
    elif score < limits.min_score:
        reasons.append(f"quality score {score:.2f} below {limits.min_score}")
    key = content_key(composite)
    if key in seen_keys:
        reasons.append("near-duplicate of a kept sample")
    return CuratorVerdict(keep=not reasons, reasons=reasons, score=score, key=key)
