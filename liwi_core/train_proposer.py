"""Train automatic mode's object proposer: U²-Net small fine-tuned on ADD scenes.

    python -m liwi_core.train_proposer fit --data DATASET --out runs/proposer \\
        --config training/configs/proposer.json [--minutes M] [--device cuda]

The pretrained salient-object network marks what a photo is about as one map: two objects
that touch come out as one region, and a bright thing in the background joins the object it
touches. The proposer is the same network (:class:`~liwi_core.saliency.U2NetP`, started from
the bundled ``u2netp`` weights) with two output channels, learnt from ADD's layered scenes,
whose truth says where every object is:

* channel 0, **objects**: pixels where some object is opaque (alpha >= 0.5);
* channel 1, **edges**: the inner rim of each object's visible part (:data:`EDGE_WIDTH` of
  the network's side wide), so that the objects less their rims fall apart into one core per
  object even where two objects touch (:func:`liwi_core.proposals.find_objects`).

An ADD scene's truth knows only the objects ADD placed; the photo under them has objects of its
own (an alpaca in a field), and calling them background taught an earlier proposer what a
cut-out pasted on a wallpaper looks like rather than what an object in a photo is (on the cat it
found only the eyes). With ``teacher`` in the config, the pretrained saliency network, frozen,
looks at the scene's clean background (the same window) and its map is the objects channel's
truth outside the placed objects (:func:`teacher_targets`); with probability ``bare`` the
network sees that background alone. So the proposer keeps what the saliency network knows of
photos and learns where it misses placed objects, and the rims of objects ADD placed.

Samples whose number is a multiple of :data:`~liwi_core.fitting.VAL_EVERY` are held back
for validation. The folder may still be filling (an ADD job writing beside the training): the
sample list is re-read every ``reload_every`` steps. Checkpoints are written atomically to
``<out>/checkpoint-latest`` and a rerun resumes from there.
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

from .dataset import iter_samples
from .errors import LiWiError
from .filters import bounding_box, erode
from .fitting import (
    add_fit_parser,
    after_step,
    learning_rate,
    load_latest,
    make_optimizer,
    optimise,
    run_fit,
    save_checkpoint,
    split_samples,
)
from .saliency import U2NetP, lanczos_resize, load_saliency_model, normalise

__all__ = ["EDGE_WIDTH", "fit", "init_from_saliency", "losses", "main", "proposal_targets", "teacher_targets"]

#: width of the edge rim, as a fraction of the side the network sees (2 px at 320)
EDGE_WIDTH = 0.006
#: the edge channel's start: the saliency's side maps times this gain, plus this logit
EDGE_START_GAIN = 0.1
EDGE_START_LOGIT = -3.0
#: where the teacher's map of the clean background is above this, outside the placed objects,
#: the edge channel is not taught: an object of the photo has rims that ADD's truth does not know
TEACHER_EDGE_FREE = 0.3


def proposal_targets(alphas: torch.Tensor) -> torch.Tensor:
    """The proposer's truth for one scene.

    Args:
        alphas: ``[N,1,H,W]`` the objects' alphas in [0,1], back to front (N may be 0).

    Returns:
        ``[2,H,W]`` in {0,1}: the objects (some alpha >= 0.5) and the edges (the pixels of each
        object's visible part, where no object in front of it is opaque, within
        ``EDGE_WIDTH * max(H, W)`` px, at least 1, of that part's outline).
    """
    h, w = alphas.shape[-2:]
    objects = torch.zeros(h, w)
    edges = torch.zeros(h, w)
    r = max(1, round(EDGE_WIDTH * max(h, w)))
    covered = torch.zeros(h, w, dtype=torch.bool)
    for alpha in reversed(list(alphas)):  # front first: what is in front hides what is behind
        opaque = alpha[0] >= 0.5
        visible = opaque & ~covered
        covered |= opaque
        if visible.any():
            inner = erode(visible[None, None].float(), r)[0, 0] > 0.5
            edges[visible & ~inner] = 1
    objects[covered] = 1
    return torch.stack([objects, edges])


def teacher_targets(targets: torch.Tensor, teacher: torch.Tensor,
                    bare: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The truth and its weight where a teacher has seen the clean background.

    Args:
        targets: ``[B,2,S,S]`` from :func:`proposal_targets` (the objects ADD placed).
        teacher: ``[B,1,S,S]`` in [0,1], the frozen saliency network's map of the scene's clean
            background (the same window).
        bare: ``[B]`` bool, the samples whose image is that background alone (their ``targets``
            are zeros).

    Returns:
        ``(targets, weight)``, both ``[B,2,S,S]``: objects = the placed objects where they are
        opaque, else the teacher's map (soft); edges as given, with weight 0 where the teacher
        marks an object of the photo (above :data:`TEACHER_EDGE_FREE`) outside the placed
        objects, and on bare samples everywhere.
    """
    placed = targets[:, :1] > 0.5
    objects = torch.where(placed, torch.ones_like(teacher), teacher)
    weight = torch.ones_like(targets)
    free = (teacher > TEACHER_EDGE_FREE) & ~placed
    weight[:, 1:] = (~free).float() * (~bare).float().view(-1, 1, 1, 1)
    return torch.cat([objects, targets[:, 1:]], 1), weight


def init_from_saliency(path=None) -> U2NetP:
    """A two-channel :class:`U2NetP` whose encoder and decoder are the pretrained saliency
    network's and whose every side map and fused map start as that network's saliency, in both
    channels, the edge channel faint and shifted to "no edge" (it learns from there). ``path``: the saliency weights (default the
    bundled ``u2netp``)."""
    source = load_saliency_model(path)
    config = {k: v for k, v in source.config.items() if not k.startswith("_")}
    model = U2NetP(**{**config, "out_channels": 2})
    state = source.state_dict()
    new = model.state_dict()
    for name, value in state.items():
        if name.startswith(("side", "outconv")):
            continue
        new[name] = value
    # the edge channel starts as a faint copy of the saliency, sure that there is no edge
    # (probability about 0.05): a full copy would call every object pixel an edge, and its large
    # first gradients would pull the shared features away from what the objects channel needs
    for i in range(1, 7):
        weight, bias = state[f"side{i}.weight"], state[f"side{i}.bias"]
        new[f"side{i}.weight"] = torch.cat([weight, EDGE_START_GAIN * weight])
        new[f"side{i}.bias"] = torch.cat([bias, torch.full_like(bias, EDGE_START_LOGIT)])
    # the fused map of channel c reads channel c of the six side maps (laid out side by side)
    weight = torch.zeros_like(new["outconv.weight"])
    for c in range(2):
        weight[c, c::2] = state["outconv.weight"][0, :, 0, 0].view(6, 1, 1)
    new["outconv.weight"] = weight
    new["outconv.bias"] = torch.cat([state["outconv.bias"], torch.full_like(state["outconv.bias"], EDGE_START_LOGIT)])
    model.load_state_dict(new)
    return model


def _close_up(opaque: torch.Tensor, rng: random.Random) -> tuple[int, int, int]:
    """A square window ``(y0, x0, side)`` in which the object ``opaque`` (``[H,W]`` bool) is
    large, as in a close-up photo: its box's longer side 60-130% of the window's (so the frame
    often cuts it), centred near it; at least a third of the image's shorter side (the window is
    enlarged to the network's size, and a smaller one would be a blur)."""
    h, w = opaque.shape
    box = bounding_box(opaque[None, None].float())
    if box is None:
        return 0, 0, min(h, w)
    y_lo, y_hi, x_lo, x_hi = box
    side = round(max(y_hi - y_lo, x_hi - x_lo) / rng.uniform(0.6, 1.3))
    side = max(min(h, w) // 3, min(side, min(h, w)))
    cy = (y_lo + y_hi) / 2 + rng.uniform(-0.25, 0.25) * side
    cx = (x_lo + x_hi) / 2 + rng.uniform(-0.25, 0.25) * side
    y0 = int(min(max(0, round(cy - side / 2)), h - side))
    x0 = int(min(max(0, round(cx - side / 2)), w - side))
    return y0, x0, side


class _Scenes(torch.utils.data.Dataset):
    """ADD samples as ``(image [3,S,S] in [0,1], targets [2,S,S], background [3,S,S], bare)``: a
    random square window of 60-100% of the shorter side, or with probability ``zoom`` a
    close-up of one object (:func:`_close_up`); flipped at random; with probability ``bare``
    the image is the clean background alone and the targets are zeros (``bare`` True). The
    whole image when not augmenting. ``background`` False: no background is returned (an empty
    tensor in its place), when no teacher looks at it."""

    def __init__(self, root: Path, ids: list[str], size: int, augment: bool, seed: int = 0, zoom: float = 0.0,
                 bare: float = 0.0, background: bool = False):
        self.root, self.ids, self.size, self.augment, self.seed, self.zoom = root, ids, size, augment, seed, zoom
        self.bare, self.background = bare, background

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        sample = next(iter_samples(self.root, ids=[self.ids[i]]))
        image, background = sample.composite[0], sample.stack.background[0]
        alphas = torch.stack([layer.rgba[0, 3:4] for layer in sample.stack.layers]) if sample.stack.layers \
            else torch.zeros(0, 1, *image.shape[-2:])
        h, w = image.shape[-2:]
        bare = False
        if self.augment:
            rng = random.Random(hash((self.seed, self.ids[i], time.time_ns())))
            side = round(min(h, w) * rng.uniform(0.6, 1.0))
            y0, x0 = rng.randrange(h - side + 1), rng.randrange(w - side + 1)
            if len(alphas) and rng.random() < self.zoom:
                y0, x0, side = _close_up(alphas[rng.randrange(len(alphas))][0] >= 0.5, rng)
            image = image[:, y0:y0 + side, x0:x0 + side]
            background = background[:, y0:y0 + side, x0:x0 + side]
            alphas = alphas[..., y0:y0 + side, x0:x0 + side]
            if rng.random() < 0.5:
                image, background, alphas = image.flip(-1), background.flip(-1), alphas.flip(-1)
            if rng.random() < self.bare:
                image, alphas, bare = background, alphas[:0], True
        image = lanczos_resize(image[None], (self.size, self.size))[0]
        background = lanczos_resize(background[None], (self.size, self.size))[0] if self.background else \
            torch.empty(0)
        # shrinking averages; a close-up is enlarged, where averaging would be blocky
        mode = "area" if alphas.shape[-1] >= self.size else "bilinear"
        alphas = F.interpolate(alphas, size=(self.size, self.size), mode=mode) if len(alphas) else \
            torch.zeros(0, 1, self.size, self.size)
        return image, proposal_targets(alphas), background, bare


def losses(logits_fused: torch.Tensor, logits_sides: torch.Tensor, targets: torch.Tensor,
           edge_weight: float = 4.0, weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """U²-Net's deep supervision on both channels: binary cross-entropy of the fused map and of
    each of the six side maps; edge pixels weigh ``edge_weight`` times (they are few).

    Args:
        logits_fused: ``[B,2,S,S]``; logits_sides: ``[B,12,S,S]`` (side k, channel c at 2k + c);
        targets: ``[B,2,S,S]`` from :func:`proposal_targets` or :func:`teacher_targets`;
        weight: ``[B,2,S,S]`` per-pixel weights (0: not taught there), default 1.
    """
    weight = torch.ones_like(targets) if weight is None else weight.clone()
    weight[:, 1] *= 1 + (edge_weight - 1) * targets[:, 1]
    fused = F.binary_cross_entropy_with_logits(logits_fused, targets, weight=weight)
    sides = sum(F.binary_cross_entropy_with_logits(logits_sides[:, 2 * k:2 * k + 2], targets, weight=weight)
                for k in range(6))
    return {"total": fused + sides, "fused": fused, "sides": sides / 6}


def _logits(model: U2NetP, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused and side logits (the model returns probabilities; training wants logits for a
    stable cross-entropy)."""
    saliency, sides = model(x, return_dict=False)
    eps = 1e-6
    return torch.logit(saliency.clamp(eps, 1 - eps)), torch.logit(sides.clamp(eps, 1 - eps))


@torch.no_grad()
def _teacher_map(teacher: U2NetP, image: torch.Tensor, background: torch.Tensor,
                 teacher_input: str) -> torch.Tensor:
    """The teacher's map ``[B,1,S,S]`` of the scene (``teacher_input`` ``composite``: ``image``)
    or of its clean ``background`` (moved to ``image``'s device)."""
    looked_at = image if teacher_input == "composite" else background.to(image.device, non_blocking=True)
    return teacher(normalise(looked_at), return_dict=False)[0]


@torch.no_grad()
def validate(model: U2NetP, loader, device, teacher: U2NetP | None = None,
             teacher_input: str = "background") -> dict:
    """Held-back scenes: the objects channel's IoU at 0.5 against the placed objects, and the
    edge channel's precision and recall at 0.5, pooled over all pixels; with a ``teacher``, also
    the objects channel's IoU against the taught truth (the placed objects and the teacher's
    map of the clean background, :func:`teacher_targets`), ``taught_iou``."""
    model.eval()
    inter = union = tp = fp = fn = taught_inter = taught_union = 0.0
    for image, targets, background, _ in loader:
        image, targets = image.to(device), targets.to(device)
        pred = model(normalise(image), return_dict=False)[0] > 0.5
        truth = targets > 0.5
        inter += float((pred[:, 0] & truth[:, 0]).sum())
        union += float((pred[:, 0] | truth[:, 0]).sum())
        if teacher is not None:
            seen = _teacher_map(teacher, image, background, teacher_input)
            taught = teacher_targets(targets, seen, torch.zeros(len(image), dtype=torch.bool, device=device))[0]
            taught_inter += float((pred[:, 0] & (taught[:, 0] > 0.5)).sum())
            taught_union += float((pred[:, 0] | (taught[:, 0] > 0.5)).sum())
        tp += float((pred[:, 1] & truth[:, 1]).sum())
        fp += float((pred[:, 1] & ~truth[:, 1]).sum())
        fn += float((~pred[:, 1] & truth[:, 1]).sum())
    model.train()
    scores = {"objects_iou": round(inter / max(union, 1), 4), "edge_precision": round(tp / max(tp + fp, 1), 4),
              "edge_recall": round(tp / max(tp + fn, 1), 4)}
    if teacher is not None:
        scores["taught_iou"] = round(taught_inter / max(taught_union, 1), 4)
    return scores


def fit(data, out, config: dict, minutes: float | None = None, log=print,
        device: str | torch.device = "cpu", workers: int = 0) -> Path:
    """Train (or resume) the proposer on an ADD dataset; returns the checkpoint folder.

    ``config``: ``steps``, ``batch_size``, ``lr`` (AdamW, cosine), optionally ``size`` (320),
    ``edge_weight``, ``warmup_steps`` (100), ``zoom`` (the share of close-ups), ``reload_every``, ``log_every``, ``save_every``, ``val_every``,
    ``anneal_within_minutes`` (with ``minutes``: the schedule ends with the time), ``init_from``
    (a saliency checkpoint, default the bundled ``u2netp``; or a proposer's, for a later stage),
    ``teacher`` (true: the bundled saliency network teaches the photo's own objects, or a
    checkpoint path), ``teacher_input`` (``background``: the teacher looks at the clean
    background; ``composite``: at the scene itself, so the proposer learns its map there and
    the placed objects it misses) and ``bare`` (the share of clean backgrounds seen alone, with
    a teacher)."""
    root, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size, batch_size, steps = config.get("size", 320), config["batch_size"], config["steps"]
    latest = out / "checkpoint-latest"
    resumed = load_latest(out, U2NetP)
    if resumed is not None:
        model, state = resumed
    elif config.get("init_from") and not (Path(config["init_from"]) / "config.json").is_file():
        raise LiWiError(f"init_from '{config['init_from']}': no checkpoint folder there (config.json + .safetensors)")
    elif config.get("init_from") and U2NetP.load_config(config["init_from"]).get("out_channels") == 2:
        model = U2NetP.from_pretrained(config["init_from"])  # a later stage: a proposer, a fresh optimiser
        state = None
    else:
        model = init_from_saliency(config.get("init_from"))
        state = None
    model.to(device).train()
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size throughout
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    optimizer, step = make_optimizer(model, config, state)
    teacher = None
    if config.get("teacher"):
        source = None if config["teacher"] is True else config["teacher"]
        teacher = load_saliency_model(source).to(device).eval().requires_grad_(False)
    teacher_input = config.get("teacher_input", "background")
    needs_background = teacher is not None and teacher_input == "background"
    train_ids, val_ids = split_samples(root)
    val_loader = torch.utils.data.DataLoader(_Scenes(root, val_ids[:256], size, augment=False,
                                                     background=needs_background),
                                             batch_size=16, num_workers=workers)
    check = partial(validate, model, val_loader, device, teacher, teacher_input)
    started = time.time()
    log(json.dumps({"samples": len(train_ids), "val": len(val_ids), "resume_step": step}))
    if step == 0:
        log(json.dumps({"step": 0, "val": check()}))

    def batches():
        nonlocal train_ids
        while True:
            train_ids = split_samples(root)[0]
            count = config.get("reload_every", 200) * batch_size
            picks = random.Random(len(train_ids) + step).choices(train_ids, k=count)
            loader = torch.utils.data.DataLoader(_Scenes(root, picks, size, augment=True, seed=step,
                                                        zoom=config.get("zoom", 0.0),
                                                        bare=config.get("bare", 0.0) if teacher else 0.0,
                                                        background=needs_background),
                                                 batch_size=batch_size, num_workers=workers,
                                                 drop_last=True, persistent_workers=False)
            yield from loader

    stream = batches()
    while step < steps:
        # warm-up by default: Adam's first steps move every weight by about lr, and the folded
        # (batch-norm-free) pretrained weights do not take that well
        lr = learning_rate(config, step, started, minutes, warmup_steps=100)
        image, targets, background, bare = next(stream)
        image, targets = image.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        weight = None
        if teacher is not None:
            seen = _teacher_map(teacher, image, background, teacher_input)
            targets, weight = teacher_targets(targets, seen, bare.to(device))
        parts = losses(*_logits(model, normalise(image)), targets, config.get("edge_weight", 4.0), weight)
        optimise(model, optimizer, parts["total"], lr)
        step += 1
        if after_step(step, config, started, minutes, log, parts, lr,
                      save=partial(save_checkpoint, model, optimizer, step, out),
                      validate=check, samples=len(train_ids)):
            break
    return latest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m liwi_core.train_proposer", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    add_fit_parser(sub, "proposer", "proposer.json")
    args = p.parse_args(argv)
    return run_fit(fit, args)


if __name__ == "__main__":
    sys.exit(main())
