"""Compare ways of turning a rough prompt into an object's alpha, on the tuning scenes only.

    python scripts/tune_alpha.py [--data benchmarks/dev] [--variants current,saliency] [--limit N]

Each object of each scene is cut from the composite with its own prompt kind (occlusion by
a front object is ignored: the truth is the object's visible alpha). Reports alpha soft IoU
and foreground RGB L1 (over true alpha > 0) per prompt kind. Settings are chosen here, on
``benchmarks/dev`` (training-half cut-outs, training backgrounds: ``build_dev``), never on the
held-out set.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from liwi_core import matting  # noqa: E402
from liwi_core.benchmark_scenes import build_dev  # noqa: E402
from liwi_core.dataset import iter_samples  # noqa: E402
from liwi_core.engines.classical import ClassicalSettings, estimate_layers, object_region  # noqa: E402
from liwi_core.engines.exact import explain_object  # noqa: E402
from liwi_core.metrics import alpha_soft_iou, rgb_l1  # noqa: E402


DEFAULT_LIMITS = (matting.SALIENCY_LOW, matting.SALIENCY_HIGH)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="benchmarks/dev")
    p.add_argument("--variants", default="baseline,none,saliency",
                   help="comma-separated: baseline (prompt as alpha, image as colour), none (GrabCut from "
                        "the mask alone) or saliency (saliency_guide on), optionally with "
                        "thresholds as saliency@LOW:HIGH and a fixed edge radius as #R")
    p.add_argument("--limit", type=int, default=0)
    args = p.parse_args()
    if not Path(args.data, "config.json").is_file():
        build_dev(args.data, progress=True)
    settings = ClassicalSettings(shadow_reach=0.75)
    variants = args.variants.split(",")
    scores = {v: defaultdict(list) for v in variants}
    seconds = defaultdict(float)
    for n, sample in enumerate(iter_samples(args.data)):
        if args.limit and n >= args.limit:
            break
        layers = sample.stack.layers
        kinds = sample.meta["prompt_kinds"]
        for k, layer in enumerate(layers):
            alpha_true = layer.rgba[:, 3:4]
            for front in layers[k + 1:]:
                alpha_true = alpha_true * (1 - front.rgba[:, 3:4])
            prompt = sample.prompts[k][kinds[k]]
            if float(prompt.sum()) == 0:
                continue
            region = object_region(prompt, settings)
            y0, y1, x0, x1 = region
            img = sample.composite[..., y0:y1, x0:x1]
            rough = prompt[..., y0:y1, x0:x1]
            truth = alpha_true[..., y0:y1, x0:x1]
            fg_true = layer.rgba[:, :3, y0:y1, x0:x1]
            for v in variants:
                t = time.perf_counter()
                # "saliency@LOW:HIGH" tries other thresholds, "#R" a fixed edge_radius
                v_main, _, radius = v.partition("#")
                guide, _, limits = v_main.partition("@")
                matting.SALIENCY_LOW, matting.SALIENCY_HIGH = (
                    (float(x) for x in limits.split(":")) if limits else DEFAULT_LIMITS)
                s = ClassicalSettings(shadow_reach=0.75, saliency_guide=guide == "saliency",
                                      edge_radius=int(radius or 0))
                alpha, shadow = estimate_layers(img, rough, s) if guide != "baseline" else (None, None)
                if guide == "baseline":
                    alpha, fg = (rough > 0.5).float(), img
                else:
                    fg, alpha, _, _ = explain_object(img, alpha, shadow)
                seconds[v] += time.perf_counter() - t
                for key in (kinds[k], "all"):
                    scores[v][key].append((alpha_soft_iou(alpha, truth), rgb_l1(fg, fg_true, truth)))
        print(f"\r{n + 1} scenes", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    kinds = ["all", "exact", "dilated", "eroded", "blob", "box"]
    print(f"{'variant':<14}" + "".join(f"{k:>16}" for k in kinds) + "   seconds")
    for v in variants:
        row = []
        for k in kinds:
            vals = scores[v][k]
            iou = sum(a for a, _ in vals) / max(len(vals), 1)
            l1 = sum(b for _, b in vals) / max(len(vals), 1)
            row.append(f"{iou:7.3f} /{l1:6.3f}")
        print(f"{v:<14}" + "".join(f"{r:>16}" for r in row) + f"   {seconds[v]:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
