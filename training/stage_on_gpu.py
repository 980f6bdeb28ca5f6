"""One refiner, proposer or segmenter stage on a machine with many CPU cores and a GPU, in a fixed time.

    python training/stage_on_gpu.py --images data/sources/backgrounds --objects data/train-objects \\
        --work runs/gpu-stage --config training/configs/refiner_stage6_gpu.json --minutes 8
    python training/stage_on_gpu.py --trainer proposer --images ... --objects ... \\
        --work runs/gpu-proposer --config training/configs/proposer_gpu.json --minutes 6

With ``--trainer proposer`` or ``--trainer segmenter`` there are no examples to build: the
proposer (:mod:`liwi_core.train_proposer`) or the prompt segmenter
(:mod:`liwi_core.train_segmenter`) reads ADD's samples as they are written, with
``--example-processes`` loader processes, once ``--min-examples`` samples exist.

On 2 CPU cores the classical engine's answers (the refiner's examples) are what costs; a lent
GPU machine has 16 cores besides its GPU. So everything runs at once there: ADD makes samples
(``--add-processes`` ranks), the example builder turns them into refiner examples (``--shard``
per process, one thread each), and as soon as ``--min-examples`` exist the refiner trains on
the GPU, reloading the growing example folder as it goes (``reload_every``). When the time is
up the makers are stopped, the last checkpoint is written (``<work>/run/checkpoint-latest``),
and a rerun resumes every part (ADD's slots, the examples and the training are each
resumable). The learning rate follows the time (``anneal_within_minutes`` in the config).

With ``--build-minutes`` the two happen one after the other instead: the makers run that long
on every core, are stopped, and the refiner then trains on the finished folder with the cores
free. Training while they make was starved on a lent H100 (2026-11-27: each reload read
hundreds of new files on cores the builders held; 1,400 steps of 32 in 6.6 minutes, against
28 steps per second on a finished folder).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _spawn(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    with open(log, "a") as out:  # the child keeps its own copy of the handle
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=environment,
                                stdout=out, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="background photos for ADD")
    p.add_argument("--objects", required=True, help="cut-outs for ADD (PNG with transparency)")
    p.add_argument("--work", required=True, help="folder for add/ (ADD's dataset), examples/, run/ and logs")
    p.add_argument("--config", required=True, help="the refiner's training config (JSON)")
    p.add_argument("--minutes", type=float, required=True, help="training time (the whole job takes a little more)")
    p.add_argument("--seed", type=int, default=20, help="ADD seed (a new seed: new samples)")
    p.add_argument("--num", type=int, default=20000, help="ADD slots (more than the time allows is fine)")
    p.add_argument("--add-processes", type=int, default=4)
    p.add_argument("--example-processes", type=int, default=None, help="default: the cores left, less one")
    p.add_argument("--min-examples", type=int, default=400, help="examples to wait for before training")
    p.add_argument("--build-minutes", type=float, default=None,
                   help="make examples for this long on every core, then stop the makers and train on what was "
                        "made (refiner only); default: train while they make, from --min-examples on")
    p.add_argument("--device", default="cuda")
    p.add_argument("--trainer", choices=("refiner", "proposer", "segmenter"), default="refiner")
    args = p.parse_args(argv)

    work = Path(args.work).resolve()
    dataset, examples, run = work / "add", work / "examples", work / "run"
    for folder in (work, examples, run):
        folder.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 2
    makers_n = args.example_processes or max(1, cores - args.add_processes - 1)
    started = time.time()

    def say(message: str) -> None:
        print(f"[{(time.time() - started) / 60:5.1f} min] {message}", flush=True)

    makers = []
    for rank in range(args.add_processes):
        makers.append(_spawn(["-m", "liwi_core", "add", "--images", args.images, "--objects", args.objects,
                              "--out", str(dataset), "--num", str(args.num), "--seed", str(args.seed),
                              "--size", "384", "--quiet"], work / f"add-{rank}.log",
                             {"RANK": str(rank), "WORLD_SIZE": str(args.add_processes)}))
    time.sleep(5)  # rank 0 writes the dataset's config first
    if args.trainer in ("proposer", "segmenter"):
        return _train_on_samples(args, dataset, run, makers, makers_n, say)
    for shard in range(makers_n):
        makers.append(_spawn(["-m", "liwi_core.train_refiner", "examples", "--data", str(dataset),
                              "--out", str(examples), "--seed", str(args.seed), "--wait",
                              "--shard", f"{shard}/{makers_n}"], work / f"examples-{shard}.log"))
    say(f"{args.add_processes} ADD ranks and {makers_n} example builders started")
    if args.build_minutes is not None:
        # build first, then train alone: while the builders hold every core, the trainer's reloads
        # of the growing folder starve it (1,400 steps in 6.6 minutes on an H100, 2026-11-27)
        while time.time() - started < args.build_minutes * 60 and any(m.poll() is None for m in makers):
            time.sleep(5)
        _stop(makers)
        made = len(list(examples.glob("*.pt")))
        if made < args.min_examples:
            say(f"only {made} examples in {args.build_minutes} minutes; see the logs in {work}")
            return 1
        threads = str(max(2, cores // 2))
    else:
        while len(list(examples.glob("*.pt"))) < args.min_examples:
            if all(m.poll() is not None for m in makers):
                say("every maker stopped before enough examples were written; see the logs in " + str(work))
                return 1
            time.sleep(5)
        threads = "2"  # the makers have the other cores
    say(f"{len(list(examples.glob('*.pt')))} examples; training on {args.device}")
    code = subprocess.call([sys.executable, "-m", "liwi_core.train_refiner", "fit", "--examples", str(examples),
                            "--out", str(run), "--config", args.config, "--minutes", str(args.minutes),
                            "--device", args.device], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": threads})
    _stop(makers)
    say(json.dumps({"fit_exit": code, "examples": len(list(examples.glob("*.pt"))),
                    "samples": len(list((dataset / "samples").glob("*")))}))
    return code


def _stop(makers: list) -> None:
    for m in makers:
        if m.poll() is None:
            m.terminate()
    for m in makers:
        m.wait()


def _train_on_samples(args, dataset: Path, run: Path, makers: list, workers: int, say) -> int:
    samples = dataset / "samples"
    while not samples.is_dir() or len([p for p in samples.iterdir() if not p.name.startswith(".")]) < args.min_examples:
        if all(m.poll() is not None for m in makers):
            say("ADD stopped before enough samples were written; see the logs in " + str(dataset.parent))
            return 1
        time.sleep(3)
    say(f"{len(list(samples.iterdir()))} samples; training the {args.trainer} on {args.device}")
    code = subprocess.call([sys.executable, "-m", f"liwi_core.train_{args.trainer}", "fit", "--data", str(dataset),
                            "--out", str(run), "--config", args.config, "--minutes", str(args.minutes),
                            "--device", args.device, "--workers", str(workers)], cwd=ROOT,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    _stop(makers)
    say(json.dumps({"fit_exit": code, "samples": len(list(samples.glob("*")))}))
    return code


if __name__ == "__main__":
    sys.exit(main())
