"""Speed of the learned engine (inference at several sizes) and of training, on this machine.

    python scripts/benchmark_learned.py [--config training/configs/default.json] [--sizes 512 1024 2048]

Inference uses the bundled default checkpoint (``--checkpoint`` for another; with
``--random`` a model of ``--config`` with random weights): one object with a prompt mask,
median of 3, each size in its own process for its peak memory. Training: samples/s
over 10 steps on a small ADD set made from the bundled photos.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def infer(size: int, config: dict, threads: int, checkpoint: str | None, random: bool) -> dict:
    import torch

    from liwi_core.decompose import decompose
    from liwi_core.engines import create
    from liwi_core.model import LiWiNet
    from liwi_core.synthetic import scene

    torch.set_num_threads(threads)
    if random:
        model = LiWiNet(base_channels=config["base_channels"], depth=config["depth"],
                        working_size=config["working_size"]).eval()
    else:
        from liwi_core.engines.learned import load_model
        model = load_model(checkpoint)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    image, _, _, _, rough = scene(size, size)
    image, rough = image.to(device), rough.to(device)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model and input in memory, nothing run yet
    decompose(image, rough, create("learned", model=model))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        decompose(image, rough, create("learned", model=model))
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"size": size, "seconds": sorted(times)[1], "peak_mb": (peak - base) / 1024.0, "device": device}


def train_speed(config: dict) -> dict:
    from liwi_core import train as trainer

    from liwi_core.add.run import AddConfig, run

    with tempfile.TemporaryDirectory() as tmp:
        run(AddConfig(images=str(ROOT / "example_images"), masks=str(ROOT / "example_images"), out=f"{tmp}/d",
                      num=8, size=256), progress=False)
        cfg = trainer.TrainConfig(**{**config, "data": f"{tmp}/d", "out": f"{tmp}/run", "steps": 12,
                                     "checkpoint_every": 1000, "val_every": 1000, "log_every": 1000})
        t = time.perf_counter()
        trainer.train(cfg, log=lambda *_: None, stop_at=2)  # warm-up
        t = time.perf_counter()
        trainer.train(trainer.TrainConfig(**{**cfg.__dict__, "out": f"{tmp}/run2"}), log=lambda *_: None)
        seconds = time.perf_counter() - t
    return {"samples_per_s": 12 * cfg.batch_size / seconds, "batch_size": cfg.batch_size, "crop": cfg.crop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "training" / "configs" / "default.json"))
    parser.add_argument("--sizes", type=int, nargs="*", default=[512, 1024, 2048])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", help="checkpoint folder (default: the bundled liwi-default)")
    parser.add_argument("--random", action="store_true", help="random weights of --config instead of a checkpoint")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    if args.one:
        print(json.dumps(infer(args.one, config, args.threads, args.checkpoint, args.random)))
        return
    if args.train_only:
        print(json.dumps(train_speed(config)))
        return
    print("| size | seconds (median of 3) | peak extra memory (MB) | device |")
    print("|---|---|---|---|")
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(size), "--config", args.config, "--threads", str(args.threads)]
        cmd += (["--checkpoint", args.checkpoint] if args.checkpoint else []) + (["--random"] if args.random else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {size}x{size} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {r['device']} |")
    out = subprocess.run([sys.executable, __file__, "--train-only", "--config", args.config],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\ntraining: {r['samples_per_s']:.1f} samples/s (batch {r['batch_size']}, crop {r['crop']}px)")


if __name__ == "__main__":
    main()
