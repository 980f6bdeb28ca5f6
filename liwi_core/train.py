"""Train the learned decomposer (LiWiNet) on an ADD dataset.

    python -m liwi_core train --config training/configs/default.json --data data/ --out runs/liwi
    python training/train.py ...                                              # the same
    accelerate launch training/train.py --config ... --data ... --out ...     # several GPUs / machines
    python -m liwi_core train ... --resume                                    # continue exactly

Each step takes a batch of samples (drawn by a seeded generator, so resuming replays the
same order), picks each sample's front-most layer as the target (the engine peels front
to back), and gives the model the composite plus a prompt mask: empty with probability
``p_automatic`` (automatic mode), otherwise one of the degraded prompts (eroded, dilated,
blurred, box, scribble) made on the fly (``degrade``) or the clean alpha.

Losses, each switchable for ablations (``loss_weights``; 0 turns a term off):
``alpha`` (L1), ``alpha_gradient`` (L1 of image gradients: sharp edges), ``background``
(L1 in the hole under object and shadow, where it must be invented), ``shadow`` (L1 of
the shadow map: shadow-guided learning, so light changes do not leak into the other
layers), ``recompose`` (the layers recomposed with the true colours vs the composite).

The checkpoint (``OUT/checkpoint-latest``, rewritten every ``checkpoint_every`` steps and at
the end) is the model's ``save_pretrained`` folder plus ``trainer_state.safetensors`` / ``trainer_state.json``
(optimizer moments, step, random state); each is written to a temporary folder and
renamed, so a killed run never leaves a half checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .add.tools import degrade_prompts
from .compositing import composite_layers
from .dataset import iter_samples
from .errors import LiWiError
from .filters import dilate, resize
from .imageio import atomic_write_bytes
from .metrics import alpha_soft_iou, background_l1_in_hole

LOSSES = ("alpha", "alpha_gradient", "background", "shadow", "recompose")


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/liwi"
    val_data: str | None = None
    base_channels: int = 32
    depth: int = 4
    working_size: int = 256
    prefill: bool = False
    init_from: str | None = None  # warm start: a checkpoint whose weights are copied where they fit
    crop: int = 128
    scale_jitter: float = 0.25  # training scale: working_size times 1 +- this
    batch_size: int = 8
    steps: int = 1000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    p_automatic: float = 0.2
    degrade: bool = True
    loss_weights: dict = field(default_factory=lambda: {"alpha": 1.0, "alpha_gradient": 0.5, "background": 1.0,
                                                        "shadow": 1.0, "recompose": 0.5})
    mixed_precision: str = "no"  # "bf16" or "fp16" on a GPU
    checkpoint_every: int = 200
    val_every: int = 200
    val_samples: int = 16
    log_every: int = 10

    def check(self) -> None:
        """A :class:`~liwi_core.errors.LiWiError` naming the first field that cannot train."""
        for name in ("steps", "batch_size", "crop", "working_size", "base_channels", "depth", "checkpoint_every",
                     "val_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LiWiError(f"training setting {name} must be a whole number of at least 1, not {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise LiWiError(f"training setting lr must be a positive number, not {self.lr!r}")
        unknown = sorted(set(self.loss_weights) - set(LOSSES))
        if unknown:
            raise LiWiError(f"unknown loss {unknown[0]!r} in loss_weights (known: {', '.join(LOSSES)})")
        if not any(self.loss_weights.get(name) for name in LOSSES):
            raise LiWiError("every loss term is off: nothing would be learnt")


# --------------------------------------------------------------------------- data


def sample_planes(sample) -> torch.Tensor:
    """The training planes of a sample's front-most layer, ``[1,11,H,W]`` uint8: composite
    (3), alpha (1), shadow (1, grey), what lies below the layer (3), its colour (3)."""
    stack = sample.stack
    front = stack.layers[-1]
    below = composite_layers(stack.background, [(l.rgba, l.shadow) for l in stack.layers[:-1]])
    planes = torch.cat([sample.composite, front.alpha, front.shadow.mean(dim=1, keepdim=True), below,
                        front.rgba[:, :3]], dim=1)
    return (planes.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def _target(planes: torch.Tensor, config: "TrainConfig", g: torch.Generator) -> dict[str, torch.Tensor]:
    """One training example from a sample's planes: at the scale inference sees it (the
    longest side at ``working_size``, jittered by ``scale_jitter``), a random ``crop`` of
    it, mirrored half of the time."""
    h, w = planes.shape[-2:]
    crop = config.crop
    lo, hi = 1.0 - config.scale_jitter, 1.0 + config.scale_jitter
    scale = config.working_size * (lo + (hi - lo) * float(torch.rand((), generator=g))) / max(h, w)
    scale = max(scale, crop / min(h, w))  # the crop must fit
    size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
    planes = resize(planes.float() / 255.0, size)
    h, w = planes.shape[-2:]
    y = int(torch.randint(0, h - crop + 1, (1,), generator=g))
    x = int(torch.randint(0, w - crop + 1, (1,), generator=g))
    planes = planes[..., y:y + crop, x:x + crop].clamp(0, 1)
    if float(torch.rand((), generator=g)) < 0.5:
        planes = planes.flip(-1)
    return {"image": planes[:, 0:3], "alpha": planes[:, 3:4], "shadow": planes[:, 4:5],
            "below": planes[:, 5:8], "fg": planes[:, 8:11]}


def _prompt(alpha: torch.Tensor, config: TrainConfig, g: torch.Generator) -> torch.Tensor:
    if float(torch.rand((), generator=g)) < config.p_automatic:
        return torch.zeros_like(alpha)
    if not config.degrade:
        return (alpha > 0.5).float()
    prompts = degrade_prompts(alpha, g)
    kinds = sorted(prompts)
    return prompts[kinds[int(torch.randint(0, len(kinds), (1,), generator=g))]]


class SampleBank:
    """The dataset's training planes, read once and kept as uint8 (about 1 MB per 384-px
    sample), drawn by a generator."""

    def __init__(self, root: str):
        if not root or not Path(root).is_dir():
            raise LiWiError(f"training data '{root}' does not exist: make it with python -m liwi_core.add")
        self.samples = [sample_planes(s) for s in iter_samples(root) if s.stack.layers]
        if not self.samples:
            raise LiWiError(f"training data '{root}' has no sample with a layer")

    def batch(self, config: TrainConfig, g: torch.Generator) -> dict[str, torch.Tensor]:
        picks = torch.randint(0, len(self.samples), (config.batch_size,), generator=g).tolist()
        items = [_target(self.samples[i], config, g) for i in picks]
        batch = {k: torch.cat([it[k] for it in items]) for k in items[0]}
        batch["prompt"] = torch.cat([_prompt(it["alpha"], config, g) for it in items])
        return batch


# --------------------------------------------------------------------------- losses


def _gradients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return t[..., :, 1:] - t[..., :, :-1], t[..., 1:, :] - t[..., :-1, :]


def loss_terms(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], weights: dict) -> dict[str, torch.Tensor]:
    """Every loss term whose weight is non-zero (unweighted values), see the module text."""
    terms = {}
    if weights.get("alpha"):
        # plus the error inside the band the prompt gets wrong (and the soft rim), averaged
        # there: copying the prompt is wrong only in that band, so it must weigh as much as
        # the rest of the crop
        err = (out["alpha"] - batch["alpha"]).abs()
        band = ((batch["prompt"] > 0.5) != (batch["alpha"] > 0.5)) | ((batch["alpha"] > 0.02) & (batch["alpha"] < 0.98))
        band = dilate(band.float(), 3)
        terms["alpha"] = err.mean() + (err * band).sum() / band.sum().clamp_min(1.0)
    if weights.get("alpha_gradient"):
        (px, py), (tx, ty) = _gradients(out["alpha"]), _gradients(batch["alpha"])
        terms["alpha_gradient"] = (px - tx).abs().mean() + (py - ty).abs().mean()
    if weights.get("background"):
        hole = dilate(((batch["alpha"] > 0.01) | (batch["shadow"] < 0.98)).float(), 2)
        err = (out["background"] - batch["below"]).abs()
        terms["background"] = (err * hole).sum() / (3 * hole.sum()).clamp_min(1.0) + 0.1 * err.mean()
    if weights.get("shadow"):
        terms["shadow"] = (out["shadow"] - batch["shadow"]).abs().mean()
    if weights.get("recompose"):
        a = out["alpha"]
        recomposed = a * batch["fg"] + (1 - a) * out["background"] * out["shadow"]
        terms["recompose"] = (recomposed - batch["image"]).abs().mean()
    return terms


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(folder: Path, model, optimizer, step: int, g: torch.Generator) -> None:
    """Model folder + optimizer / step / random state, written to a temporary folder and renamed."""
    from safetensors.torch import save_file

    tmp = folder.parent / f".tmp-{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tensors, meta = {}, {"step": step, "param_groups": [], "state_keys": {}}
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        meta["param_groups"].append({k: v for k, v in group.items()})
    for pid, st in state["state"].items():
        meta["state_keys"][str(pid)] = {}
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{key}"] = value.contiguous()
                meta["state_keys"][str(pid)][key] = "tensor"
            else:
                meta["state_keys"][str(pid)][key] = value
    tensors["rng"] = g.get_state()
    save_file(tensors, str(tmp / "trainer_state.safetensors"))
    (tmp / "trainer_state.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_checkpoint(folder: Path, model, optimizer, g: torch.Generator) -> int:
    """Restore what :func:`save_checkpoint` wrote; returns the step to continue from."""
    from safetensors.torch import load_file

    from liwi_core.engines.learned import load_model

    loaded = load_model(folder)
    model.load_state_dict(loaded.state_dict())
    tensors = load_file(str(folder / "trainer_state.safetensors"))
    meta = json.loads((folder / "trainer_state.json").read_text())
    state = {"param_groups": meta["param_groups"], "state": {}}
    for pid, keys in meta["state_keys"].items():
        state["state"][int(pid)] = {k: (tensors[f"opt.{pid}.{k}"] if v == "tensor" else v) for k, v in keys.items()}
    optimizer.load_state_dict(state)
    g.set_state(tensors["rng"])
    return int(meta["step"])


def keep_log_until(path: Path, step: int) -> None:
    """Drop the records of ``path`` (a log.jsonl) after ``step``: a run killed after its last
    checkpoint logged steps that its resumed run takes again (atomic; unreadable lines dropped)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode())


