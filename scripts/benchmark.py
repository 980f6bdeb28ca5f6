"""Seconds and peak memory of the classical engine for one object, on this machine.

    python scripts/benchmark.py [--sizes 512 1024 2048] [--threads 2] [--repeats 3]

Each size runs in a fresh process so peak memory (max RSS) is its own; "peak MB" is the
process's peak minus what it held after imports and input creation. The scene is the
synthetic one of the tests (a soft-edged object with a cast shadow on a textured ground),
scaled to the size; the mask is rough (object grown by 3%).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_large(threads: int) -> dict:
    """A 6000x4000 photo-sized input with a 2500x2000 object: must fit well inside 24 GB."""
    import torch

    from liwi_core.decompose import decompose

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 4000, 6000, generator=g) * 0.2 + 0.4
    mask = torch.zeros(1, 1, 4000, 6000)
    mask[..., 1000:3000, 2000:4500] = 1.0
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    decompose(image, mask)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_rss_mb": peak / 1024.0, "peak_extra_mb": (peak - base) / 1024.0}


def run_one(size: int, threads: int, repeats: int) -> dict:
    import torch

    from liwi_core.decompose import decompose
    from liwi_core.metrics import recompose_psnr as psnr
    from liwi_core.synthetic import scene

    torch.set_num_threads(threads)
    image, _, _, _, rough = scene(size, size)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        stack = decompose(image, rough)
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"size": size, "seconds_median": sorted(times)[len(times) // 2], "seconds_min": min(times),
            "peak_mb": (peak - base) / 1024.0, "psnr_db": psnr(stack.composite(), image), "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[512, 1024, 2048])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", action="store_true", help="also time a 6000x4000 photo")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.large:
        print(json.dumps(run_large(args.threads)))
        return
    if args.one:
        print(json.dumps(run_one(args.one, args.threads, args.repeats)))
        return
    rows = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--threads", str(args.threads),
                              "--repeats", str(args.repeats)], capture_output=True, text=True, check=True,
                             cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"| size | seconds (median of {args.repeats}) | peak extra memory (MB) | recompose PSNR (dB) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']}x{r['size']} | {r['seconds_median']:.2f} | {r['peak_mb']:.0f} | {r['psnr_db']:.1f} |")


if __name__ == "__main__":
    main()
