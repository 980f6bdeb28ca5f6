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
import zlib
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from .dataset import iter_samples
from .errors import LiWiError
from .filters import bounding_box
from .fitting import (
    VAL_EVERY,
    add_fit_parser,
    after_step,
    learning_rate,
    load_example,
    load_latest,
    make_optimizer,
    optimise,
    run_fit,
    save_checkpoint,
    split_samples,
)
from .saliency import U2NetP, lanczos_resize, normalise
from .segmenter import init_from_saliency, prompt_window, segmenter_inputs

__all__ = ["fit", "losses", "main", "prompt_example"]

#: a photo whose largest salient region is smaller than this share of it gives no teacher example
TEACHER_MIN_AREA = 0.02
#: prompt kinds validation reports, in this order ("photo": the teacher examples on real photos)
KINDS = ("exact", "eroded", "dilated", "blurred", "box", "scribble", "photo")


def prompt_example(sample, rng: random.Random, size: int, margin: tuple[float, float] = (0.25, 0.25),
                   flip: bool = False):
    """One object of an ADD ``sample`` as the segmenter sees it: ``(inputs [4,S,S], alpha [1,S,S],
    kind)``, or None when the sample has no object with a prompt. ``margin``: the window's margin
    is drawn uniformly from this range, on each side on its own when the range is not one value
    (below 0: the window cuts the object, as a close-up's frame does); ``flip``: flipped left-right with probability one half."""
    from .train_refiner import object_prompts

    objects = list(object_prompts(sample, rng))
    if not objects:
        return None
    _, kind, prompt, image, _, layer = rng.choice(objects)
    y0, y1, x0, x1 = prompt_window(prompt, margin[0] if margin[0] == margin[1] else
                                   [rng.uniform(*margin) for _ in range(4)])
    window = (..., slice(y0, y1), slice(x0, x1))
    inputs = segmenter_inputs(image[window], prompt[window].float(), size)[0]
    alpha = layer.alpha[window].float()
    mode = "area" if min(alpha.shape[-2:]) >= size else "bilinear"
    alpha = F.interpolate(alpha, size=(size, size), mode=mode)[0].clamp(0, 1)
    if flip and rng.random() < 0.5:
        inputs, alpha = inputs.flip(-1), alpha.flip(-1)
    return inputs, alpha, kind


