"""Automatic mode's proposals on synthetic scenes made from data that is not reserved.

    python scripts/proposal_check.py --num 40                  # proposals only (fast)
    python scripts/proposal_check.py --num 12 --engine classical  # the engine's layers too
    python scripts/proposal_check.py --num 40 --against HEAD~1     # liwi_core/proposals.py at a revision

Scenes are training-half cut-outs (``liwi_core.heldout.split_objects(...)[0]`` of
``data/sources/objects``) pasted on crops of ``data/sources/backgrounds``: one object; two
apart; two where a smaller one stands in front of the lower half of a larger one (an object
held in front of a person, as on a portrait); and the same with a person-like cut-out behind.
The truth is each object's visible alpha. A found object matches one by alpha soft IoU >= 0.5
(one to one, :func:`liwi_core.metrics.match_layers_by_alpha`); the script prints, per kind of
scene, the matched IoU (unmatched objects score 0), missed objects and spurious proposals per
image, and how many pairs of matched overlapping objects come front to back in the right order. The example photos are never used here: they are kept for the final check.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from liwi_core.heldout import split_objects
from liwi_core.metrics import match_layers_by_alpha
from liwi_core.proposals import find_objects

ROOT = Path(__file__).resolve().parent.parent
SIDE = 512
KINDS = ("single", "apart", "overlap", "person")
PEOPLE = ("people_", "fireman", "granny")


def _cutout(path: Path, height: int) -> tuple[np.ndarray, np.ndarray]:
    im = Image.open(path).convert("RGBA")
    bbox = im.getchannel("A").point(lambda v: 255 if v > 8 else 0).getbbox()
    im = im.crop(bbox)
    width = max(8, round(im.width * height / im.height))
    if width > 0.9 * SIDE:
        height, width = round(height * 0.9 * SIDE / width), round(0.9 * SIDE)
    a = np.asarray(im.resize((width, height), Image.LANCZOS), np.float32) / 255
    return a[..., :3], a[..., 3]


def _paste(canvas, alphas, rgb, alpha, top, left):
    """Paste a cut-out over ``canvas`` (in front of everything so far); returns its canvas alpha."""
    full = np.zeros(canvas.shape[:2], np.float32)
    h, w = alpha.shape
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, SIDE), min(left + w, SIDE)
    full[t0:t1, l0:l1] = alpha[t0 - top:t1 - top, l0 - left:l1 - left]
    colour = np.zeros_like(canvas)
    colour[t0:t1, l0:l1] = rgb[t0 - top:t1 - top, l0 - left:l1 - left]
    canvas[:] = full[..., None] * colour + (1 - full[..., None]) * canvas
    for a in alphas:
        a *= 1 - full
    alphas.append(full)


def _touch(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two visible alphas meet (one hides part of the other)."""
    grown = torch.nn.functional.max_pool2d((a > 0.5).float(), 5, 1, 2)
    return bool((grown * (b > 0.5).float()).sum() > 0)


