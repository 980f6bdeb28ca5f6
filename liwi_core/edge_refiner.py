"""The edge refiner: a small full-resolution network that moves an alpha's edge onto the object's.

On the tuning scenes about 70% of the alpha IoU the refined engine loses lies within 3 px of the
true edge, missed and extra alike (the engine's edge is off by a pixel or two, not too large or
too small). The refiner cannot reach it: it sees the object's region at 256 px, and edge
corrections learnt there (tried, ``alpha_band``) made the full-size edges worse. This network
runs at the photo's own resolution, only on the tiles around the edge, with a receptive field of
about 20 px. It sees the image and the alpha and predicts a correction of the alpha in logit
space, zero farther than ``band`` pixels from the alpha's 0.5 level; its output layer starts at
zero, so an untrained edge refiner changes nothing.

Training (``python -m liwi_core.edge_refiner examples|fit``): for each object of an ADD sample,
a prompt of a random kind, the classical engine's answer on the object's region
(:func:`~liwi_core.engines.classical.peel_region`) and the true alpha, at full size; patches
centred on the edge band.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .errors import LiWiError
from .filters import dilate, erode
from .refiner import correct_alpha

__all__ = ["EdgeRefiner", "edge_band", "fit", "make_examples", "refine_edges"]

def edge_band(alpha: torch.Tensor, band: int) -> torch.Tensor:
    """``[B,1,H,W]``: 1 within ``band`` pixels (a square) of ``alpha``'s 0.5 level, else 0."""
    solid = (alpha > 0.5).to(alpha.dtype)
    return dilate(solid, band) - erode(solid, band)