def teacher_example(photo: torch.Tensor, teacher: U2NetP, rng: random.Random, size: int,
                    margin: tuple[float, float] = (-0.2, 0.4)):
    """One example on a real photo ``[1,3,H,W]`` whose truth is the saliency network's own map of
    the object: ``(image [3,S,S] uint8, prompt [1,S,S] uint8, target [1,S,S] uint8, kind)``, or None
    when the network sees no object (less than :data:`TEACHER_MIN_AREA` of the photo).

    ADD's scenes teach the segmenter to follow a prompt, but their objects are cut-outs pasted
    on photos, and a network taught on them alone learns what a pasted edge looks like: on real
    photos it left a cat's fur and an astronaut's face grey and kept the eyes. Zoomed on the
    object a photo is about, the saliency network is right (that is why the engine looked
    through it); so here the object is the largest region of its map of the whole photo, the
    prompt that region exact, grown, shrunk, blurred or its box, the window drawn as for ADD's
    examples (each side's margin from ``margin``: a close-up's frame cuts the object), and the
    truth that region's map (its soft edge kept) on the window."""
    import cv2

    from .filters import dilate, erode, gaussian_blur
    from .saliency import saliency_map

    seen = saliency_map(teacher, photo, normalize=False)
    whole = seen[0, 0] > 0.5
    count, labels, stats, _ = cv2.connectedComponentsWithStats(whole.numpy().astype("uint8"), connectivity=8)
    if count < 2:
        return None
    best = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    if stats[best, cv2.CC_STAT_AREA] < TEACHER_MIN_AREA * whole.numel():
        return None
    region = torch.from_numpy(labels == best).float()[None, None]
    reach = max(2, round(rng.uniform(0.03, 0.1) * float(region.sum()) ** 0.5))
    kind = rng.choice(("exact", "dilated", "eroded", "blurred", "box"))
    if kind == "dilated":
        prompt = dilate(region, reach)
    elif kind == "eroded":
        prompt = erode(region, reach)
    elif kind == "blurred":
        prompt = (gaussian_blur(region, 2 * reach) > 0.5).float()
    elif kind == "box":
        y0, y1, x0, x1 = bounding_box(region)
        prompt = torch.zeros_like(region)
        prompt[..., y0:y1, x0:x1] = 1
    else:
        prompt = region
    if float(prompt.sum()) == 0:
        kind, prompt = "exact", region
    y0, y1, x0, x1 = prompt_window(prompt, [rng.uniform(*margin) for _ in range(4)])
    image = photo[..., y0:y1, x0:x1]
    # the map of that one region (its soft edge kept), not of the window: zoomed on a crop the
    # network marks whatever is left in it (a tuft of fur), and a box's neighbour is not the object
    own = seen * (dilate(region, max(2, reach // 2)) > 0.5)
    target = lanczos_resize(own[..., y0:y1, x0:x1], (size, size)).clamp(0, 1)
    small = lanczos_resize(image.float(), (size, size)).clamp(0, 1)
    prompt = F.interpolate(prompt[..., y0:y1, x0:x1], size=(size, size), mode="area")

    def to_bytes(t):
        return (t[0] * 255).round().to(torch.uint8)

    return to_bytes(small), to_bytes(prompt), to_bytes(target), kind


def make_teacher_examples(photos, out, per_photo: int = 3, size: int = 320, seed: int = 0, max_side: int = 512,
                          log=print) -> int:
    """:func:`teacher_example` ``per_photo`` times for every photo in the folder ``photos``
    (shrunk to at most ``max_side``), each written atomically to ``out/<photo>_<k>.pt``;
    existing ones are kept (a rerun resumes). Returns how many exist."""
    from .imageio import load_image
    from .saliency import load_saliency_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = load_saliency_model()
    files = sorted(f for f in Path(photos).iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    for f in files:
        if all((out / f"{f.stem}_{k}.pt").exists() for k in range(per_photo)):
            continue
        photo = load_image(f)[:, :3]
        scale = min(1.0, max_side / max(photo.shape[-2:]))
        if scale < 1:
            photo = lanczos_resize(photo, (round(photo.shape[-2] * scale), round(photo.shape[-1] * scale))).clamp(0, 1)
        for k in range(per_photo):
            target = out / f"{f.stem}_{k}.pt"
            example = teacher_example(photo, teacher, random.Random(f"{seed}/{f.name}/{k}"), size)
            if example is None:
                break
            image, prompt, truth, kind = example
            torch.save({"image": image, "prompt": prompt, "target": truth, "kind": kind}, target.with_suffix(".tmp"))
            target.with_suffix(".tmp").replace(target)
        log(f"{f.name}: done")
    return len(list(out.glob("*.pt")))


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


def _teacher_held_back(path: Path) -> bool:
    """Teacher examples of one photo in :data:`~liwi_core.fitting.VAL_EVERY` (by a stable hash of
    the photo's name) are held back."""
    return zlib.crc32(path.stem.rsplit("_", 1)[0].encode()) % VAL_EVERY == 0


def teacher_files(folder) -> tuple[list[Path], list[Path]]:
    """The finished teacher examples of ``folder`` (:func:`make_teacher_examples`), split into
    ``(train, held back)``."""
    files = sorted(Path(folder).glob("*.pt"))
    held = [_teacher_held_back(f) for f in files]
    return [f for f, h in zip(files, held) if not h], [f for f, h in zip(files, held) if h]


class _TeacherExamples(torch.utils.data.Dataset):
    """Teacher examples as ``(inputs [4,S,S], target [1,S,S], "photo")``, flipped at random when
    augmenting."""

    def __init__(self, files: list[Path], augment: bool):
        self.files, self.augment = files, augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        example = load_example(self.files[i])
        image = example["image"].float()[None] / 255
        inputs = torch.cat([normalise(image)[0], example["prompt"].float() / 255 * 2 - 1])
        target = example["target"].float() / 255
        if self.augment and random.random() < 0.5:
            inputs, target = inputs.flip(-1), target.flip(-1)
        return inputs, target, "photo"


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
    optionally ``size`` (320), ``margin`` ([low, high] per side, default [0.15, 0.4]), ``reload_every``,
    ``log_every``, ``save_every``, ``val_every``, ``val_samples`` (256), ``anneal_within_minutes``,
    ``init_from`` (a segmenter folder; default: the bundled saliency network), ``teacher_examples``
    (a folder from :func:`make_teacher_examples`, which may still be filling) and ``teacher_share``
    (0.5: the share of each batch drawn from it)."""
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
    train_ids, val_ids = split_samples(root)
    val_set = _Examples(root, val_ids[:config.get("val_samples", 256)], size, False)
    teacher = config.get("teacher_examples")
    share = config.get("teacher_share", 0.5) if teacher else 0.0
    if teacher:
        val_set = torch.utils.data.ConcatDataset([val_set, _TeacherExamples(teacher_files(teacher)[1], False)])
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=16, num_workers=workers)
    check = partial(validate, model, val_loader, device)
    started = time.time()
    log(json.dumps({"samples": len(train_ids), "val": len(val_ids), "resume_step": step}))
    if step == 0:
        log(json.dumps({"step": 0, "val": check()}))
    margin = tuple(config.get("margin", (0.15, 0.4)))

    def batches():
        nonlocal train_ids
        while True:
            train_ids = split_samples(root)[0]
            rng = random.Random(len(train_ids) + step)
            count = config.get("reload_every", 200) * batch_size
            photos = teacher_files(teacher)[0] if teacher else []
            taught = round(share * count) if photos else 0
            parts = [_Examples(root, rng.choices(train_ids, k=count - taught), size, True, margin, seed=step)]
            if taught:
                parts.append(_TeacherExamples(rng.choices(photos, k=taught), True))
            loader = torch.utils.data.DataLoader(torch.utils.data.ConcatDataset(parts), batch_size=batch_size,
                                                 shuffle=True, num_workers=workers, drop_last=True)
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
    add_fit_parser(sub, "prompt segmenter", "segmenter.json")
    t = sub.add_parser("teach", help="write examples on real photos whose truth is the saliency network's map of their main object")
    t.add_argument("--photos", required=True, help="folder of photos (never the evaluation photos)")
    t.add_argument("--out", required=True)
    t.add_argument("--per-photo", type=int, default=3)
    t.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.command == "teach":
        print(make_teacher_examples(args.photos, args.out, args.per_photo, seed=args.seed,
                                    log=lambda line: None), "examples")
        return 0
    return run_fit(fit, args)


if __name__ == "__main__":
    sys.exit(main())
