"""ADD throughput on this machine: samples per second at 512 px with the classical tools.

    python scripts/benchmark_add.py [--num 24] [--size 512] [--processes 1]

Sources are the bundled example photos and masks. Times the whole run (cleaning
backgrounds and extracting cut-outs once per process, then composing, curating and
writing each sample), so it is what a user sees. With --processes N it runs N ranks in
parallel processes, as `accelerate launch` would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=24)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images, masks = Path(tmp) / "images", Path(tmp) / "masks"
        images.mkdir()
        masks.mkdir()
        for p in (ROOT / "example_images").glob("*.png"):
            shutil.copy(p, (masks if p.stem.endswith("_mask") else images) / p.name)
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "liwi_core.add", "--images", str(images), "--masks", str(masks),
               "--out", str(out), "--num", str(args.num), "--size", str(args.size), "--quiet"]
        start = time.perf_counter()
        procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT), "RANK": str(r),
                                       "WORLD_SIZE": str(args.processes), "OMP_NUM_THREADS": "1"})
                 for r in range(args.processes)]
        stats = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        seconds = time.perf_counter() - start
    kept = sum(s["kept"] for s in stats)
    dropped = sum(s["dropped"] for s in stats)
    print(f"| processes | slots | kept | dropped | seconds | kept samples/s | samples/s per process |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.processes} | {args.num} | {kept} | {dropped} | {seconds:.1f} | {kept / seconds:.2f} | "
          f"{kept / seconds / args.processes:.2f} |")


if __name__ == "__main__":
    main()
