"""Evaluation: ``python -m liwi_core eval DATASET`` or ``python -m liwi_core eval --benchmark``.

Runs engines over a layered dataset (:mod:`liwi_core.dataset`) and prints a markdown table
of quality and speed, each engine also as a ratio to the naive baseline when the baseline
ran too, then the DTW scores per merge-edit count.

Engines: ``classical`` (mask-guided, no weights), ``learned`` (the bundled default
checkpoint) or ``learned:CKPT`` (a checkpoint folder), ``baseline`` (:mod:`liwi_core.baseline`),
``folder`` with ``--pred-dir DIR`` (or ``folder:DIR``): layers another tool wrote in the
CLI's folder format, one folder per sample, ``DIR/<sample id>/layers.json``.

Flavours: ``prompted`` (the prompt masks of kind ``--prompt`` of the ground-truth layers
are given, front to back, i.e. mask ``i`` belongs to ground-truth layer ``n-1-i``; with
``--prompt own`` each layer's own kind, recorded in ``sample.json`` as ``prompt_kinds``, the
benchmark's default, and the prompt metrics are also reported per kind) and ``automatic``
(no masks; engines that need masks report n/a).

The held-out benchmark (``--benchmark``) is built by :mod:`liwi_core.benchmark_scenes` from
the held-out photo cut-outs (true alpha), reserved background photos and the benchmark's own
shadow renderer: no engine under test, and not ADD, made its ground truth.

Per sample and engine (definitions in :mod:`liwi_core.metrics`):

* ``dtw_cost@k``, ``dtw_rgb_l1@k``, ``dtw_alpha_iou@k`` for k = 0..5 merge edits: LayerD's
  protocol, the background being the bottom layer (alpha 1) of both stacks;
* prompted only, each predicted layer against the ground-truth layer its prompt came from
  (no DTW needed): ``prompt_alpha_iou``, ``prompt_rgb_l1``, ``shadow_l1`` (inside the
  ground-truth shadow), ``shadow_l1_outside`` (the same outside the true object, the
  learned-engine issue's definition) and ``false_shadow`` (darkening where the truth has none, outside the
  object, as a share of the true darkening). Predicted layers are paired by ``prompt_index``,
  or by position when a folder's layers have none and their count equals the ground truth's;
* automatic only, each ground-truth layer matched to at most one predicted layer by alpha
  soft IoU, one to one, largest total IoU, a match needing IoU >= 0.5
  (:func:`~liwi_core.metrics.match_layers_by_alpha`): ``auto_matched_iou`` (mean over the
  ground-truth layers of the matched IoU, 0 for an unmatched one; absent when the ground
  truth has no layers), ``auto_missed`` (ground-truth layers without a match),
  ``auto_merged`` (of the missed ones, those a larger predicted layer holds most of: merged
  with another object or with the photo, :func:`~liwi_core.metrics.merged_layers`),
  ``auto_spurious`` (non-empty predicted layers without a match), ``auto_photo_objects``
  (1 when one of those is the background photo's own main object: the photo comes with a
  rough mask of it, :func:`~liwi_core.benchmark_scenes.photo_object_mask`, and the layer lies
  on it, :func:`~liwi_core.metrics.photo_object_layer`; else 0), ``auto_false_layers``
  (spurious layers that are not: what automatic mode made up) and ``auto_order_right`` (of the
  matched objects that touch, the share stacked in the right order,
  :func:`~liwi_core.metrics.touching_order_right`; absent when none touch);
* ``background_l1_hole``: background L1 inside the ground-truth hole;
* ``recompose_psnr``: the prediction recomposed against the input (capped at 99 dB);
* ``seconds`` per image (engine call only; for ``folder``, reading the files).

Per engine: the peak memory (``ru_maxrss``) of its process, absolute and above what it was
before the first sample. Each engine runs in its own process so its peak is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from .benchmark_scenes import HELDOUT_V2, SCENE_PROMPT_KINDS, build_heldout, photo_object_mask
from .dataset import PROMPT_KINDS, iter_samples, sample_ids
from .errors import LiWiError
from .imageio import atomic_write_bytes
from .metrics import (alpha_soft_iou, background_l1_in_hole, false_shadow, match_layers_by_alpha, match_stacks,
                      merged_layers, photo_object_layer, recompose_psnr, rgb_l1, shadow_l1, shadow_l1_outside,
                      stack_layers, touching_order_right)
from .precision import network_precision

__all__ = ["evaluate", "score_sample", "build_benchmark", "main", "BENCHMARK", "METRICS", "AUTO_METRICS"]

ROOT = Path(__file__).resolve().parent.parent
ENGINE_SPECS = ("refined", "classical", "learned", "baseline", "folder")
# the held-out benchmark (liwi_core.benchmark_scenes): held-out cut-outs on reserved photos, its own shadows
BENCHMARK = HELDOUT_V2
BENCHMARK_DIR = ROOT / "benchmarks" / "heldout-v2"
OWN_PROMPT = "own"  # --prompt own: each layer's recorded kind (sample.json "prompt_kinds")
MAX_EDITS = 5
DTW_METRICS = [f"dtw_{m}@{k}" for k in range(MAX_EDITS + 1) for m in ("cost", "rgb_l1", "alpha_iou")]
# automatic flavour, only where two matched objects touch (its mean is over those samples)
ORDER_METRIC = "auto_order_right"
AUTO_METRICS = ["auto_matched_iou", "auto_missed", "auto_merged", "auto_spurious", "auto_photo_objects",
                "auto_false_layers", ORDER_METRIC]  # automatic flavour only
AUTO_MIN_IOU = 0.5
METRICS = DTW_METRICS + ["prompt_alpha_iou", "prompt_rgb_l1"] + AUTO_METRICS + [
    "background_l1_hole", "shadow_l1", "shadow_l1_outside", "false_shadow", "recompose_psnr", "seconds"]
TABLE = ["dtw_rgb_l1@0", "dtw_alpha_iou@0", "dtw_rgb_l1@5", "dtw_alpha_iou@5", "prompt_alpha_iou",
         "prompt_rgb_l1"] + AUTO_METRICS + ["background_l1_hole", "shadow_l1", "shadow_l1_outside",
                                                  "false_shadow", "recompose_psnr", "seconds"]
# "auto_spurious" contains "iou" too: name it out (missed and spurious counts: lower is better)
HIGHER_IS_BETTER = {m for m in METRICS if "iou" in m and m != "auto_spurious"} | {"recompose_psnr", ORDER_METRIC}
PSNR_CAP = 99.0


def build_benchmark(out, objects=None) -> Path:
    """Make the held-out set (:func:`liwi_core.benchmark_scenes.build_heldout`: deterministic,
    finished samples skipped) from the held-out cut-outs in ``objects`` (default
    ``data/sources/objects``)."""
    return build_heldout(out, objects, progress=True)


def check_dataset(dataset) -> list[str]:
    """The sample ids of ``dataset``; a one-line :class:`LiWiError` when it is missing or empty."""
    path = Path(dataset)
    if not path.is_dir():
        raise LiWiError(f"dataset '{dataset}' does not exist (give a folder made by ADD)")
    ids = sample_ids(path)
    if not ids:
        raise LiWiError(f"dataset '{dataset}' has no finished samples")
    return ids


def parse_engine_spec(spec: str) -> tuple[str, str]:
    """``(engine name, argument)`` of a spec: ``classical``, ``baseline``, ``learned`` / ``refined``
    (bundled checkpoint), ``learned:CKPT`` / ``refined:CKPT`` or ``folder:DIR``; a one-line error
    for anything else."""
    kind, sep, arg = spec.partition(":")
    if (kind not in ENGINE_SPECS or (sep and kind not in ("learned", "refined", "folder"))
            or (kind == "folder" and not arg)):
        raise LiWiError(f"unknown engine '{spec}': use refined[:CKPT], classical, learned[:CKPT], baseline or "
                        "folder (with --pred-dir)")
    return kind, arg


def engine_from_spec(spec: str):
    """The engine a spec names (:func:`parse_engine_spec`), built by :func:`liwi_core.engines.create`."""
    from .engines import create

    kind, arg = parse_engine_spec(spec)
    options = ({"checkpoint": arg or None} if kind == "learned" else {"refiner_checkpoint": arg or None}
               if kind == "refined" else {"path": arg} if kind == "folder" else {})
    return create(kind, **options)


def _prompt_pairs(pred, gt) -> tuple[list, str | None]:
    """``[(pred layer, gt layer)]`` for the prompted metrics, and how they were paired."""
    n = len(gt.layers)
    if pred.layers and all(l.prompt_index is not None for l in pred.layers):
        return [(l, gt.layers[n - 1 - l.prompt_index]) for l in pred.layers if 0 <= l.prompt_index < n], "prompt_index"
    if len(pred.layers) == n and n:
        return list(zip(pred.layers, gt.layers)), "position"
    return [], None


def score_sample(sample, pred, prompted: bool = True, max_edits: int = MAX_EDITS) -> dict:
    """All per-sample metrics of one prediction (see the module docstring).

    Args:
        sample: a :class:`~liwi_core.dataset.Sample` (ground truth and composite).
        pred: the engine's :class:`~liwi_core.layers.LayerStack` for ``sample.composite``.
        prompted: whether the prompt metrics apply (``True``) or the automatic ones
            (``False``: ``auto_matched_iou``, ``auto_missed``, ``auto_spurious``).
        max_edits: merge edits of the DTW matching.

    Returns:
        ``{metric: float}`` plus ``dtw``: the per-edit-count results of
        :func:`~liwi_core.metrics.match_stacks`, and ``prompt_match``; automatic only,
        ``auto_pairs``: ``[(pred layer, gt layer, iou)]`` of
        :func:`~liwi_core.metrics.match_layers_by_alpha`, and ``auto_photo_object``: the
        predicted layer that is the background photo's own object, or None.
    """
    gt = sample.stack
    dtw = match_stacks(stack_layers(pred), stack_layers(gt), max_edits=max_edits)
    row: dict = {}
    for r in dtw:
        k = r["edits"]
        row.update({f"dtw_cost@{k}": r["cost"], f"dtw_rgb_l1@{k}": r["rgb_l1"], f"dtw_alpha_iou@{k}": r["alpha_iou"]})
    if gt.hole is not None:
        row["background_l1_hole"] = background_l1_in_hole(pred.background, gt.background, gt.hole)
    row["recompose_psnr"] = min(recompose_psnr(pred.composite(), sample.composite), PSNR_CAP)
    pairs, how = _prompt_pairs(pred, gt) if prompted else ([], None)
    if pairs:
        ious = [alpha_soft_iou(p.alpha, g.alpha) for p, g in pairs]
        l1s = [rgb_l1(p.rgba[:, :3], g.rgba[:, :3], g.alpha) for p, g in pairs]
        row["prompt_alpha_iou"] = sum(ious) / len(pairs)
        row["prompt_rgb_l1"] = sum(l1s) / len(pairs)
        # per ground-truth layer (back-to-front index), for the per-prompt-kind breakdown
        index = {id(g): k for k, g in enumerate(gt.layers)}
        row["prompt_layers"] = [[index[id(g)], i, l] for (_, g), i, l in zip(pairs, ious, l1s)]
        row["shadow_l1"] = sum(shadow_l1(p.shadow, g.shadow) for p, g in pairs) / len(pairs)
        row["shadow_l1_outside"] = sum(shadow_l1_outside(p.shadow, g.shadow, g.alpha) for p, g in pairs) / len(pairs)
        row["false_shadow"] = sum(false_shadow(p.shadow, g.shadow, g.alpha) for p, g in pairs) / len(pairs)
    if not prompted:
        pred_alphas, gt_alphas = [l.alpha for l in pred.layers], [l.alpha for l in gt.layers]
        matched = match_layers_by_alpha(pred_alphas, gt_alphas, AUTO_MIN_IOU)
        if gt_alphas:
            row["auto_matched_iou"] = sum(iou for _, _, iou in matched) / len(gt_alphas)
        row["auto_missed"] = float(len(gt_alphas) - len(matched))
        row["auto_merged"] = float(len(merged_layers(pred_alphas, gt_alphas, matched)))
        row["auto_spurious"] = float(sum(1 for a in pred_alphas if float(a.sum()) > 0) - len(matched))
        row["auto_pairs"] = matched
        order = touching_order_right(matched, gt_alphas)
        if order is not None:
            row[ORDER_METRIC] = order
        object_mask = photo_object_mask(sample.meta.get("background"), gt.background.shape[-1])
        found = None
        if object_mask is not None and tuple(object_mask.shape[-2:]) == tuple(gt.background.shape[-2:]):
            taken = {p for p, _, _ in matched}
            unmatched = [i for i, a in enumerate(pred_alphas) if i not in taken and float(a.sum()) > 0]
            found = photo_object_layer(pred_alphas, unmatched, object_mask, gt_alphas)
        row["auto_photo_object"] = found  # which predicted layer, for a look at the rows
        row["auto_photo_objects"] = float(found is not None)
        row["auto_false_layers"] = row["auto_spurious"] - row["auto_photo_objects"]
    row["prompt_match"] = how
    row["dtw"] = dtw
    return row


def _prompt_kinds(sample, prompt: str) -> list[str]:
    """The prompt kind of each ground-truth layer, back to front: ``prompt`` for all, or with
    ``own`` the kinds the sample records (``prompt_kinds`` in ``sample.json``)."""
    n = len(sample.prompts)
    if prompt != OWN_PROMPT:
        return [prompt] * n
    kinds = sample.meta.get("prompt_kinds")
    if not isinstance(kinds, list) or len(kinds) != n or not all(isinstance(k, str) for k in kinds):
        raise LiWiError(f"sample {sample.id} records no prompt kind per layer (give --prompt KIND, e.g. dilated)")
    return kinds


def _masks(sample, prompt: str) -> torch.Tensor:
    """The sample's ``prompt`` masks front to back, ``[N,1,H,W]`` (``own``: each layer's own kind)."""
    kinds = _prompt_kinds(sample, prompt)
    missing = [k for k, p in enumerate(sample.prompts) if kinds[k] not in p]
    if missing and prompt == OWN_PROMPT:
        raise LiWiError(f"sample {sample.id} lacks the prompt files of its own kinds for layer(s) {missing}")
    if missing:
        have = sorted({k for p in sample.prompts for k in p})
        raise LiWiError(f"sample {sample.id} has no '{prompt}' prompt for layer(s) {missing} "
                        f"(it has: {', '.join(have) or 'none'})")
    return torch.cat([sample.prompts[k][kinds[k]] for k in reversed(range(len(sample.prompts)))])


def _max_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def evaluate(dataset, engine: str, flavour: str = "prompted", prompt: str = "dilated",
             limit: int | None = None) -> dict:
    """Run one engine over a dataset and score it.

    Args:
        dataset: dataset folder.
        engine: ``classical``, ``learned``, ``learned:CKPT``, ``baseline`` or ``folder:DIR``.
        flavour: ``prompted`` or ``automatic``.
        prompt: prompt kind for the prompted flavour, or ``own``: each layer's recorded kind.
        limit: only the first ``limit`` samples (by sorted id).

    Returns:
        ``engine``, ``flavour``, ``prompt``, ``samples`` (scored), ``failed`` (``{id: error}``
        for samples the engine refused), ``means`` (``{metric: mean over the samples that
        have it}``), ``by_prompt_kind`` (prompted: ``{kind: {"layers", "prompt_alpha_iou",
        "prompt_rgb_l1"}}`` over the ground-truth layers prompted with that kind),
        ``peak_rss_mb``, ``peak_extra_mb``, ``network_precision`` (what the networks' passes
        computed in, :func:`~liwi_core.precision.network_precision`) and ``rows`` (per sample).
    """
    if flavour not in ("prompted", "automatic"):
        raise LiWiError(f"unknown flavour '{flavour}': use prompted or automatic")
    ids = check_dataset(dataset)
    ids = ids[:limit] if limit else ids
    run = engine_from_spec(engine)
    rows, failures = [], {}
    base_rss = _max_rss_mb()
    for sample in iter_samples(dataset, ids=ids):
        masks = _masks(sample, prompt) if flavour == "prompted" else None
        kinds = _prompt_kinds(sample, prompt) if flavour == "prompted" else None
        start = time.perf_counter()
        try:
            pred = run.decompose(sample.composite, masks, key=sample.id)
        except LiWiError as exc:
            failures[sample.id] = str(exc)
            continue
        seconds = time.perf_counter() - start
        try:
            scores = score_sample(sample, pred, flavour == "prompted")
        except (RuntimeError, ValueError) as exc:
            # a truth that disagrees with itself (a layer of another size) is the sample's fault
            failures[sample.id] = f"cannot score it: {str(exc).splitlines()[0]}"
            continue
        row = {"id": sample.id, **scores, "seconds": seconds}
        if kinds is not None:
            row["prompt_kinds"] = kinds
        rows.append(row)
    means = {}
    for m in METRICS:
        values = [r[m] for r in rows if m in r]
        if values:
            means[m] = sum(values) / len(values)
    per_kind: dict[str, list] = {}
    for r in rows:
        for k, iou, l1 in r.get("prompt_layers", []):
            per_kind.setdefault(r["prompt_kinds"][k], []).append((iou, l1))
    by_kind = {kind: {"layers": len(v), "prompt_alpha_iou": sum(i for i, _ in v) / len(v),
                      "prompt_rgb_l1": sum(l for _, l in v) / len(v)} for kind, v in sorted(per_kind.items())}
    return {"engine": engine, "flavour": flavour, "prompt": prompt if flavour == "prompted" else None,
            "network_precision": str(network_precision()).removeprefix("torch."),
            "samples": len(rows), "failed": failures, "means": means, "by_prompt_kind": by_kind,
            "peak_rss_mb": _max_rss_mb(),
            "peak_extra_mb": _max_rss_mb() - base_rss, "rows": rows}


def _cell(m: str, v: float | None, base: float | None) -> str:
    if v is None:
        return "n/a"
    cell = (f"{v:.1f}" if m == "recompose_psnr" else f"{v:.3f}" if m == "seconds"
            else f"{v:.2f}" if m in AUTO_METRICS and m != "auto_matched_iou"  # counts and a share
            else f"{v:.4f}")
    if base:
        cell += f" ({v / base:.2f}x)"
    return cell


def _baseline_of(results: list[dict], r: dict) -> dict | None:
    base = next((b for b in results if b["engine"] == "baseline" and b["flavour"] == r["flavour"] and b["samples"]),
                None)
    return None if base is r else base


def _table(results: list[dict]) -> str:
    """The main markdown table: means per engine and flavour, ratios to the baseline in brackets."""
    shown = [m for m in TABLE if any(m in r["means"] for r in results)]
    lines = ["| engine | flavour | n | " + " | ".join(shown) + " | peak MB |", "|---" * (len(shown) + 4) + "|"]
    for r in results:
        if not r["samples"]:
            reason = next(iter(r["failed"].values()), "no samples")
            lines.append(f"| {r['engine']} | {r['flavour']} | 0 | n/a: {reason} |" + " |" * len(shown))
            continue
        base = _baseline_of(results, r)
        cells = [_cell(m, r["means"].get(m), base["means"].get(m) if base else None) for m in shown]
        lines.append(f"| {r['engine']} | {r['flavour']} | {r['samples']} | " + " | ".join(cells)
                     + f" | {r['peak_rss_mb']:.0f} (+{r['peak_extra_mb']:.0f}) |")
    return "\n".join(lines)


def _dtw_table(results: list[dict]) -> str:
    """DTW RGB L1 / alpha IoU per number of merge edits."""
    lines = ["| engine | flavour | " + " | ".join(f"{k} edits" for k in range(MAX_EDITS + 1)) + " |",
             "|---" * (MAX_EDITS + 3) + "|"]
    for r in results:
        if r["samples"]:
            cells = [f"{r['means'][f'dtw_rgb_l1@{k}']:.4f} / {r['means'][f'dtw_alpha_iou@{k}']:.4f}"
                     for k in range(MAX_EDITS + 1)]
            lines.append(f"| {r['engine']} | {r['flavour']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _kind_table(results: list[dict]) -> str:
    """Prompt alpha IoU / RGB L1 per prompt kind (prompted runs that used several kinds), or ''."""
    shown = [r for r in results if len(r.get("by_prompt_kind") or {}) > 1]
    if not shown:
        return ""
    kinds = sorted({k for r in shown for k in r["by_prompt_kind"]},
                   key=lambda k: (SCENE_PROMPT_KINDS + PROMPT_KINDS + (k,)).index(k))
    lines = ["| engine | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for r in shown:
        cells = []
        for k in kinds:
            m = r["by_prompt_kind"].get(k)
            cells.append(f"{m['prompt_alpha_iou']:.4f} / {m['prompt_rgb_l1']:.4f} ({m['layers']})" if m else "n/a")
        lines.append(f"| {r['engine']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _engines(args) -> list[str]:
    """The engine list from ``--engine/--pred-dir/--compare-baseline`` or ``--engines``."""
    if args.engine and args.engines:
        raise LiWiError("give --engine or --engines, not both")
    if args.pred_dir and args.engine != "folder":
        raise LiWiError("--pred-dir goes with --engine folder")
    if args.checkpoint and args.engine != "learned":
        raise LiWiError("--checkpoint goes with --engine learned")
    if not args.engine:
        engines = [e.strip() for e in (args.engines or "classical,baseline").split(",") if e.strip()]
    elif args.engine == "learned" and args.checkpoint:
        engines = [f"learned:{args.checkpoint}"]
    elif args.engine == "folder":
        if not args.pred_dir:
            raise LiWiError("--engine folder needs --pred-dir DIR (one folder per sample id)")
        engines = [f"folder:{args.pred_dir}"]
    else:
        engines = [args.engine]
    if args.compare_baseline and "baseline" not in engines:
        engines.append("baseline")
    resolved = []
    for e in engines:
        kind, arg = parse_engine_spec(e)
        # children run elsewhere: make paths absolute
        resolved.append(f"{kind}:{Path(arg).resolve()}" if arg else e)
    return resolved


def _run_child(dataset: str, engine: str, flavour: str, args) -> dict:
    """``evaluate`` in a fresh process, so that its peak memory is the engine's alone."""
    cmd = [sys.executable, "-m", "liwi_core", "eval", dataset, "--one", engine, flavour, "--prompt", args.prompt]
    cmd += ["--limit", str(args.limit)] if args.limit else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"engine {engine} failed"
        raise LiWiError(last.removeprefix("liwi: error: "))
    return json.loads(out.stdout.strip().splitlines()[-1])