def warm_start(model, checkpoint: str) -> None:
    """Copy a checkpoint's weights into ``model`` where names match: tensors of equal shape
    as they are, input convolutions with more input channels padded with zeros (the new
    inputs start with no effect). With ``prefill`` newly on, the background rows of the
    head are zeroed, so the background starts as the prefill."""
    from liwi_core.engines.learned import load_model

    loaded = load_model(checkpoint)
    source = loaded.state_dict()
    target = model.state_dict()
    for name, value in source.items():
        if name not in target:
            continue
        if target[name].shape == value.shape:
            target[name] = value.clone()
        elif value.dim() == 4 and target[name].shape[0] == value.shape[0] and target[name].shape[1] > value.shape[1]:
            grown = torch.zeros_like(target[name])
            grown[:, : value.shape[1]] = value
            target[name] = grown
    if model.config.prefill and not loaded.config.get("prefill", False):
        target["head.weight"][2:5] = 0.0
        target["head.bias"][2:5] = 0.0
    model.load_state_dict(target)


# --------------------------------------------------------------------------- loop


@torch.no_grad()
def validate(model, samples, config: TrainConfig) -> dict[str, float]:
    """Alpha soft IoU and background L1 in the hole of the learned engine on held-out samples."""
    from liwi_core.engines import create

    model.eval()
    engine = create("learned", model=model)
    ious, bgs = [], []
    for sample in samples[: config.val_samples]:
        masks = torch.cat([sample.prompts[k]["dilated"] for k in reversed(range(len(sample.stack.layers)))])
        pred = engine.decompose(sample.composite, masks)
        ious += [alpha_soft_iou(p.alpha, g.alpha) for p, g in zip(pred.layers, sample.stack.layers)]
        bgs.append(background_l1_in_hole(pred.background, sample.stack.background, sample.stack.hole))
    model.train()
    return {"val_alpha_iou": sum(ious) / max(1, len(ious)), "val_background_l1": sum(bgs) / max(1, len(bgs))}


