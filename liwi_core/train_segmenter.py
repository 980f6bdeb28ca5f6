"""Train the prompt segmenter (:mod:`liwi_core.segmenter`) on ADD scenes.

    python -m liwi_core.train_segmenter fit --data DATASET --out runs/segmenter \\
        --config training/configs/segmenter.json [--minutes M] [--device cuda] [--workers N]

Each example is one object of an ADD scene with a prompt of a random kind (exact, or one of the
scene's degraded prompts: eroded, dilated, blurred, a box, a scribble), on the image left once
the objects in front of it are peeled off (:func:`~liwi_core.train_refiner.object_prompts`, as
the engine peels front to back). The window is the one the engine looks at
(:func:`~liwi_core.segmenter.prompt_window`), its margin drawn from ``margin`` so the network
does not learn one framing; flipped at random. The truth is the object's alpha on the window.
U²-Net's deep supervision: binary cross-entropy of the fused map and of each side map.

The network starts as the pretrained saliency network (:func:`~liwi_core.segmenter.init_from_saliency`)
or from ``init_from`` (a segmenter's folder, a later stage). Samples whose number is a multiple
of :data:`~liwi_core.fitting.VAL_EVERY` are held back; validation reports the IoU at 0.5 against
the true alpha per prompt kind, and the untrained network's (the saliency map) at step 0. The
folder may still be filling; checkpoints are written atomically to ``<out>/checkpoint-latest``
and a rerun resumes from there.
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
from .fitting import (
    after_step,
    jsonl_logger,
    learning_rate,
    load_latest,
    make_optimizer,
    optimise,
    save_checkpoint,
)
from .saliency import U2NetP
from .segmenter import init_from_saliency, prompt_window, segmenter_inputs
from .train_proposer import _split_ids

__all__ = ["fit", "losses", "main", "prompt_example"]

#: prompt kinds validation reports, in this order
KINDS = ("exact", "eroded", "dilated", "blurred", "box", "scribble")


def prompt_example(sample, rng: random.Random, size: int, margin: tuple[float, float] = (0.25, 0.25),
                   flip: bool = False):
    """One object of an ADD ``sample`` as the segmenter sees it: ``(inputs [4,S,S], alpha [1,S,S],
    kind)``, or None when the sample has no object with a prompt. ``margin``: the window's margin
    is drawn uniformly from this range; ``flip``: flipped left-right with probability one half."""
    from .train_refiner import object_prompts

    objects = list(object_prompts(sample, rng))
    if not objects:
        return None
    _, kind, prompt, image, _, layer = rng.choice(objects)
    y0, y1, x0, x1 = prompt_window(prompt, rng.uniform(*margin))
    window = (..., slice(y0, y1), slice(x0, x1))
    inputs = segmenter_inputs(image[window], prompt[window].float(), size)[0]
    alpha = layer.alpha[window].float()
    mode = "area" if min(alpha.shape[-2:]) >= size else "bilinear"
    alpha = F.interpolate(alpha, size=(size, size), mode=mode)[0].clamp(0, 1)
    if flip and rng.random() < 0.5:
        inputs, alpha = inputs.flip(-1), alpha.flip(-1)
    return inputs, alpha, kind


class _Examples(torch.utils.data.Dataset):
    """:func:`prompt_example` of each sample id; augmented: a fresh random object, prompt, margin
    and flip each time; else fixed by the id (validation)."""

    def __init__(self, root: Path, ids: list[str], size: int, augment: bool, margin=(0.15, 0.4), seed: int = 0):
        self.root, self.ids, self.size, self.augment, self.margin, self.seed = root, ids, size, augment, margin, seed

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        sample = next(iter_samples(self.root, ids=[self.ids[i]]))
        if self.augment:
            rng = random.Random(hash((self.seed, self.ids[i], time.time_ns())))
            example = prompt_example(sample, rng, self.size, self.margin, flip=True)
        else:
            example = prompt_example(sample, random.Random(self.ids[i]), self.size)
        if example is None:  # no object: an empty window the collate step drops
            return torch.zeros(4, self.size, self.size), torch.zeros(1, self.size, self.size), ""
        return example


def losses(logits_fused: torch.Tensor, logits_sides: torch.Tensor, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
    """Binary cross-entropy of the fused map ``[B,1,S,S]`` and of the six side maps ``[B,6,S,S]``
    (logits) against the true alpha ``[B,1,S,S]`` (soft targets)."""
    fused = F.binary_cross_entropy_with_logits(logits_fused, alpha)
    sides = F.binary_cross_entropy_with_logits(logits_sides, alpha.expand_as(logits_sides))
    return {"total": fused + 6 * sides, "fused": fused, "sides": sides}


def _logits(model: U2NetP, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    fused, sides = model(x, return_dict=False)
    eps = 1e-6
    return torch.logit(fused.clamp(eps, 1 - eps)), torch.logit(sides.clamp(eps, 1 - eps))


@torch.no_grad()
def validate(model: U2NetP, loader, device) -> dict:
    """Mean IoU at 0.5 of the fused map against the true alpha (> 0.5), per prompt kind and over
    all held-back examples."""
    model.eval()
    scores: dict[str, list[float]] = {}
    for inputs, alpha, kinds in loader:
        pred = model(inputs.to(device), return_dict=False)[0].cpu() > 0.5
        truth = alpha > 0.5
        inter = (pred & truth).flatten(1).sum(1).float()
        union = (pred | truth).flatten(1).sum(1).float().clamp_min(1)
        for kind, iou in zip(kinds, (inter / union).tolist()):
            if kind:
                scores.setdefault(kind, []).append(iou)
    model.train()
    out = {k: round(sum(v) / len(v), 4) for k in KINDS if (v := scores.get(k))}
    every = [x for v in scores.values() for x in v]
    out["all"] = round(sum(every) / max(1, len(every)), 4)
    return out


def fit(data, out, config: dict, minutes: float | None = None, log=print,
        device: str | torch.device = "cpu", workers: int = 0) -> Path:
    """Train (or resume) the segmenter on an ADD dataset; returns the checkpoint folder.

    ``config``: ``steps``, ``batch_size``, ``lr`` (AdamW, cosine after ``warmup_steps``, 100),
    optionally ``size`` (320), ``margin`` ([low, high], default [0.15, 0.4]), ``reload_every``,
    ``log_every``, ``save_every``, ``val_every``, ``val_samples`` (256), ``anneal_within_minutes``,
    ``init_from`` (a segmenter folder; default: the bundled saliency network)."""
    root, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size, batch_size, steps = config.get("size", 320), config["batch_size"], config["steps"]
    resumed = load_latest(out, U2NetP)
    if resumed is not None:
        model, state = resumed
    elif config.get("init_from"):
        if not (Path(config["init_from"]) / "config.json").is_file():
            raise LiWiError(f"init_from '{config['init_from']}': no checkpoint folder there (config.json + .safetensors)")
        model, state = U2NetP.from_pretrained(config["init_from"]), None
    else:
        model, state = init_from_saliency(), None
    if model.config.in_channels != 4:
        raise LiWiError(f"the segmenter takes 4 input channels; this checkpoint takes {model.config.in_channels}")
    model.to(device).train()
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    optimizer, step = make_optimizer(model, config, state)
    train_ids, val_ids = _split_ids(root)
    val_loader = torch.utils.data.DataLoader(_Examples(root, val_ids[:config.get("val_samples", 256)], size, False),
                                             batch_size=16, num_workers=workers)
    check = partial(validate, model, val_loader, device)
    started = time.time()
    log(json.dumps({"samples": len(train_ids), "val": len(val_ids), "resume_step": step}))
    if step == 0:
        log(json.dumps({"step": 0, "val": check()}))
    margin = tuple(config.get("margin", (0.15, 0.4)))

    def batches():
        nonlocal train_ids
        while True:
            train_ids = _split_ids(root)[0]
            picks = random.Random(len(train_ids) + step).choices(train_ids, k=config.get("reload_every", 200) *
                                                                  batch_size)
            loader = torch.utils.data.DataLoader(_Examples(root, picks, size, True, margin, seed=step),
                                                 batch_size=batch_size, num_workers=workers, drop_last=True)
            yield from loader

    stream = batches()
    while step < steps:
        lr = learning_rate(config, step, started, minutes, warmup_steps=100)
        inputs, alpha, kinds = next(stream)
        keep = torch.tensor([bool(k) for k in kinds])
        if not keep.any():
            continue
        inputs, alpha = inputs[keep].to(device, non_blocking=True), alpha[keep].to(device, non_blocking=True)
        parts = losses(*_logits(model, inputs.contiguous(memory_format=torch.channels_last)), alpha)
        optimise(model, optimizer, parts["total"], lr)
        step += 1
        if after_step(step, config, started, minutes, log, parts, lr,
                      save=partial(save_checkpoint, model, optimizer, step, out),
                      validate=check, samples=len(train_ids)):
            break
    return out / "checkpoint-latest"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m liwi_core.train_segmenter", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="train or resume the prompt segmenter on an ADD dataset")
    f.add_argument("--data", required=True, help="ADD dataset folder (it may still be filling)")
    f.add_argument("--out", required=True)
    f.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "training" / "configs" /
                                           "segmenter.json"))
    f.add_argument("--minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    f.add_argument("--device", default="cpu", help="torch device of the training steps, e.g. cuda")
    f.add_argument("--workers", type=int, default=0, help="processes reading samples")
    args = p.parse_args(argv)
    try:
        config = json.loads(Path(args.config).read_text())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        print(fit(args.data, out, config, args.minutes, jsonl_logger(out), device=args.device, workers=args.workers))
    except LiWiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
