"""ADD runner: ``python -m liwi_core add --images DIR [--masks DIR] [--objects DIR] --out DIR --num N --seed S``.

Objects come from photos with masks (``--masks``: cut out with the classical matting) or
from ready cut-outs (``--objects``: PNGs with transparency, their alpha used as it is).
Backgrounds are the photos of ``--images`` (cleaned of their masked objects).

Sample ``i`` of a run is made from ``(seed, i, attempt)`` alone, so:

* **deterministic**: the same command gives the same samples;
* **resumable**: finished samples (their folder has ``sample.json``) are skipped, each
  sample is written atomically, and a killed run restarted with the same command ends
  with exactly the samples of an uninterrupted one;
* **parallel**: under ``accelerate launch`` (or torchrun) process ``r`` of ``n`` makes
  the samples with ``i % n == r``: none twice, none lost.

Each of the N slots is tried up to ``--attempts`` times; a slot whose attempts the
curator all rejects is dropped, so a run keeps at most N samples. Every decision is
logged to ``<out>/log/rank-RRR.jsonl``; the summary counts kept, dropped, rejections by
reason and skipped source files by reason.
"""

from __future__ import annotations

import argparse
import re
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from PIL import Image

from ..dataset import Sample, sample_ids, write_sample
from ..errors import LiWiError
from ..filters import resize
from ..imageio import load_image, load_mask, shown_size
from ..layers import Layer, LayerStack, coverage, default_layer_name
from . import tools
from .agents import CuratorLimits, Plan, Source, curate, plan_sample, sample_generator

__all__ = ["AddConfig", "scan_sources", "compose_sample", "run", "main"]

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