def train(config: TrainConfig, resume: bool = False, log=print, stop_at: int | None = None) -> dict:
    """Train to ``config.steps`` (``stop_at`` ends this process earlier, as a kill would)."""
    from accelerate import Accelerator

    config.check()
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise LiWiError(f"--out '{out}' is a file, not a run folder")
    if not resume and (out / "checkpoint-latest").is_dir():
        raise LiWiError(f"'{out}' already holds a checkpoint: --resume to continue it, or another --out "
                        "(a new run would replace it)")
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=not torch.cuda.is_available())
    torch.manual_seed(config.seed)
    bank = SampleBank(config.data)
    val = list(iter_samples(config.val_data)) if config.val_data else []
    from .model import LiWiNet  # diffusers: needed to train, not to list the commands

    model = LiWiNet(base_channels=config.base_channels, depth=config.depth, working_size=config.working_size,
                    prefill=config.prefill)
    if config.init_from and not (resume and (Path(config.out) / "checkpoint-latest").is_dir()):
        warm_start(model, config.init_from)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # each process draws its own batches: the seed is offset by the process index
    g = torch.Generator().manual_seed(config.seed * 1000 + accelerator.process_index)
    out.mkdir(parents=True, exist_ok=True)
    step = 0
    if resume and (out / "checkpoint-latest").is_dir():
        step = load_checkpoint(out / "checkpoint-latest", model, optimizer, g)
    if accelerator.is_main_process:
        keep_log_until(out / "log.jsonl", step)
    model, optimizer = accelerator.prepare(model, optimizer)
    weights = config.loss_weights
    history = []
    start, seen = time.perf_counter(), 0
    with open(out / "log.jsonl", "a") as logfile:
        while step < min(config.steps, stop_at or config.steps):
            lr = config.lr * 0.5 * (1 + math.cos(math.pi * step / max(1, config.steps)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = {k: v.to(accelerator.device) for k, v in bank.batch(config, g).items()}
            with accelerator.autocast():
                out_ = model(batch["image"], batch["prompt"])
                terms = loss_terms(out_, batch, weights)
                loss = sum(weights[k] * v for k, v in terms.items())
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            step += 1
            seen += config.batch_size * accelerator.num_processes
            record = {"step": step, "loss": float(loss.detach()), "lr": lr,
                      **{k: float(v.detach()) for k, v in terms.items()}}
            history.append(record)
            if step % config.log_every == 0 or step == config.steps:
                rate = seen / max(time.perf_counter() - start, 1e-9)
                if accelerator.is_main_process:
                    log(f"step {step}/{config.steps} loss {record['loss']:.4f} {rate:.1f} samples/s")
            if val and (step % config.val_every == 0 or step == config.steps):
                record.update(validate(accelerator.unwrap_model(model), val, config))
                log(f"  validation: {json.dumps({k: round(v, 4) for k, v in record.items() if k.startswith('val')})}")
            if accelerator.is_main_process:
                logfile.write(json.dumps(record) + "\n")
                logfile.flush()
                if step % config.checkpoint_every == 0 or step == config.steps:
                    unwrapped = accelerator.unwrap_model(model)
                    save_checkpoint(out / "checkpoint-latest", unwrapped, optimizer, step, g)
    return {"step": step, "history": history, "model": accelerator.unwrap_model(model)}


def configure(parser: argparse.ArgumentParser) -> None:
    """The ``train`` command's flags (:mod:`liwi_core.cli`)."""
    parser.add_argument("--config", help="JSON file of TrainConfig fields")
    parser.add_argument("--data", help="ADD dataset folder")
    parser.add_argument("--val-data", help="held-out dataset for validation metrics")
    parser.add_argument("--out", help="run folder (checkpoints, log.jsonl)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-latest")
    parser.add_argument("--stop-at", type=int, help="end this run at that step (the schedule still spans --steps)")
    parser.add_argument("--no-loss", action="append", choices=LOSSES, default=[], help="turn a loss term off")
    parser.add_argument("--no-degrade", action="store_true", help="prompts are the clean alpha (ablation)")
    parser.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> None:
    try:
        values = json.loads(Path(args.config).read_text()) if args.config else {}
        config = TrainConfig(**values)
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise LiWiError(f"cannot use config '{args.config}': {exc}") from None
    for key in ("data", "val_data", "out", "steps", "batch_size"):
        if getattr(args, key) is not None:
            setattr(config, key, getattr(args, key))
    for name in args.no_loss:
        config.loss_weights = {**config.loss_weights, name: 0.0}
    if args.no_degrade:
        config.degrade = False
    result = train(config, resume=args.resume, stop_at=args.stop_at)
    Path(config.out, "train_config.json").write_text(json.dumps(asdict(config), indent=1) + "\n")
    print(f"done at step {result['step']}; checkpoint: {Path(config.out) / 'checkpoint-latest'}")
