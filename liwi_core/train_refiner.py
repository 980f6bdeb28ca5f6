"""Train the refiner (:class:`~liwi_core.refiner.LiWiRefiner`) on ADD samples, on a CPU.

    python -m liwi_core.train_refiner examples --data data/train-v2 --out data/refiner-examples
    python -m liwi_core.train_refiner fit --examples data/refiner-examples --out runs/refiner [--minutes 100]
    python -m liwi_core.train_refiner saliency --examples OLD --out NEW --saliency-size 256

Two steps, both resumable:

1. ``examples``: for each object of each sample, a prompt of a random kind (exact or
   one of ADD's degraded prompts), the classical engine's answer on the object's region, and
   what the refiner sees (:func:`~liwi_core.engines.refined.refiner_example`, the very
   function the engine uses), with the true alpha, shadow map and background under the
   object on the same grid; one ``.pt`` file per sample (8-bit), written atomically.
   Running the classical engine is what costs (about a second per sample on 2 cores), and
   it happens once, not every epoch.
2. ``fit``: the refiner learns corrections whose losses are those of the benchmark: soft
   IoU and L1 of alpha, L1 of the shadow map outside the object (more weight where the true
   shadow is), L1 of the background in the hole. Checkpoints (``checkpoint-latest``: model
   folder + optimiser state) are written atomically every ``--save-every`` steps; a rerun
   resumes from them. Validation compares refined with classical on held-back examples.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import zlib
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoints import load_pretrained
from .errors import LiWiError
from .filters import luminance, resize
from .fitting import (
    after_step,
    is_held_back,
    jsonl_logger,
    learning_rate,
    load_example,
    load_latest,
    make_optimizer,
    optimise,
    save_checkpoint,
)

__all__ = ["fit", "losses", "main", "make_examples", "recompute_saliency"]

PROMPT_KINDS = ("exact", "eroded", "dilated", "blurred", "box", "scribble")
#: the saliency channel's U²-Net input side in new examples (0.6x the time of rembg's 320: the
#: refined engine runs one saliency pass per object; the working grid is 256 px anyway)
SALIENCY_SIZE = 256
#: what examples written before the size was recorded were made with
LEGACY_SALIENCY_SIZE = 320


def _q(t: torch.Tensor) -> torch.Tensor:
    return (t.clamp(0, 1) * 255).round().to(torch.uint8)


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def make_examples(data, out, settings=None, seed: int = 0, limit: int | None = None, wait: bool = False,
                  shard: tuple[int, int] = (0, 1), saliency_size: int = SALIENCY_SIZE) -> int:
    """Write one refiner example per object of each sample of the ADD dataset ``data`` into ``out``;
    returns how many samples are done. Existing examples are kept (resume). ``wait``: keep
    polling for samples a running ADD job is still writing until ``limit`` are done.
    ``shard`` ``(i, n)``: only the samples whose number (``s<seed>-<number>``; a CRC of other
    ids) is ``i`` mod ``n``, so ``n`` processes (one thread each) share a many-core machine;
    the number, not the position, so a sample keeps its shard while ADD is still writing.
    ``saliency_size``: the U²-Net input side the saliency channel is computed at (recorded in
    each example; the refiner trained on them must have the same ``saliency_size``)."""
    _check_shard(shard)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a second job (ADD, training) usually shares the machine
    try:
        with torch.no_grad():
            return _make_examples(data, out, settings, seed, limit, wait, shard, saliency_size)
    finally:
        torch.set_num_threads(threads)


def _check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """``shard`` ``(i, n)`` when ``0 <= i < n``, else a one-line error."""
    index, count = shard
    if not 0 <= index < count:
        raise LiWiError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    return index, count


def _shard_key(sample_id: str) -> int:
    number = sample_id.rsplit("-", 1)[-1]
    return int(number) if number.isdigit() else zlib.crc32(sample_id.encode())


def object_prompts(sample, rng: random.Random, transform=None):
    """Each object of an ADD ``sample``, front first, with a prompt of a random kind (exact or one
    of the sample's degraded ones): ``(depth, kind, prompt, image, below, layer)``, ``image`` being
    what is left once the objects in front are peeled off with their true layers (as the engine
    peels, front to back) and ``below`` that without this object. Empty prompts are skipped.
    ``transform``: a function of each object's layer, applied after its prompt is drawn (an edge
    example's object put out of focus); ``layer`` and ``image`` are then the changed one's."""
    from .layers import LayerStack

    layers = sample.stack.layers
    for depth, k in enumerate(reversed(range(len(layers)))):
        layer = layers[k]
        # a dataset made elsewhere may carry only some of ADD's prompt kinds
        kind = rng.choice([c for c in PROMPT_KINDS if c == "exact" or c in sample.prompts[k]])
        prompt = (layer.alpha > 0.5).float() if kind == "exact" else sample.prompts[k][kind]
        if float(prompt.sum()) == 0:
            continue
        if transform is not None:
            layer = transform(layer)
        image = LayerStack(background=sample.stack.background, layers=[*layers[:k], layer],
                           hole=sample.stack.hole).composite()
        below = LayerStack(background=sample.stack.background, layers=layers[:k], hole=sample.stack.hole).composite()
        yield depth, kind, prompt, image, below, layer


def _make_examples(data, out, settings, seed: int, limit: int | None, wait: bool,
                   shard: tuple[int, int] = (0, 1), saliency_size: int = SALIENCY_SIZE) -> int:
    from .dataset import iter_samples, sample_ids
    from .engines.classical import peel_region
    from .engines.refined import RefinedSettings, refiner_example
    from .proposals import saliency_model as shared_saliency_model
    from .refiner import WORKING_SIZE

    settings = settings or RefinedSettings()
    classical = settings.classical()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saliency_model = shared_saliency_model()
    # a sample is done once all its objects are written: a run killed between two of them left
    # some, and the sample is made again (its files are the same again: the prompts are seeded).
    # Folders made before the markers have none: there every sample with a file counts
    marked = {p.stem for p in out.glob("*.done")}
    done = marked if marked else {p.stem.split("_o")[0] for p in out.glob("*_o*.pt")}

    def mine() -> list[str]:
        return [i for i in sample_ids(data) if _shard_key(i) % shard[1] == shard[0]]

    while True:
        ids = [i for i in mine() if i not in done][: None if limit is None else max(0, limit - len(done))]
        for sample in iter_samples(data, ids=ids) if ids else ():
            for depth, kind, prompt, image, below, layer in object_prompts(sample, random.Random(f"{seed}:{sample.id}")):
                (ry0, ry1, rx0, rx1), img, rough, (_, alpha, shadow, clean), _, look = peel_region(
                    image, prompt, classical)
                box = (Ellipsis, slice(ry0, ry1), slice(rx0, rx1))
                # the saliency plane as the engine makes it: the classical look at the prompt's window
                # where one was taken, else a look at the region at ``saliency_size``
                inputs = refiner_example(img, rough, alpha, shadow, clean, saliency_model, WORKING_SIZE,
                                         saliency_size, look=look)
                grid = tuple(inputs.shape[-2:])
                truth = torch.cat([resize(layer.alpha[box], grid, mode="area"),
                                   resize(luminance(layer.shadow[box]) if layer.shadow.shape[1] == 3
                                          else layer.shadow[box], grid, mode="area"),
                                   resize(below[box], grid, mode="area")], dim=1)
                _save_atomic({"inputs": _q(inputs[0]), "truth": _q(truth[0]), "kind": kind,
                              "saliency_size": saliency_size, "saliency": "window" if look is not None else "region"},
                             out / f"{sample.id}_o{depth}.pt")
            (out / f"{sample.id}.done").touch()
            done.add(sample.id)
        if not wait or (limit is not None and len(done) >= limit):
            return len(done)
        time.sleep(20)
        if not [i for i in mine() if i not in done]:
            time.sleep(40)
            if not [i for i in mine() if i not in done]:
                return len(done)


def _rewrite_examples(examples, out, shard: tuple[int, int], rewrite) -> int:
    """Copy the examples of folder ``examples`` into ``out``, each passed through ``rewrite`` (example
    dict -> example dict); resumable (existing files are kept), written atomically; ``shard`` as
    :func:`make_examples` (by file: CRC of the name). Returns how many examples ``out`` holds of
    this shard."""
    index, count = _check_shard(shard)
    files = [f for f in sorted(Path(examples).glob("*.pt")) if zlib.crc32(f.name.encode()) % count == index]
    if not files:
        raise LiWiError(f"no refiner examples in '{examples}'")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for f in files:
            target = out / f.name
            if not target.exists():
                _save_atomic(rewrite(load_example(f)), target)
    return len(files)


def recompute_saliency(examples, out, saliency_size: int = SALIENCY_SIZE, shard: tuple[int, int] = (0, 1)) -> int:
    """Copy the examples of folder ``examples`` into ``out`` with their saliency channel computed
    again at ``saliency_size`` from their own image channels (the refiner's grid, as the engine
    computes it where it has no look of the classical engine's to reuse); the classical answer and
    the truth are kept, so a refiner can be retrained for another saliency size without running the
    classical engine again. As :func:`_rewrite_examples`. Examples made since 2026-11-28 hold the
    classical engine's look at the prompt's window where it took one (``"saliency": "window"``, as
    the engine now does); this replaces it with a look at the whole region."""
    from .proposals import saliency_model as shared_saliency_model
    from .refiner import SALIENCY_CHANNEL, input_plane
    from .saliency import saliency_map

    model = shared_saliency_model()

    def rewrite(example: dict) -> dict:
        inputs = example["inputs"].clone()
        image = input_plane(inputs[None], "image").float() / 255
        inputs[SALIENCY_CHANNEL] = _q(saliency_map(model, image, normalize=False, sample_size=saliency_size)[0, 0])
        return {**example, "inputs": inputs, "saliency_size": saliency_size, "saliency": "region"}

    return _rewrite_examples(examples, out, shard, rewrite)


def add_cast_planes(examples, out, shard: tuple[int, int] = (0, 1)) -> int:
    """Copy the examples of folder ``examples`` into ``out`` with the cast-shadow plane
    (:func:`~liwi_core.engines.refined.cast_plane`, fitted to their own image and classical alpha
    planes, as the engine fits it) put in or replaced, so that a refiner can learn to read it
    without running the classical engine again. As :func:`_rewrite_examples`."""
    from .engines.refined import cast_plane
    from .refiner import CAST_CHANNEL, input_plane

    def rewrite(example: dict) -> dict:
        inputs = example["inputs"][:CAST_CHANNEL]
        planes = inputs[None].float() / 255
        cast = cast_plane(input_plane(planes, "image"), input_plane(planes, "alpha"))
        return {**example, "inputs": torch.cat([inputs, _q(cast[0])])}

    return _rewrite_examples(examples, out, shard, rewrite)


def losses(inputs: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor, corrections,
           shadow_weight: float = 2.0) -> dict[str, torch.Tensor]:
    """The refiner's losses for a batch (all ``[B,C,S,S]`` on the working grid, ``valid`` 1 on the
    region, 0 on padding), measured on the refined layers, as the benchmark measures them:

    * ``alpha``: L1 plus (1 - soft IoU), soft IoU = Σ min / Σ max;
    * ``shadow``: L1 of the grey shadow map, four times the weight where the true shadow
      darkens by more than 3%, a quarter of it under the true object (hidden there, but it
      shows in the shadow layer an editor exports and moves with the object);
    * ``background``: L1 of the background under the object (where the refined or true alpha
      is above 0), the rest of the background being the image with the shadow divided out.
    """
    from .refiner import CAST_CHANNEL, apply_corrections, input_plane

    image, alpha_c, shadow_c, clean_c = (input_plane(inputs, name) for name in ("image", "alpha", "shadow", "background"))
    alpha_t, shadow_t, below_t = truth[:, 0:1], truth[:, 1:2], truth[:, 2:5]
    cast = input_plane(inputs, "cast") if inputs.shape[1] > CAST_CHANNEL else None
    alpha, shadow, fill = apply_corrections(alpha_c, shadow_c, clean_c, corrections, exact_zero=False, cast=cast)
    n = valid.sum().clamp_min(1)
    l_alpha = ((alpha - alpha_t).abs() * valid).sum() / n
    inter = (torch.minimum(alpha, alpha_t) * valid).flatten(1).sum(1)
    union = (torch.maximum(alpha, alpha_t) * valid).flatten(1).sum(1).clamp_min(1e-3)
    l_iou = (1 - inter / union).mean()
    weight = valid * (1 - 0.75 * (alpha_t >= 0.5).float()) * (1 + 3 * (shadow_t < 0.97).float())
    l_shadow = ((shadow - shadow_t).abs() * weight).sum() / weight.sum().clamp_min(1)
    covered = ((alpha > 1 / 512) | (alpha_t > 0)).float() * valid
    clean = torch.where(alpha > 1 / 512, fill, (image / shadow.clamp_min(1e-3)).clamp(0, 1))
    l_bg = ((clean - below_t).abs() * covered).sum() / (3 * covered.sum()).clamp_min(1)
    total = l_alpha + l_iou + shadow_weight * l_shadow + l_bg
    return {"total": total, "alpha_l1": l_alpha, "alpha_iou_loss": l_iou, "shadow_l1": l_shadow, "background_l1": l_bg}


def _load_examples(folder: Path, train: dict | None = None, val: dict | None = None) -> tuple[dict, dict]:
    """Examples by file name, split by sample number (one in :data:`~liwi_core.fitting.VAL_EVERY` held back); with
    ``train``/``val`` given, only files not loaded yet are read (examples still being written)."""
    train, val = dict(train or {}), dict(val or {})
    files = sorted(folder.glob("*.pt"))
    if not files:
        raise LiWiError(f"no refiner examples in '{folder}': run 'python -m liwi_core.train_refiner examples' first")
    for f in files:
        if f.name not in train and f.name not in val:
            (val if is_held_back(f.name) else train)[f.name] = load_example(f)
    return train, val


def _batch(examples: list, size: int, rng: random.Random, augment: bool = True, crop: int | None = None,
           device: str | torch.device = "cpu"):
    """Examples padded to ``size`` squared (``valid`` 0 on the padding), flipped at random, and
    with ``crop`` a random ``crop`` squared window of each (cheaper steps on a CPU); returned
    as float ``[B,C,S,S]`` on ``device`` (the 8-bit crops travel, then are converted there)."""
    xs, ts, vs = [], [], []
    for ex in examples:
        x, t = ex["inputs"], ex["truth"]
        if augment and rng.random() < 0.5:
            x, t = x.flip(-1), t.flip(-1)
        h, w = x.shape[-2:]
        v = torch.ones(1, h, w, dtype=torch.uint8)
        if crop is not None and crop < size:
            y0, x0 = rng.randrange(max(1, h - crop + 1)), rng.randrange(max(1, w - crop + 1))
            window = (Ellipsis, slice(y0, y0 + crop), slice(x0, x0 + crop))
            x, t, v = x[window], t[window], v[window]
            h, w, target = *x.shape[-2:], crop
        else:
            target = size
        if (h, w) != (target, target):
            pad = (0, target - w, 0, target - h)
            v = F.pad(v, pad)
            x, t = (F.pad(a[None].float(), pad, mode="replicate")[0].to(torch.uint8) for a in (x, t))
        xs.append(x)
        ts.append(t)
        vs.append(v)
    return tuple(torch.stack(a).to(device, non_blocking=True).float() / d
                 for a, d in ((xs, 255), (ts, 255), (vs, 1)))


@torch.no_grad()
def validate(model, val, size: int, device: str | torch.device = "cpu") -> dict:
    """Refined against classical on the held-back examples (any iterable of them): alpha soft IoU,
    shadow L1 outside the object, background L1 in the hole (the ``losses`` definitions)."""
    from .refiner import RefinerOutput

    val = list(val)
    model.eval()
    sums: dict[str, float] = {}
    for i in range(0, len(val), 8):
        x, t, v = _batch(val[i:i + 8], size, random.Random(0), augment=False, device=device)
        refined = model(x)
        zero = RefinerOutput(*(torch.zeros_like(p) for p in refined.to_tuple()))
        for name, corr in (("classical", zero), ("refined", refined)):
            for k, value in losses(x, t, v, corr).items():
                sums[f"{name}_{k}"] = sums.get(f"{name}_{k}", 0.0) + float(value) * len(val[i:i + 8])
    model.train()
    return {k: round(s / len(val), 5) for k, s in sums.items()}


def _widened(model, flag: str, keys: tuple[str, ...], dim: int):
    """A copy of ``model`` with config ``flag`` on, the tensors ``keys`` of its state grown by one
    slice of zeros along ``dim``: the new input or output has no effect until trained."""
    from .refiner import LiWiRefiner

    wider = LiWiRefiner(**{**model.config, flag: True})
    state = model.state_dict()
    for key in keys:
        part = state[key]
        shape = list(part.shape)
        shape[dim] = 1
        state[key] = torch.cat([part, part.new_zeros(shape)], dim=dim)
    wider.load_state_dict(state)
    return wider


def with_cast_plane(model):
    """A copy of a refiner without ``cast_shadow`` that also reads the cast-shadow plane, its
    first convolution's weights for that plane zero: it answers exactly as ``model`` until trained."""
    return _widened(model, "cast_shadow", ("enc.0.0.weight",), dim=1)


def with_cast_gate(model):
    """A copy of a refiner that also predicts how far to take the fitted cast shadow where it is
    darker (a gate, 0 at first: it answers exactly as ``model`` until trained)."""
    return _widened(model, "cast_gate", ("head.weight", "head.bias"), dim=0)


def freeze_all_but(model: torch.nn.Module, trainable: list[str] | None) -> None:
    """Let only the parameters whose names start with one of ``trainable`` learn (``None``: all).

    A later stage that only adapts to an input made another way (a saliency plane now taken at
    the prompt's window) can train the first block alone (``["enc.0."]``) and keep what the rest
    has learnt. A prefix naming no parameter is an error, not a silently frozen model."""
    if trainable is None:
        return
    names = [name for name, _ in model.named_parameters()]
    unknown = [t for t in trainable if not any(n.startswith(t) for n in names)]
    if unknown or not trainable:
        raise LiWiError(f"\"trainable\" names no parameter of the refiner: {unknown or trainable} "
                        f"(its parameters start with {sorted({n.split('.')[0] for n in names})})")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(any(name.startswith(t) for t in trainable))


def fit(examples, out, config: dict, minutes: float | None = None, log=print,
        device: str | torch.device = "cpu") -> Path:
    """Train (or resume) the refiner; returns the checkpoint folder. ``device``: where the steps
    run (``cuda`` where a GPU is lent; examples stay 8-bit in CPU memory, batches travel).
    ``config["anneal_within_minutes"]``: with ``minutes``, the cosine learning rate reaches its
    end when the time is up even if steps remain (a lent GPU for a fixed time).
    ``config["alpha_support"]``, when given, overrides the loaded model's (so a later stage can
    switch the alpha corrections on or off); ``config["saliency_size"]`` likewise, and it must
    be the one the examples were made with. ``config["trainable"]``: names of the parameters that
    learn (:func:`freeze_all_but`), all of them when absent."""
    from .refiner import LiWiRefiner

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = _load_examples(Path(examples))
    size = config.get("working_size", 256)
    latest = out / "checkpoint-latest"
    made_at = {ex.get("saliency_size", LEGACY_SALIENCY_SIZE) for ex in (*train.values(), *val.values())}
    resumed = load_latest(out, LiWiRefiner)
    if resumed is not None:
        model, state = resumed
    elif config.get("init_from"):  # a later stage: the weights of an earlier one, a fresh optimiser
        model = load_pretrained(config["init_from"], LiWiRefiner, "init_from checkpoint")
        if config.get("cast_shadow") and not model.config.cast_shadow:
            model = with_cast_plane(model)
        if config.get("cast_gate") and not model.config.cast_gate:
            model = with_cast_gate(model)
        state = None
    else:
        shape = {k: config[k] for k in ("base_channels", "depth", "working_size", "shadow_reach", "cast_shadow")
                 if k in config}
        if len(made_at) == 1:  # a new refiner learns the saliency of the examples it is given
            shape["saliency_size"] = next(iter(made_at))
        model = LiWiRefiner(**shape)
        state = None
    for key in ("alpha_support", "saliency_size"):
        if key in config and model.config[key] != config[key]:
            model.register_to_config(**{key: config[key]})
    planes = {int(ex["inputs"].shape[0]) for ex in (*train.values(), *val.values())}
    if min(planes) < model.in_channels:
        raise LiWiError(f"the refiner reads {model.in_channels} input planes, some examples in '{examples}' have "
                        f"{min(planes)}: add the cast-shadow plane ('python -m liwi_core.train_refiner cast')")
    if made_at != {model.config.saliency_size}:
        raise LiWiError(f"the examples in '{examples}' have saliency computed at {sorted(made_at)} px, the refiner "
                        f"expects {model.config.saliency_size}: set \"saliency_size\" in the config or remake them "
                        "('python -m liwi_core.train_refiner saliency')")
    model.to(device)
    freeze_all_but(model, config.get("trainable"))
    optimizer, step = make_optimizer(model, config, state)
    steps, batch_size = config["steps"], config["batch_size"]
    rng = random.Random(step)
    started = time.time()
    log(json.dumps({"examples": len(train), "val": len(val), "resume_step": step}))
    model.train()
    while step < steps:
        lr = learning_rate(config, step, started, minutes)
        if step % config.get("reload_every", 250) == 0:
            train, val = _load_examples(Path(examples), train, val)
        pool = list(train.values())
        # while an example job is still filling the folder there may be fewer than a batch
        picks = rng.sample(pool, batch_size) if len(pool) >= batch_size else rng.choices(pool, k=batch_size)
        x, t, v = _batch(picks, size, rng, crop=config.get("crop"), device=device)
        parts = losses(x, t, v, model(x), config.get("shadow_weight", 2.0))
        optimise(model, optimizer, parts["total"], lr)
        step += 1
        if after_step(step, config, started, minutes, log, parts, lr,
                      save=partial(save_checkpoint, model, optimizer, step, out),
                      validate=partial(validate, model, val.values(), size, device), examples=len(train)):
            break
    return latest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m liwi_core.train_refiner", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("examples", help="build refiner examples from an ADD dataset (resumable)")
    e.add_argument("--data", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--limit", type=int, default=None)
    e.add_argument("--wait", action="store_true", help="poll for samples an ADD job is still writing")
    e.add_argument("--shard", default="0/1", help="I/N: this process makes the examples of samples I mod N")
    e.add_argument("--saliency-size", type=int, default=SALIENCY_SIZE, help="U²-Net input side of the saliency channel")
    r = sub.add_parser("saliency", help="copy examples with their saliency channel recomputed at another size")
    r.add_argument("--examples", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--saliency-size", type=int, default=SALIENCY_SIZE)
    r.add_argument("--shard", default="0/1", help="I/N: this process does the files I mod N (CRC of the name)")
    c = sub.add_parser("cast", help="copy examples with the cast-shadow plane fitted to their image and alpha")
    c.add_argument("--examples", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--shard", default="0/1", help="I/N: this process does the files I mod N (CRC of the name)")
    f = sub.add_parser("fit", help="train or resume the refiner")
    f.add_argument("--examples", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "training" / "configs" / "refiner.json"))
    f.add_argument("--minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    f.add_argument("--device", default="cpu", help="torch device of the training steps, e.g. cuda")
    args = p.parse_args(argv)
    try:
        if args.command in ("examples", "saliency", "cast"):
            try:
                shard = tuple(int(n) for n in args.shard.split("/"))
                if len(shard) != 2:
                    raise ValueError
            except ValueError:
                raise LiWiError(f"--shard '{args.shard}': expected I/N, e.g. 0/4") from None
            if args.command == "saliency":
                print(recompute_saliency(args.examples, args.out, args.saliency_size, shard))
            elif args.command == "cast":
                print(add_cast_planes(args.examples, args.out, shard))
            else:
                print(make_examples(args.data, args.out, seed=args.seed, limit=args.limit, wait=args.wait,
                                    shard=shard, saliency_size=args.saliency_size))
        else:
            try:
                config = json.loads(Path(args.config).read_text())
            except (OSError, ValueError) as exc:
                raise LiWiError(f"cannot read config '{args.config}': {exc}") from None
            if not isinstance(config, dict):
                raise LiWiError(f"config '{args.config}' must be a JSON object of settings")
            if Path(args.out).exists() and not Path(args.out).is_dir():
                raise LiWiError(f"cannot write the run to '{args.out}': it is a file, not a folder")
            Path(args.out).mkdir(parents=True, exist_ok=True)
            try:
                print(fit(args.examples, args.out, config, args.minutes, jsonl_logger(Path(args.out)),
                          device=args.device))
            except KeyError as exc:
                raise LiWiError(f"config '{args.config}' lacks the setting {exc}") from None
    except LiWiError as exc:
        print(f"liwi: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
