"""Scores of every engine on the four example photos, to check that a change moves them by little.

    python scripts/example_scores.py --out before.json
    python scripts/example_scores.py --compare before.json [--tolerance 0.005]   # exit 1 if a score moves more

Per photo and engine (classical, baseline, learned prompted with the bundled checkpoint):
alpha soft IoU of the layer against the photo's mask, and recomposition PSNR (capped at 99 dB);
learned automatic: the alpha IoU of its first layer against the mask.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from liwi_core.engines import create
from liwi_core.imageio import load_image, load_mask
from liwi_core.metrics import alpha_soft_iou, recompose_psnr

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ["coffee", "chelsea", "astronaut", "rocket"]


def scores() -> dict:
    torch.set_num_threads(2)
    engines = {name: create(name) for name in ("classical", "baseline", "learned")}
    out = {}
    for photo in PHOTOS:
        image = load_image(ROOT / "example_images" / f"{photo}.png")
        mask = load_mask(ROOT / "example_images" / f"{photo}_mask.png")
        for name, engine in engines.items():
            stack = engine.decompose(image, mask)
            out[f"{photo}/{name}/alpha_iou"] = alpha_soft_iou(stack.layers[0].alpha, mask)
            out[f"{photo}/{name}/recompose_psnr"] = min(recompose_psnr(stack.composite(), image[:, :3]), 99.0)
        auto = engines["learned"].decompose(image, None)
        out[f"{photo}/learned-automatic/alpha_iou"] = (alpha_soft_iou(auto.layers[-1].alpha, mask)
                                                       if auto.layers else 0.0)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the scores here")
    p.add_argument("--compare", help="scores written before")
    p.add_argument("--tolerance", type=float, default=0.005, help="largest move allowed for IoU (PSNR: stays >= 45)")
    args = p.parse_args(argv)
    now = scores()
    if args.out:
        Path(args.out).write_text(json.dumps(now, indent=1) + "\n")
    if not args.compare:
        print(json.dumps(now, indent=1))
        return 0
    before = json.loads(Path(args.compare).read_text())
    bad = []
    print("| score | before | after | change |\n|---|---|---|---|")
    for key in sorted(before):
        change = now[key] - before[key]
        print(f"| {key} | {before[key]:.4f} | {now[key]:.4f} | {change:+.4f} |")
        if key.endswith("psnr"):
            if "baseline" not in key and now[key] < 45:
                bad.append(key)
        elif abs(change) >= args.tolerance:
            bad.append(key)
    print(f"{len(bad)} score(s) out of bounds" + (": " + ", ".join(bad) if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