class EdgeRefiner(ModelMixin, ConfigMixin):
    """Image ``[B,3,H,W]`` and alpha ``[B,1,H,W]`` (both in [0,1]) -> alpha correction in logit
    space ``[B,1,H,W]``, zero outside :func:`edge_band`.

    Args:
        channels: width of every layer.
        dilations: one 3x3 convolution per entry, with that dilation (the receptive field is
            ``1 + 2 * sum(dilations)`` pixels).
        band: half-width in pixels of the band the correction may touch.
        sees_prompt: the user's rough mask is a fifth input (where it lies beyond or inside the
            edge says which way the edge may have to move).
    """

    @register_to_config
    def __init__(self, channels: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 2, 1), band: int = 3,
                 sees_prompt: bool = False):
        super().__init__()
        layers, cin = [], 5 if sees_prompt else 4
        for d in dilations:
            layers += [nn.Conv2d(cin, channels, 3, padding=d, dilation=d), nn.SiLU()]
            cin = channels
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def halo(self) -> int:
        """How far (px) the network looks from a pixel."""
        return sum(self.config.dilations)

    def forward(self, image: torch.Tensor, alpha: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        """``prompt`` ``[B,1,H,W]``: the rough mask, for a network that sees it (else ignored)."""
        planes = [image, alpha] + ([prompt] if self.config.sees_prompt else [])
        x = torch.cat(planes, dim=1) * 2 - 1
        return self.head(self.body(x)) * edge_band(alpha, self.config.band)


#: the refined engine hands an object to the network only when the photo's edge along its alpha is
#: at most this blurred (:func:`~liwi_core.matting.edge_blur`, Gaussian sigma in px): trained on
#: cut-outs with hard edges, it hardens a soft one (a defocused, moving or furry object), where it
#: gains little on a sharp one. Read on the photo tuning scenes' objects: nine in ten below 0.60;
#: on the same objects out of focus by 1-3 px (benchmarks/dev-soft), nine in ten above 0.80
MAX_EDGE_BLUR = 0.75


@torch.no_grad()
def refine_edges(model: EdgeRefiner, image: torch.Tensor, alpha: torch.Tensor, prompt: torch.Tensor | None = None,
                 tile: int = 128) -> torch.Tensor:
    """``alpha`` ``[1,1,H,W]`` with its edge corrected by ``model`` on ``image`` ``[1,3,H,W]`` (and the
    rough ``prompt`` ``[1,1,H,W]``, for a model that sees it); the network runs only on the tiles
    that hold part of the edge band (with their halo), so the cost follows the edge's length,
    not the photo's size. Unchanged outside the band."""
    if model.config.sees_prompt and prompt is None:
        raise LiWiError("this edge refiner needs the rough mask (prompt)")
    band = edge_band(alpha, model.config.band)
    if not bool(band.any()):
        return alpha
    param = next(model.parameters())
    h, w = alpha.shape[-2:]
    halo = model.halo
    correction = torch.zeros_like(alpha)
    busy = F.max_pool2d(band, tile, stride=tile, ceil_mode=True)[0, 0] > 0
    for ty, tx in busy.nonzero().tolist():
        y0, x0 = ty * tile, tx * tile
        y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
        cy0, cx0, cy1, cx1 = max(0, y0 - halo), max(0, x0 - halo), min(h, y1 + halo), min(w, x1 + halo)
        window = (Ellipsis, slice(cy0, cy1), slice(cx0, cx1))
        out = model(image[window].to(param), alpha[window].to(param),
                    None if prompt is None else prompt[window].to(param)).to(alpha)
        correction[..., y0:y1, x0:x1] = out[..., y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]
    # where nothing is corrected the alpha stays bit for bit (no round trip through the logit)
    return torch.where(correction == 0, alpha, correct_alpha(alpha, correction))


# --------------------------------------------------------------------------- training


#: the blur (Gaussian sigma, px) of a softened example's object, drawn uniformly (:func:`soften_layer`)
SOFT_SIGMA = (1.0, 3.0)


def soften_layer(layer, sigma: float):
    """``layer`` (:class:`~liwi_core.layers.Layer`) out of focus (:func:`~liwi_core.filters.defocus_rgba`),
    its shadow unchanged. The ADD cut-outs have hard, anti-aliased edges; a network that only
    sees those learns to push every soft band to 0 or 1, which crushes a defocused or moving
    object's edge."""
    from .filters import defocus_rgba
    from .layers import Layer

    return Layer(rgba=defocus_rgba(layer.rgba, sigma), shadow=layer.shadow, name=layer.name,
                 prompt_index=layer.prompt_index)


def _softener(share: float, rng: random.Random):
    """A layer transform for :func:`~liwi_core.train_refiner.object_prompts`: each layer put out of
    focus with probability ``share`` (:func:`soften_layer`, sigma drawn from :data:`SOFT_SIGMA`)."""
    def soften(layer):
        return soften_layer(layer, rng.uniform(*SOFT_SIGMA)) if rng.random() < share else layer
    return soften


def make_examples(data, out, seed: int = 0, shard: tuple[int, int] = (0, 1), limit: int | None = None,
                  soften: float = 0.0) -> int:
    """Full-size edge examples from the ADD dataset ``data`` in ``out`` (one ``.pt`` per object:
    8-bit ``image``, classical ``alpha`` and true ``truth`` on the object's region), skipping
    samples done; ``shard`` ``(i, n)``: only the samples of shard i of n; ``soften``: the share
    of objects put out of focus first (:func:`soften_layer`, sigma drawn from
    :data:`SOFT_SIGMA`), the scene composited again around them. Returns the examples written
    and found."""
    from .dataset import iter_samples, sample_ids
    from .engines.classical import peel_region
    from .engines.refined import RefinedSettings
    from .train_refiner import _q, _save_atomic, _shard_key, object_prompts

    classical = RefinedSettings().classical()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = {p.stem.split("_o")[0] for p in out.glob("*_o*.pt")}
    ids = [i for i in sample_ids(data) if _shard_key(i) % shard[1] == shard[0] and i not in done]
    for sample in iter_samples(data, ids=ids[:limit]) if ids else ():
        softener = _softener(soften, random.Random(f"{seed}:{sample.id}:soft")) if soften > 0 else None
        for depth, _kind, prompt, image, _below, layer in object_prompts(sample, random.Random(f"{seed}:{sample.id}"),
                                                                          softener):
            (ry0, ry1, rx0, rx1), img, rough, (_, alpha, _, _), _, _ = peel_region(image, prompt, classical)
            truth = layer.alpha[..., ry0:ry1, rx0:rx1]
            _save_atomic({"image": _q(img[0]), "alpha": _q(alpha[0]), "truth": _q(truth[0]), "prompt": _q(rough[0])},
                         out / f"{sample.id}_o{depth}.pt")
    return len(list(out.glob("*_o*.pt")))


def _crop(plane: torch.Tensor, cy: int, cx: int, size: int) -> torch.Tensor:
    """The ``size`` squared window of an 8-bit ``[C,H,W]`` plane centred on ``(cy, cx)``, as floats
    in [0,1], the frame's edge repeated beyond it."""
    half = size // 2
    padded = F.pad(plane[None].float() / 255, (half, size - half, half, size - half), mode="replicate")
    return padded[0, :, cy:cy + size, cx:cx + size]


def _patches(examples: list[dict], size: int, count: int, band: int, rng: random.Random):
    """``count`` patches ``size`` squared centred on random edge-band pixels, flipped at random:
    ``(image, alpha, truth, prompt)`` float ``[count,C,size,size]``."""
    images, alphas, truths, prompts = [], [], [], []
    while len(images) < count:
        ex = rng.choice(examples)
        if "_ring" not in ex:  # the band's pixels, found once per example
            ex["_ring"] = edge_band(ex["alpha"][None].float() / 255, band)[0, 0].nonzero()
        ring = ex["_ring"]
        if len(ring) == 0:
            continue
        cy, cx = ring[rng.randrange(len(ring))].tolist()
        parts = [_crop(ex[key], cy, cx, size) for key in ("image", "alpha", "truth")]
        # examples made before the prompt was kept have none (for a network that does not see it)
        parts.append(_crop(ex["prompt"], cy, cx, size) if "prompt" in ex else torch.zeros_like(parts[1]))
        if rng.random() < 0.5:
            parts = [p.flip(-1) for p in parts]
        if rng.random() < 0.5:
            parts = [p.transpose(-1, -2) for p in parts]
        for lst, p in zip((images, alphas, truths, prompts), parts):
            lst.append(p)
    return torch.stack(images), torch.stack(alphas), torch.stack(truths), torch.stack(prompts)


def losses(model: EdgeRefiner, image: torch.Tensor, alpha: torch.Tensor, truth: torch.Tensor,
           prompt: torch.Tensor) -> dict:
    """In the edge band: L1 of the corrected alpha to the truth, plus 1 - soft IoU (Σ min / Σ max)
    over the band; the untouched classical alpha's L1 beside them for comparison."""
    correction = model(image, alpha, prompt)
    a = correct_alpha(alpha, correction)
    band = edge_band(alpha, model.config.band)
    n = band.sum().clamp_min(1)
    l1 = ((a - truth).abs() * band).sum() / n
    iou = (torch.minimum(a, truth) * band).sum() / (torch.maximum(a, truth) * band).sum().clamp_min(1e-3)
    return {"total": l1 + (1 - iou), "l1": l1, "iou_loss": 1 - iou,
            "classical_l1": ((alpha - truth).abs() * band).sum().detach() / n}


def fit(examples, out, config: dict, minutes: float | None = None, log=print) -> Path:
    """Train (or resume) an :class:`EdgeRefiner` on the examples folder; returns the checkpoint
    folder. ``config``: ``steps``, ``batch_size``, ``patch``, ``lr`` (cosine), the model's
    ``channels`` / ``dilations`` / ``band`` / ``sees_prompt``, ``log_every``, ``save_every``,
    ``val_every``."""
    from .fitting import (
        after_step,
        is_held_back,
        learning_rate,
        load_example,
        load_latest,
        make_optimizer,
        optimise,
        save_checkpoint,
    )

    files = sorted(Path(examples).glob("*.pt"))
    if not files:
        raise LiWiError(f"no edge examples in '{examples}': run 'python -m liwi_core.edge_refiner examples' first")
    train = [load_example(f) for f in files if not is_held_back(f.name)]
    val = [load_example(f) for f in files if is_held_back(f.name)]
    out = Path(out)
    loaded = load_latest(out, EdgeRefiner)
    if loaded:
        model, state = loaded
    else:
        shape = {k: config[k] for k in ("channels", "dilations", "band", "sees_prompt") if k in config}
        model, state = EdgeRefiner(**shape), None
    if model.config.sees_prompt and not all("prompt" in ex for ex in train + val):
        raise LiWiError(f"the examples in '{examples}' keep no prompt, which this edge refiner sees: make them again")
    optimizer, step = make_optimizer(model, config, state)
    rng = random.Random(step)
    val_batch = _patches(val or train, config["patch"], 256, model.config.band, random.Random(0))
    started = time.time()
    log(json.dumps({"examples": len(train), "val": len(val), "resume_step": step}))

    def validate():
        model.eval()
        with torch.no_grad():
            parts = losses(model, *val_batch)
        model.train()
        return {k: round(float(v), 5) for k, v in parts.items()}

    model.train()
    while step < config["steps"]:
        lr = learning_rate(config, step, started, minutes)
        parts = losses(model, *_patches(train, config["patch"], config["batch_size"], model.config.band, rng))
        optimise(model, optimizer, parts["total"], lr)
        step += 1
        if after_step(step, config, started, minutes, log, parts, lr,
                      save=partial(save_checkpoint, model, optimizer, step, out), validate=validate,
                      examples=len(train)):
            break
    return out / "checkpoint-latest"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liwi_core.edge_refiner", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("examples", help="full-size edge examples from an ADD dataset (resumable)")
    ex.add_argument("--data", required=True)
    ex.add_argument("--out", required=True)
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--shard", default="0/1", help="I/N: only this shard of the samples (one process each)")
    ex.add_argument("--limit", type=int)
    ex.add_argument("--soften", type=float, default=0.0,
                    help="share of objects put out of focus first (soft edges the cut-outs lack)")
    ft = sub.add_parser("fit", help="train or resume an edge refiner")
    ft.add_argument("--examples", required=True)
    ft.add_argument("--out", required=True)
    ft.add_argument("--config", required=True, help="JSON file")
    ft.add_argument("--minutes", type=float)
    args = parser.parse_args(argv)
    try:
        if args.command == "examples":
            from .train_refiner import _check_shard
            i, n = (int(v) for v in args.shard.split("/"))
            _check_shard((i, n))
            print(make_examples(args.data, args.out, args.seed, (i, n), args.limit, args.soften), "examples")
        else:
            from .fitting import jsonl_logger
            config = json.loads(Path(args.config).read_text())
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            fit(args.examples, out, config, args.minutes, jsonl_logger(out))
    except (LiWiError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
