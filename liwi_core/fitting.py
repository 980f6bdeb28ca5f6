"""What the trainers share: the learning-rate schedule, one optimiser step, the bookkeeping after
it (log, atomic checkpoint, validation, the time limit) and the held-back split.

Used by :mod:`liwi_core.train_refiner`, :mod:`liwi_core.train_proposer` and
:mod:`liwi_core.train_segmenter`; a checkpoint is a diffusers folder (``save_pretrained``) plus ``training_state.pt`` (optimiser and step), written
to ``<out>/checkpoint-latest`` atomically, so a rerun resumes from the last one.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["VAL_EVERY", "add_fit_parser", "after_step", "is_held_back", "jsonl_logger", "learning_rate", "load_example",
           "load_latest", "make_optimizer", "optimise", "run_fit", "save_checkpoint", "split_samples"]

#: one sample in VAL_EVERY (by its number) is held back for validation
VAL_EVERY = 20


def is_held_back(name: str) -> bool:
    """Whether a sample (``<prefix>-<number>``, or an example ``<sample id>_o<depth>``) is held back:
    by its sample's number, so the objects of one sample stay on one side."""
    number = Path(name).stem.split("_o")[0].rsplit("-", 1)[-1]
    return number.isdigit() and int(number) % VAL_EVERY == 0


def split_samples(root) -> tuple[list[str], list[str]]:
    """The finished samples of the ADD dataset ``root`` as ``(train, held back)`` ids
    (:func:`is_held_back`); a dataset with none is a :class:`~liwi_core.errors.LiWiError`."""
    from .dataset import sample_ids
    from .errors import LiWiError

    ids = sample_ids(root)
    if not ids:
        raise LiWiError(f"dataset '{root}' has no finished samples: run 'python -m liwi_core add' first")
    held = [is_held_back(s) for s in ids]
    return [s for s, h in zip(ids, held) if not h], [s for s, h in zip(ids, held) if h]


def load_example(path: Path) -> dict:
    """One training example file (tensors saved with ``torch.save``, read with ``weights_only``). A
    truncated or foreign file (a build killed while writing outside its atomic rename, a copy cut
    short) is a :class:`~liwi_core.errors.LiWiError` naming it, not an unnamed unpickling error."""
    from .errors import LiWiError

    try:
        return torch.load(path, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise LiWiError(f"cannot read training example '{path}' ({type(exc).__name__}): delete it and make "
                        "the examples again (the examples command skips the ones that exist)") from None


def learning_rate(config: dict, step: int, started: float, minutes: float | None, warmup_steps: int = 0) -> float:
    """``config["lr"]`` on a cosine to 0 over ``config["steps"]``, after a linear warm-up of
    ``config.get("warmup_steps", warmup_steps)`` steps; with ``config["anneal_within_minutes"]``
    and ``minutes`` the cosine ends when the time is up even if steps remain (a lent GPU for a
    fixed time)."""
    progress = step / config["steps"]
    if minutes is not None and config.get("anneal_within_minutes"):
        progress = max(progress, (time.time() - started) / (minutes * 60))
    warm = min(1.0, (step + 1) / max(1, config.get("warmup_steps", warmup_steps)))
    return warm * config["lr"] * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def optimise(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    """One step at ``lr``, the gradient's norm clipped to 1."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def load_latest(out: Path, model_class):
    """``(model, training state)`` from ``<out>/checkpoint-latest`` (:func:`save_checkpoint`), or
    None when there is none yet (a fresh start)."""
    latest = Path(out) / "checkpoint-latest"
    if not latest.exists():
        return None
    return model_class.from_pretrained(latest), torch.load(latest / "training_state.pt", weights_only=True)


def make_optimizer(model: torch.nn.Module, config: dict, state: dict | None) -> tuple[torch.optim.Optimizer, int]:
    """AdamW at ``config["lr"]`` (weight decay 1e-4) and the step to go on from: the saved
    optimiser and step of ``state`` (from :func:`load_latest`), else a fresh one at step 0.
    Call it once the model is on its device: the saved tensors follow the parameters."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=1e-4)
    if state is None:
        return optimizer, 0
    optimizer.load_state_dict(state["optimizer"])
    return optimizer, state["step"]


def save_checkpoint(model, optimizer: torch.optim.Optimizer, step: int, out: Path) -> None:
    """``<out>/checkpoint-latest`` replaced atomically: the model's folder and its training state."""
    tmp = out / "checkpoint-latest.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save({"optimizer": optimizer.state_dict(), "step": step}, tmp / "training_state.pt")
    final = out / "checkpoint-latest"
    old = out / "checkpoint-latest.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def after_step(step: int, config: dict, started: float, minutes: float | None, log: Callable[[str], None],
               losses: dict[str, torch.Tensor], lr: float, save: Callable[[], None],
               validate: Callable[[], dict], **extra) -> bool:
    """The bookkeeping after step ``step``: a log line every ``log_every`` (losses, ``extra``), a
    checkpoint every ``save_every``, validation every ``val_every``, both also at the last step
    and when ``minutes`` are up. Returns whether the time is up."""
    if step % config.get("log_every", 25) == 0:
        log(json.dumps({"step": step, "lr": round(lr, 7), **{k: round(v.item(), 4) for k, v in losses.items()},
                        **extra, "minutes": round((time.time() - started) / 60, 2)}))
    timed_out = minutes is not None and time.time() - started > minutes * 60
    last = step == config["steps"] or timed_out
    if step % config.get("save_every", 250) == 0 or last:
        save()
    if step % config.get("val_every", 1000) == 0 or last:
        log(json.dumps({"step": step, **extra, "val": validate()}))
    return timed_out


def jsonl_logger(out: Path) -> Callable[[str], None]:
    """A log that prints each line and appends it to ``<out>/log.jsonl``."""
    def log(line: str) -> None:
        print(line, flush=True)
        with open(out / "log.jsonl", "a") as fh:
            fh.write(line + "\n")
    return log


def add_fit_parser(sub, what: str, default_config: str):
    """The ``fit`` command of a trainer that reads an ADD dataset as it fills (the proposer, the
    segmenter): ``--data --out --config --minutes --device --workers``; ``default_config`` is a
    file name in ``training/configs``."""
    f = sub.add_parser("fit", help=f"train or resume the {what} on an ADD dataset")
    f.add_argument("--data", required=True, help="ADD dataset folder (it may still be filling)")
    f.add_argument("--out", required=True)
    f.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "training" / "configs" /
                                           default_config))
    f.add_argument("--minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    f.add_argument("--device", default="cpu", help="torch device of the training steps, e.g. cuda")
    f.add_argument("--workers", type=int, default=0, help="processes reading samples")
    return f


def run_fit(fit: Callable, args) -> int:
    """Run ``fit(data, out, config, minutes, log, device=, workers=)`` for :func:`add_fit_parser`'s
    arguments, logging to ``<out>/log.jsonl``; a :class:`~liwi_core.errors.LiWiError` is one line
    on stderr and exit status 1."""
    import sys

    from .errors import LiWiError

    try:
        config = json.loads(Path(args.config).read_text())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        print(fit(args.data, out, config, args.minutes, jsonl_logger(out), device=args.device, workers=args.workers))
    except LiWiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