def make_scene(kind: str, rng: random.Random, objects: list[Path], people: list[Path], backgrounds: list[Path]):
    bg = Image.open(rng.choice(backgrounds)).convert("RGB")
    crop = rng.randint(SIDE // 2, min(bg.size))
    x, y = rng.randint(0, bg.width - crop), rng.randint(0, bg.height - crop)
    canvas = np.asarray(bg.crop((x, y, x + crop, y + crop)).resize((SIDE, SIDE), Image.BILINEAR), np.float32) / 255
    canvas = canvas.copy()
    alphas: list[np.ndarray] = []
    if kind == "single":
        rgb, a = _cutout(rng.choice(objects), rng.randint(int(0.35 * SIDE), int(0.7 * SIDE)))
        _paste(canvas, alphas, rgb, a, rng.randint(int(0.6 * SIDE), SIDE) - a.shape[0],
               rng.randint(0, SIDE - a.shape[1]))
    elif kind == "apart":
        for k in range(2):
            rgb, a = _cutout(rng.choice(objects), rng.randint(int(0.25 * SIDE), int(0.45 * SIDE)))
            if a.shape[1] > 0.45 * SIDE:
                rgb, a = _cutout(rng.choice(objects), int(0.25 * SIDE))
            half = SIDE // 2
            left = k * half + rng.randint(0, max(0, half - a.shape[1] - 8))
            _paste(canvas, alphas, rgb, a, rng.randint(int(0.6 * SIDE), SIDE) - a.shape[0], left)
    else:
        back = rng.choice(people if kind == "person" else objects)
        rgb, a = _cutout(back, rng.randint(int(0.6 * SIDE), int(0.85 * SIDE)))
        top, left = SIDE - a.shape[0] + rng.randint(0, int(0.1 * SIDE)), rng.randint(0, SIDE - a.shape[1])
        _paste(canvas, alphas, rgb, a, top, left)
        rgb2, a2 = _cutout(rng.choice(objects), rng.randint(int(0.25 * SIDE), int(0.4 * SIDE)))
        # in front of the back object's lower half, partly sticking out of it
        cx = left + rng.choice((0.15, 0.5, 0.85)) * a.shape[1] + rng.uniform(-0.1, 0.1) * a.shape[1]
        _paste(canvas, alphas, rgb2, a2, SIDE - a2.shape[0] + rng.randint(0, int(0.08 * SIDE)),
               int(np.clip(cx - a2.shape[1] / 2, 0, SIDE - a2.shape[1])))
    image = torch.from_numpy(canvas).permute(2, 0, 1)[None].contiguous()
    truth = [torch.from_numpy(a)[None, None] for a in alphas if a.sum() >= 0.01 * SIDE * SIDE]
    return image, truth


def proposals_at(rev: str):
    """``find_objects`` from ``liwi_core/proposals.py`` as it was at git revision ``rev``."""
    text = subprocess.run(["git", "show", f"{rev}:liwi_core/proposals.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "proposals.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("liwi_core._proposals_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.find_objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=40, help="scenes of each kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", help="also decompose with this engine and score its layers")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds of scene")
    parser.add_argument("--against", help="use liwi_core/proposals.py at this git revision instead")
    parser.add_argument("--save", help="write each scene and its proposals to this folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    objects, _ = split_objects((ROOT / "data/sources/objects").glob("*.png"))
    people = [p for p in objects if any(k in p.name for k in PEOPLE)]
    objects = [p for p in objects if p not in people]
    backgrounds = sorted((ROOT / "data/sources/backgrounds").glob("*.png"))
    find = proposals_at(args.against) if args.against else find_objects
    engine = None
    if args.engine:
        from liwi_core.engines import create
        engine = create(args.engine)
    for kind in args.kinds.split(","):
        rng = random.Random(f"{args.seed}-{kind}")
        scores, seconds, ordered = [], 0.0, [0, 0]
        for n in range(args.num):
            image, truth = make_scene(kind, rng, objects, people, backgrounds)
            if not truth:
                continue  # no cut-out could be placed: nothing to find or score
            start = time.perf_counter()
            found = find(image)
            seconds += time.perf_counter() - start
            preds = list(found.masks[:, None])
            if engine is not None and preds:
                preds = [layer.alpha for layer in engine.decompose(image, found.masks).layers]
            pairs = match_layers_by_alpha(preds, truth)
            # truth is back to front, proposals front to back
            for p, g, _ in pairs:
                for q, h, _ in pairs:
                    if g < h and _touch(truth[g], truth[h]):
                        ordered[0] += q < p
                        ordered[1] += 1
            scores.append((sum(p[2] for p in pairs) / len(truth), len(truth) - len(pairs), len(preds) - len(pairs)))
            if args.save:
                out = Path(args.save)
                out.mkdir(parents=True, exist_ok=True)
                tiles = [image[0]] + [m.expand(3, -1, -1) for m in found.masks[:, 0, None]]
                arr = (torch.cat(tiles, dim=2).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                Image.fromarray(arr).resize((arr.shape[1] // 2, arr.shape[0] // 2)).save(out / f"{kind}_{n:02d}.png")
        s = np.array(scores)
        print(f"{kind:8s} n={len(s)} matched IoU {s[:, 0].mean():.3f}  missed/img {s[:, 1].mean():.2f}  "
              f"spurious/img {s[:, 2].mean():.2f}  order right {ordered[0]}/{ordered[1]}  finding {seconds / len(s):.2f} s")


if __name__ == "__main__":
    main()