@dataclass
class AddConfig:
    images: str
    out: str
    masks: str | None = None
    objects: str | None = None  # folder of RGBA cut-outs (PNG with transparency)
    num: int = 100
    seed: int = 0
    size: int = 512
    max_objects: int = 3
    attempts: int = 4
    min_side: int = 64
    max_pixels: int = 50_000_000
    max_background_hole: float = 0.35  # photos whose objects cover more are not used as backgrounds
    limits: CuratorLimits = field(default_factory=CuratorLimits)

    #: the smallest sample side: below it the curator's 6-px rings and 4-px dilations leave no room
    MIN_SIZE = 32

    def __post_init__(self) -> None:
        for name, low in (("num", 1), ("size", self.MIN_SIZE), ("max_objects", 1), ("attempts", 1), ("min_side", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise LiWiError(f"{name} must be a whole number of at least {low}, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise LiWiError(f"seed must be a whole number, got {self.seed!r}")


def _review_masks(sources: list[Source], max_hole: float, skipped: dict[str, list[str]],
                  load=None) -> None:
    """Mark which masks give whole objects and which photos can serve as backgrounds.

    An object touching its photo's edge is cut off there (a cat's head filling the frame):
    pasted elsewhere it would show a straight cut, so it is not used as a foreground. A
    photo mostly covered by its objects would leave a background that is mostly invented.
    ``load``: the source's masks (default: its mask files, read by :func:`_readable_masks`,
    which drops and counts unreadable, empty and wrongly sized ones).
    """
    for source in sources:
        if not source.masks:
            continue
        masks = [m > 0.5 for m in (load(source) if load is not None else _readable_masks(source, skipped))]
        if not masks:
            continue
        source.donors = []
        for k, m in enumerate(masks):
            edge = torch.cat([m[..., 0, :], m[..., :, 0], m[..., :, -1]], dim=-1)
            if bool(edge.any()):
                skipped.setdefault("object cut off by its photo's edge (not used as foreground)", []).append(
                    source.masks[k])
            elif bool(m.any()):
                source.donors.append(k)
                if bool(m[..., -1, :].any()):
                    source.bottom_cut.append(k)
        union = torch.stack(masks).any(dim=0).float().mean()
        if float(union) > max_hole:
            source.background_ok = False
            skipped.setdefault("objects cover too much of the photo (not used as background)", []).append(source.id)


def _readable_masks(source: Source, skipped: dict[str, list[str]]) -> list[torch.Tensor]:
    """The masks of ``source`` that can be used, read; its list of mask files keeps only theirs. A
    mask that cannot be read, is empty, or is not its photo's size (a stretched mask would mark
    the wrong pixels) is skipped and counted, and the run goes on."""
    h, w = shown_size(source.path)
    kept, masks = [], []
    for path in source.masks:
        try:
            mask = load_mask(path)
        except LiWiError:
            skipped.setdefault("unreadable mask", []).append(path)
            continue
        if tuple(mask.shape[-2:]) != (h, w):
            skipped.setdefault("mask not the size of its photo", []).append(path)
        elif not bool((mask > 0.5).any()):
            skipped.setdefault("empty mask", []).append(path)
        else:
            kept.append(path)
            masks.append(mask)
    source.masks = kept
    return masks


def _check_photo(path: Path, min_side: int, max_pixels: int, cutout: bool = False) -> str | None:
    """Why a file is not a usable photo (or, ``cutout``, a usable cut-out: an image with an
    alpha channel both transparent and opaque somewhere), or None. Reads only the header
    where it can."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                return f"huge ({w}x{h})"
            if min(w, h) < min_side:
                return f"tiny ({w}x{h})"
            if getattr(im, "n_frames", 1) > 1:
                return "animated"
            if cutout and im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info:
                return "cut-out without transparency"
            if im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
                return f"greyscale ({im.mode})"
            im.load()  # catches truncated files
            if cutout:
                low, high = im.convert("RGBA").getchannel("A").getextrema()
                if high < 128 or low > 127:
                    return "cut-out alpha all transparent or all opaque"
    except Image.DecompressionBombError:
        return "huge (decompression bomb)"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"unreadable ({exc.__class__.__name__}: {str(exc)[:80]})"
    return None


def scan_sources(images: str, masks: str | None, min_side: int = 64, max_pixels: int = 50_000_000
                 ) -> tuple[list[Source], dict[str, list[str]]]:
    """Usable photos under ``images`` (recursively) with their masks, and what was skipped.

    A photo's masks are the files in ``masks`` named ``<stem>_mask*.png`` or ``<stem>.png``
    (same relative folder). Masks matching no photo are skipped with that reason.
    """
    root = Path(images)
    if not root.is_dir():
        raise LiWiError(f"image folder '{images}' does not exist")
    skipped: dict[str, list[str]] = {}
    sources = []
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    mask_files = []
    if masks:
        mroot = Path(masks)
        if not mroot.is_dir():
            raise LiWiError(f"mask folder '{masks}' does not exist")
        mask_files = sorted(p for p in mroot.rglob("*.png") if p.is_file())
        if mroot.resolve() == root.resolve():  # masks beside their photos: only *_mask* files are masks
            mask_files = [p for p in mask_files if "_mask" in p.stem]
    used_masks = set()
    for path in files:
        rel = path.relative_to(root).with_suffix("").as_posix()
        if masks and "_mask" in path.stem and Path(masks).resolve() == root.resolve():
            continue  # masks living beside their photos are not photos
        reason = _check_photo(path, min_side, max_pixels)
        if reason:
            skipped.setdefault(reason.split(" (")[0], []).append(rel)
            continue
        mine = []
        for m in mask_files:
            mrel = m.relative_to(Path(masks)).with_suffix("").as_posix()
            if mrel == rel or mrel.startswith(rel + "_mask"):
                mine.append(str(m))
                used_masks.add(m)
        sources.append(Source(id=rel, path=str(path), masks=mine))
    for m in mask_files:
        if m not in used_masks:
            skipped.setdefault("mask matches no photo", []).append(str(m))
    return sources, skipped


def scan_cutouts(objects: str, min_side: int = 16, max_pixels: int = 50_000_000
                 ) -> tuple[list[Source], dict[str, list[str]]]:
    """Cut-outs under ``objects`` (recursively): images with an alpha channel that is
    partly transparent and partly opaque. Each is one object source, never a background."""
    root = Path(objects)
    if not root.is_dir():
        raise LiWiError(f"object folder '{objects}' does not exist")
    skipped: dict[str, list[str]] = {}
    sources = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        rel = "objects/" + path.relative_to(root).with_suffix("").as_posix()
        reason = _check_photo(path, min_side, max_pixels, cutout=True)
        if reason:
            skipped.setdefault(reason.split(" (")[0], []).append(rel)
            continue
        sources.append(Source(id=rel, path=str(path), donors=[0], background_ok=False, cutout=True))
    return sources, skipped


class _Cache:
    """Cleaned backgrounds and extracted cut-outs, made once per process."""

    def __init__(self, sources: list[Source], size: int,
                 photos: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] | None = None):
        self.by_id = {s.id: s for s in sources}
        self.size = size
        self.photos = photos or {}  # in-memory (image, masks) by source id, e.g. from the node
        self.backgrounds: dict[str, torch.Tensor] = {}
        self.cutouts: dict[tuple[str, int], torch.Tensor] = {}

    def _photo(self, source: Source) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if source.id in self.photos:
            image, masks = self.photos[source.id]
        else:
            image, masks = load_image(source.path)[:, :3], [load_mask(m) for m in source.masks]
        h, w = image.shape[-2:]
        scale = min(1.0, self.size / max(h, w))
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        return resize(image, size), [resize(m, size) for m in masks]

    def background(self, source_id: str) -> torch.Tensor:
        if source_id not in self.backgrounds:
            source = self.by_id[source_id]
            image, masks = self._photo(source)
            bg, _ = tools.clean_background(image, torch.cat(masks) if masks else None)
            self.backgrounds[source_id] = bg
        return self.backgrounds[source_id]

    def cutout(self, source_id: str, index: int) -> torch.Tensor:
        key = (source_id, index)
        if key not in self.cutouts:
            source = self.by_id[source_id]
            if source.cutout:
                self.cutouts[key] = _ready_cutout(source.path, self.size)
            else:
                image, masks = self._photo(source)
                self.cutouts[key] = tools.extract_foreground(image, masks[index])
        return self.cutouts[key]


def _ready_cutout(path: str, size: int) -> torch.Tensor:
    """A cut-out file as straight RGBA ``[1,4,h,w]``: at most ``size`` on its longest side,
    cropped to its alpha (+2 px), colour 0 where alpha is 0."""
    rgba = load_image(path)  # RGBA: greyscale cut-outs were skipped when scanning
    h, w = rgba.shape[-2:]
    scale = min(1.0, size / max(h, w))
    if scale < 1.0:
        rgba = tools.resize_rgba(rgba, (max(1, round(h * scale)), max(1, round(w * scale))))
    cropped = tools.crop_to_alpha(rgba)
    if cropped is None:
        raise LiWiError(f"cut-out '{path}' is empty")
    return cropped[0]


DARK_SCENES = 0.2  # share of samples whose background photo is dimmed to 30-65% of its brightness
# share of objects made dark (5-25% of their brightness): a black helmet or bag beside another
# object, which a shadow model must not take for that object's shadow
DARK_OBJECTS = 0.15


def compose_sample(plan: Plan, cache: _Cache) -> tuple[LayerStack, torch.Tensor, list[dict], dict]:
    """Build the layers of a plan: placement, harmonisation, cast shadows, prompt masks."""
    g = sample_generator(plan.seed, plan.index, plan.attempt)
    background = cache.background(plan.background)
    if float(torch.rand((), generator=g)) < DARK_SCENES:
        # dim scenes (dusk, indoor): shadows there are faint and objects barely stand out
        background = background * (0.3 + 0.35 * float(torch.rand((), generator=g)))
    h, w = background.shape[-2:]
    cutouts = [cache.cutout(sid, m) for sid, m in plan.objects]
    anchored = [m in cache.by_id[sid].bottom_cut for sid, m in plan.objects]
    placed = tools.place_objects((h, w), cutouts, g, anchored=anchored)
    layers, prompts, shadows = [], [], []
    # its own stream, so the draws above and below stay those of earlier runs of a seed
    g_dark = sample_generator(plan.seed, plan.index, plan.attempt + 7919)
    for k, (rgba, box) in enumerate(placed):
        rgba = tools.harmonize(rgba, background, box)
        if float(torch.rand((), generator=g_dark)) < DARK_OBJECTS:
            rgba = torch.cat([rgba[:, :3] * (0.05 + 0.2 * float(torch.rand((), generator=g_dark))), rgba[:, 3:]], 1)
        shadow, params = tools.cast_shadow(rgba[:, 3:4], g)
        layers.append(Layer(rgba=rgba, shadow=shadow, name=default_layer_name(k), prompt_index=k))
        prompts.append(tools.degrade_prompts(rgba[:, 3:4], g))
        shadows.append(params)
    hole = coverage(layers) if layers else torch.zeros_like(background[:, :1])
    stack = LayerStack(background=background, layers=layers, hole=hole,
                       meta={"engine": "add", "settings": {}})
    settings = {"shadows": shadows, "open_bottom": [box[1] == h for _, box in placed], "objects": [list(o) for o in plan.objects], "boxes": [list(b) for _, b in placed]}
    return stack, stack.composite(), prompts, settings


def _reason_key(reason: str) -> str:
    """'layer 2: only 31% visible' -> 'only visible': reasons counted without their numbers."""
    key = reason.split(":")[-1] if reason.startswith("layer") else reason.split(":")[0]
    return " ".join(re.sub(r"[\d.%]+", " ", key).replace("()", " ").split())


def make_slot(index: int, sources: list[Source], cache: "_Cache", config: AddConfig, seen_keys: set[str],
              log=None, rejections: dict | None = None, layers: int | None = None) -> Sample | None:
    """Plan, compose and curate sample ``index``, retrying up to ``config.attempts`` times.

    Returns the kept sample, or None when every attempt was rejected. ``layers`` asks for
    exactly that many objects (the node batches samples, so they must match).
    """
    sid = _sample_id(config.seed, index)
    for attempt in range(config.attempts):
        plan = plan_sample(sources, config.seed, index, attempt, config.max_objects, min_objects=layers or 1)
        stack, composite, prompts, settings = compose_sample(plan, cache)
        verdict = curate(stack, composite, seen_keys, config.limits, settings["open_bottom"])
        if layers is not None and len(stack.layers) != layers:
            verdict.keep = False
            verdict.reasons.append(f"placement kept {len(stack.layers)} of {layers} objects")
        if log is not None:
            log.write(json.dumps({"sample": sid, "attempt": attempt, "keep": verdict.keep,
                                  "reasons": verdict.reasons, "score": round(verdict.score, 4)}) + "\n")
        if verdict.keep:
            seen_keys.add(verdict.key)
            meta = {"index": index, "attempt": attempt, "seed": config.seed, "sample_seed": plan.seed,
                    "background": plan.background,
                    "sources": sorted({plan.background} | {o[0] for o in plan.objects}),
                    "tools": settings,
                    # rounded: the last float digits depend on the thread count
                    "curator": {"score": round(verdict.score, 4), "key": verdict.key}}
            return Sample(id=sid, composite=composite, stack=stack, prompts=prompts, meta=meta)
        if rejections is not None:
            for reason in verdict.reasons:
                rejections[_reason_key(reason)] = rejections.get(_reason_key(reason), 0) + 1
    return None


def synthesize(images: torch.Tensor, masks: list[list[torch.Tensor]] | None, num: int, seed: int = 0,
               size: int = 512, objects: int = 1, attempts: int = 8) -> list[Sample]:
    """ADD on in-memory photos (the node's path): ``images`` ``[B,3,H,W]``, ``masks[b]`` the
    object masks ``[1,1,H,W]`` of image b. Returns the kept samples, each with ``objects`` layers."""
    photos = {f"image_{b:03d}": (images[b:b + 1, :3], list(masks[b]) if masks else []) for b in range(images.shape[0])}
    sources = [Source(id=k, path="", masks=[f"mask_{j}" for j in range(len(m))]) for k, (_, m) in photos.items()]
    _review_masks(sources, AddConfig.max_background_hole, {}, load=lambda source: photos[source.id][1])
    if not any(s.is_donor for s in sources):
        raise LiWiError("ADD needs at least one object mask whose object does not touch its photo's edge")
    config = AddConfig(images="", out="", num=num, seed=seed, size=size, max_objects=objects, attempts=attempts)
    cache = _Cache(sources, size, photos)
    seen: set[str] = set()
    kept = [make_slot(i, sources, cache, config, seen, layers=objects) for i in range(num)]
    return [s for s in kept if s is not None]


def _rank() -> tuple[int, int]:
    """(process index, process count) from accelerate / torchrun's environment."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _sample_id(seed: int, index: int) -> str:
    return f"s{seed}-{index:07d}"


def run(config: AddConfig, rank: int | None = None, world_size: int | None = None,
        progress: bool = True, on_sample=None) -> dict:
    """Make this process's share of the samples; returns the summary."""
    r, n = _rank() if rank is None else (rank, world_size or 1)
    out = Path(config.out)
    sources, skipped = scan_sources(config.images, config.masks, config.min_side, config.max_pixels)
    _review_masks(sources, config.max_background_hole, skipped)
    if config.objects:
        cutouts, cut_skipped = scan_cutouts(config.objects, max_pixels=config.max_pixels)
        sources += cutouts
        for reason, files in cut_skipped.items():
            skipped.setdefault(reason, []).extend(files)
    if not sources:
        raise LiWiError(f"no usable photos in '{config.images}' (skipped: "
                        f"{', '.join(f'{k}: {len(v)}' for k, v in skipped.items()) or 'none found'})")
    if not any(s.is_donor for s in sources):
        raise LiWiError("no photo has a usable mask and no cut-out was given: give --masks (one "
                        "<stem>_mask.png per object, objects not touching the photo's edge) or --objects "
                        "(PNG cut-outs with transparency)")
    if out.exists() and not out.is_dir():
        raise LiWiError(f"cannot write the dataset to '{out}': it is a file, not a folder")
    _check_same_recipe(out, config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "log").mkdir(exist_ok=True)
    if r == 0:
        cfg = {**asdict(config), "format": "liwi-add/1", "world_size": n}
        (out / "config.json").write_text(json.dumps(cfg, indent=1, default=str) + "\n")
    done = set(sample_ids(out))
    mine = [i for i in range(config.num) if i % n == r]
    seen_keys: set[str] = set()
    for i in mine:  # keys of this share's finished samples: the duplicate check stays deterministic
        sid = _sample_id(config.seed, i)
        if sid in done:
            meta = json.loads((out / "samples" / sid / "sample.json").read_text())
            seen_keys.add(meta.get("curator", {}).get("key", ""))
    cache = _Cache(sources, config.size)
    log_path = out / "log" / f"rank-{r:03d}.jsonl"
    stats = {"kept": 0, "already_done": 0, "dropped": 0, "rejections": {}, "skipped_files":
             {k: len(v) for k, v in skipped.items()}}
    start = time.perf_counter()
    with open(log_path, "a") as log:
        for count, i in enumerate(mine, 1):
            sid = _sample_id(config.seed, i)
            if sid in done:
                stats["already_done"] += 1
                continue
            sample = make_slot(i, sources, cache, config, seen_keys, log, stats["rejections"])
            if sample is None:
                stats["dropped"] += 1
            else:
                write_sample(out, sample)
                if on_sample is not None:
                    on_sample(sample)
                stats["kept"] += 1
            log.flush()
            if progress and r == 0:
                rate = (stats["kept"] + stats["dropped"]) / max(time.perf_counter() - start, 1e-9)
                print(f"\r  [{count}/{len(mine)}] kept {stats['kept']} dropped {stats['dropped']} "
                      f"rejections {sum(stats['rejections'].values())} {rate:.2f} samples/s", end="", file=sys.stderr)
    if progress and r == 0:
        print(file=sys.stderr)
    stats["seconds"] = time.perf_counter() - start
    stats["rank"], stats["world_size"] = r, n
    (out / "log" / f"summary-rank-{r:03d}.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats


#: what a dataset's samples are made with: a folder holds samples of one recipe (``num`` may grow)
RECIPE = ("size", "max_objects")


def _check_same_recipe(out: Path, config: AddConfig) -> None:
    """Refuse to add samples of another size (or object count) to a folder that holds some: a
    resumed or extended run must make what the folder already holds."""
    try:
        earlier = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return
    if not isinstance(earlier, dict) or not sample_ids(out):
        return
    for key in RECIPE:
        if key in earlier and earlier[key] != getattr(config, key):
            raise LiWiError(f"'{out}' holds samples made with {key} {earlier[key]}, not {getattr(config, key)}: "
                            f"give the same --{key.replace('_', '-')} or another --out")


def configure(p: argparse.ArgumentParser) -> None:
    """The ``add`` command's flags (:mod:`liwi_core.cli`)."""
    p.add_argument("--images", help="folder of photos (searched recursively)")
    p.add_argument("--masks", help="folder of object masks: <stem>_mask*.png, white = object")
    p.add_argument("--objects", help="folder of ready cut-outs (PNG with transparency) to paste as objects")
    p.add_argument("--out", help="dataset folder (samples/, log/, config.json)")
    p.add_argument("--num", type=int, help="number of sample slots (default 100)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--size", type=int, help="longest side of the samples (default 512)")
    p.add_argument("--max-objects", type=int, help="default 3")
    p.add_argument("--attempts", type=int, help="tries per slot before it is dropped (default 4)")
    p.add_argument("--config", help="JSON file with any of these options (flags win)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run_command, add_parser=p)


def run_command(args: argparse.Namespace) -> None:
    values = {}
    if args.config:
        try:
            values = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LiWiError(f"cannot read config '{args.config}': {exc}") from None
        known = {f.name for f in fields(AddConfig)} - {"limits"}
        if not isinstance(values, dict):
            raise LiWiError(f"config '{args.config}' must be a JSON object of options")
        unknown = sorted(set(values) - known)
        if unknown:
            raise LiWiError(f"config '{args.config}': unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})")
    # flags win over the config, even one given at its default value (flags default to None)
    for key in ("images", "masks", "objects", "out", "num", "seed", "size", "max_objects", "attempts"):
        given = getattr(args, key)
        if given is not None:
            values[key] = given
    missing = [k for k in ("images", "out") if not values.get(k)]
    if missing:
        raise LiWiError(f"give --{' and --'.join(missing)} (or put them in --config)")
    print(json.dumps(run(AddConfig(**values), progress=not args.quiet)))


def main(argv: list[str] | None = None) -> int:
    """``python -m liwi_core.add`` (kept as an alias) is ``python -m liwi_core add``."""
    from ..cli import main_as

    return main_as("add", argv)
