"""Evaluation: ``python -m liwi_core.eval DATASET`` or ``python -m liwi_core.eval --benchmark``.

Runs engines over a layered dataset (:mod:`liwi_core.dataset`) and prints one table of
quality and speed, each engine also as a ratio to the naive baseline.

Engines: ``classical`` (mask-guided, no weights), ``baseline`` (:mod:`liwi_core.baseline`),
``folder:DIR`` (layers another tool wrote in the CLI's folder format, ``DIR/<sample id>/``).

Flavours: ``prompted`` (each ground-truth layer's prompt mask of ``--prompt`` kind is
given, front to back) and ``automatic`` (no masks; engines that need masks report n/a).

Per sample and engine: DTW scores with 0 and 5 merge edits (LayerD's protocol, background
included as the bottom layer); in prompted mode also alpha IoU and RGB L1 of each layer
against the ground-truth layer its prompt came from; background L1 in the ground-truth
hole; shadow L1 inside the ground-truth shadow; recomposition PSNR; seconds per image; and
the process's peak memory. Each engine runs in its own process so its peak is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from .dataset import iter_samples, sample_ids
from .errors import LiWiError
from .metrics import (alpha_soft_iou, background_l1_in_hole, match_stacks, recompose_psnr, rgb_l1, shadow_l1,
                      stack_layers)

__all__ = ["evaluate", "build_benchmark", "main", "BENCHMARK"]

ROOT = Path(__file__).resolve().parent.parent
# the held-out benchmark: ADD on the bundled example photos, which training recipes exclude
BENCHMARK = {"images": str(ROOT / "example_images"), "masks": str(ROOT / "example_images"),
             "num": 24, "seed": 2605, "size": 384, "max_objects": 2}
METRICS = ["dtw_rgb_l1@0", "dtw_alpha_iou@0", "dtw_rgb_l1@5", "dtw_alpha_iou@5", "prompt_alpha_iou",
           "prompt_rgb_l1", "background_l1_hole", "shadow_l1", "recompose_psnr", "seconds"]
HIGHER_IS_BETTER = {"dtw_alpha_iou@0", "dtw_alpha_iou@5", "prompt_alpha_iou", "recompose_psnr"}


def build_benchmark(out) -> Path:
    """Make the held-out set with ADD (deterministic; skipped if already complete)."""
    from .add.run import AddConfig, run

    out = Path(out)
    run(AddConfig(out=str(out), **BENCHMARK), progress=False)
    return out


def _engine(name: str):
    """``run(composite, masks_front_to_back or None, sample_id) -> LayerStack``."""
    if name == "classical":
        from .decompose import decompose
        return lambda image, masks, sid: decompose(image, masks)
    if name == "baseline":
        from .baseline import baseline_decompose

        def run(image, masks, sid):
            if masks is None:
                raise LiWiError("the baseline needs masks")
            return baseline_decompose(image, masks)
        return run
    if name.startswith("folder:"):
        from .export import load_layers_dir
        folder = Path(name.split(":", 1)[1])
        return lambda image, masks, sid: load_layers_dir(folder / sid)
    raise LiWiError(f"unknown engine '{name}': use classical, baseline or folder:DIR")


def _score(sample, pred, prompted: bool) -> dict:
    gt = sample.stack
    scores = match_stacks(stack_layers(pred), stack_layers(gt))
    row = {"dtw_rgb_l1@0": scores[0]["rgb_l1"], "dtw_alpha_iou@0": scores[0]["alpha_iou"],
           "dtw_rgb_l1@5": scores[5]["rgb_l1"], "dtw_alpha_iou@5": scores[5]["alpha_iou"],
           "background_l1_hole": background_l1_in_hole(pred.background, gt.background, gt.hole),
           "recompose_psnr": min(recompose_psnr(pred.composite(), sample.composite), 99.0)}
    n = len(gt.layers)
    pairs = [(layer, gt.layers[n - 1 - layer.prompt_index]) for layer in pred.layers
             if prompted and layer.prompt_index is not None and 0 <= layer.prompt_index < n]
    if pairs:
        row["prompt_alpha_iou"] = sum(alpha_soft_iou(p.alpha, g.alpha) for p, g in pairs) / len(pairs)
        row["prompt_rgb_l1"] = sum(rgb_l1(p.rgba[:, :3], g.rgba[:, :3], g.alpha) for p, g in pairs) / len(pairs)
        row["shadow_l1"] = sum(shadow_l1(p.shadow, g.shadow) for p, g in pairs) / len(pairs)
    return row


def evaluate(dataset, engine: str, flavour: str = "prompted", prompt: str = "dilated",
             limit: int | None = None) -> dict:
    """Mean metrics of one engine over a dataset, plus per-sample rows and peak memory."""
    run = _engine(engine)
    ids = sample_ids(dataset)[:limit] if limit else None
    rows, failures = [], {}
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for sample in iter_samples(dataset, ids=ids):
        masks = None
        if flavour == "prompted":
            missing = [k for k, p in enumerate(sample.prompts) if prompt not in p]
            if missing:
                raise LiWiError(f"sample {sample.id} has no '{prompt}' prompt for layer(s) {missing}")
            masks = torch.cat([sample.prompts[k][prompt] for k in reversed(range(len(sample.prompts)))])
        start = time.perf_counter()
        try:
            pred = run(sample.composite, masks, sample.id)
        except LiWiError as exc:
            failures[sample.id] = str(exc)
            continue
        seconds = time.perf_counter() - start
        rows.append({"id": sample.id, **_score(sample, pred, flavour == "prompted"), "seconds": seconds})
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024.0
    means = {m: sum(r[m] for r in rows if m in r) / max(1, sum(m in r for r in rows)) for m in METRICS
             if any(m in r for r in rows)}
    return {"engine": engine, "flavour": flavour, "prompt": prompt if flavour == "prompted" else None,
            "samples": len(rows), "failed": failures, "means": means, "peak_extra_mb": peak_mb, "rows": rows}


def _table(results: list[dict]) -> str:
    shown = [m for m in METRICS if any(m in r["means"] for r in results)]
    lines = ["| engine | flavour | n | " + " | ".join(shown) + " | peak MB |",
             "|---" * (len(shown) + 4) + "|"]
    for r in results:
        if not r["samples"]:
            reason = next(iter(r["failed"].values()), "no samples")
            lines.append(f"| {r['engine']} | {r['flavour']} | 0 | n/a: {reason} |" + " |" * len(shown))
            continue
        base = next((b for b in results if b["engine"] == "baseline" and b["flavour"] == r["flavour"]
                     and b["samples"]), None)
        cells = []
        for m in shown:
            v = r["means"].get(m)
            cell = "n/a" if v is None else f"{v:.3f}" if m != "recompose_psnr" else f"{v:.1f}"
            if base and r is not base and v is not None and base["means"].get(m):
                cell += f" ({v / base['means'][m]:.2f}x)"
            cells.append(cell)
        lines.append(f"| {r['engine']} | {r['flavour']} | {r['samples']} | " + " | ".join(cells)
                     + f" | {r['peak_extra_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liwi_core.eval", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", help="dataset folder (ADD format)")
    parser.add_argument("--benchmark", metavar="DIR", nargs="?", const=str(ROOT / "benchmarks" / "heldout-v1"),
                        help="build (if needed) and evaluate the held-out benchmark in DIR")
    parser.add_argument("--engines", default="classical,baseline", help="comma-separated engines")
    parser.add_argument("--flavours", default="prompted,automatic")
    parser.add_argument("--prompt", default="dilated", help="prompt kind: eroded, dilated, blurred, box, scribble")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json", help="write all results here")
    parser.add_argument("--one", nargs=2, metavar=("ENGINE", "FLAVOUR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        dataset = args.dataset
        if args.benchmark:
            dataset = str(build_benchmark(args.benchmark))
        if not dataset:
            raise LiWiError("give a DATASET folder or --benchmark")
        if args.one:
            print(json.dumps(evaluate(dataset, args.one[0], args.one[1], args.prompt, args.limit)))
            return 0
        if not sample_ids(dataset):
            raise LiWiError(f"dataset '{dataset}' has no finished samples")
        results = []
        for flavour in args.flavours.split(","):
            for engine in args.engines.split(","):
                cmd = [sys.executable, "-m", "liwi_core.eval", dataset, "--one", engine, flavour,
                       "--prompt", args.prompt] + (["--limit", str(args.limit)] if args.limit else [])
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if out.returncode != 0:
                    raise LiWiError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "engine failed")
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    except LiWiError as exc:
        print(f"liwi: error: {exc}", file=sys.stderr)
        return 2
    print(f"dataset: {dataset}; prompt masks: {args.prompt}; ratios are to the baseline (lower is better "
          f"except IoU and PSNR)")
    print(_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