def configure(p: argparse.ArgumentParser) -> None:
    """The ``eval`` command's flags (:mod:`liwi_core.cli`)."""
    p.add_argument("dataset", nargs="?", help="dataset folder (ADD format)")
    p.add_argument("--benchmark", metavar="DIR", nargs="?", const=str(BENCHMARK_DIR),
                   help="build (if needed) and evaluate the held-out benchmark in DIR (default benchmarks/heldout-v2)")
    p.add_argument("--objects", metavar="DIR",
                   help="with --benchmark: the cut-out folder whose held-out objects it uses (default data/sources/objects)")
    p.add_argument("--engine", choices=ENGINE_SPECS, help="one engine")
    p.add_argument("--checkpoint", help="with --engine learned: a checkpoint folder (default: the bundled one)")
    p.add_argument("--pred-dir", help="with --engine folder: DIR/<sample id>/ holds that sample's layers")
    p.add_argument("--compare-baseline", action="store_true", help="also run the baseline and print ratios to it")
    p.add_argument("--engines", help="comma-separated engines (refined, refined:CKPT, classical, learned, learned:CKPT, "
                                     "baseline, folder:DIR); "
                                     "default classical,baseline")
    p.add_argument("--flavours", default="prompted,automatic", help="prompted, automatic or both")
    kinds = ", ".join(dict.fromkeys(SCENE_PROMPT_KINDS + PROMPT_KINDS))
    p.add_argument("--prompt", help=f"prompt kind: {kinds}, or {OWN_PROMPT} (each layer's recorded kind); "
                                    f"default {OWN_PROMPT} with --benchmark, else dilated")
    p.add_argument("--limit", type=int, help="only the first N samples")
    p.add_argument("--json", help="write all results (means and per-sample rows) here")
    p.add_argument("--one", nargs=2, metavar=("ENGINE", "FLAVOUR"), help=argparse.SUPPRESS)
    p.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit < 1:
        raise LiWiError(f"--limit must be at least 1, got {args.limit}")
    if args.objects and not args.benchmark:
        raise LiWiError("--objects goes with --benchmark")
    if args.benchmark and args.dataset:
        raise LiWiError("give a DATASET folder or --benchmark, not both")
    dataset = str(build_benchmark(args.benchmark, args.objects)) if args.benchmark else args.dataset
    if not dataset:
        raise LiWiError("give a DATASET folder or --benchmark")
    args.prompt = args.prompt or (OWN_PROMPT if args.benchmark else "dilated")
    if args.one:
        print(json.dumps(evaluate(dataset, args.one[0], args.one[1], args.prompt, args.limit)))
        return
    check_dataset(dataset)
    dataset = str(Path(dataset).resolve())
    engines = _engines(args)
    flavours = [f.strip() for f in args.flavours.split(",") if f.strip()]
    if not flavours:
        raise LiWiError("--flavours is empty: use prompted, automatic or both")
    for f in flavours:
        if f not in ("prompted", "automatic"):
            raise LiWiError(f"unknown flavour '{f}': use prompted, automatic or both")
    if args.json:
        from .export.common import check_target

        check_target(Path(args.json))  # before the work, not after it
    results = [_run_child(dataset, e, f, args) for f in flavours for e in engines]
    precisions = sorted({r["network_precision"] for r in results})
    print(f"dataset: {dataset}; prompt masks: {args.prompt}; network passes in {', '.join(precisions)}; in brackets: "
          f"ratio to the baseline (lower is better except IoU and PSNR); peak MB: process peak (+ above its start)")
    print(_table(results))
    print("\nDTW RGB L1 / alpha IoU after k merge edits (LayerD protocol, background = bottom layer):")
    print(_dtw_table(results))
    kinds = _kind_table(results)
    if kinds:
        print("\nPrompted, per prompt kind: alpha IoU / RGB L1 (ground-truth layers):")
        print(kinds)
    for r in results:
        for sample_id, reason in r["failed"].items():
            print(f"warning: {r['engine']} {r['flavour']}: sample {sample_id} left out: {reason}", file=sys.stderr)
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(results, indent=1) + "\n").encode("utf-8"))
    if not any(r["samples"] for r in results):
        raise LiWiError("no sample could be scored (the warnings above say why)")


def main(argv: list[str] | None = None) -> int:
    """``python -m liwi_core.eval`` (kept as an alias) is ``python -m liwi_core eval``."""
    from .cli import main_as

    return main_as("eval", argv)


if __name__ == "__main__":
    sys.exit(main())
