"""The example photos with rough prompts, with and without the prompt segmenter.

    python scripts/segmenter_examples.py [--out sheet.png] [--segmenter FOLDER]

For each photo in ``example_images/`` and its bundled mask: the mask itself, its box, and the
mask grown by 15 px, decomposed by the refined engine with ``prompt_segmenter`` off and on.
Prints each layer's soft alpha IoU against the layer the mask itself gives without the
segmenter, and draws a sheet: the prompt over the photo, the alpha without, the alpha with.
The photos are reserved for evaluation: look, never tune.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from liwi_core.engines import create
from liwi_core.filters import bounding_box, dilate, resize
from liwi_core.imageio import load_image, load_mask
from liwi_core.metrics import alpha_soft_iou

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")
TILE = 200


def _prompts(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    y0, y1, x0, x1 = bounding_box(mask)
    box = torch.zeros_like(mask)
    box[..., y0:y1, x0:x1] = 1
    return {"mask": mask, "box": box, "grown 15 px": (dilate(mask, 15) > 0.5).float()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="PNG sheet to write")
    p.add_argument("--segmenter", default=None, help="a segmenter folder (default: the bundled one)")
    args = p.parse_args(argv)
    if args.segmenter:
        from liwi_core import segmenter

        segmenter._SHARED[:] = [segmenter.load_segmenter(args.segmenter)]
    without, with_ = create("refined", prompt_segmenter=False), create("refined")
    rows = []
    for name in PHOTOS:
        img = load_image(ROOT / "example_images" / f"{name}.png")[:, :3]
        mask = (load_mask(ROOT / "example_images" / f"{name}_mask.png") > 0.5).float()
        reference = without.decompose(img, mask).layers[0].alpha
        for kind, prompt in _prompts(mask).items():
            alphas = [engine.decompose(img, prompt).layers[0].alpha for engine in (without, with_)]
            scores = [round(alpha_soft_iou(a, reference), 3) for a in alphas]
            print(f"{name:10s} {kind:12s} without {scores[0]:.3f}  with {scores[1]:.3f}", flush=True)
            tiles = [img[0] * 0.6 + 0.4 * prompt[0].expand(3, -1, -1)] + [a[0].expand(3, -1, -1) for a in alphas]
            rows.append(torch.cat([resize(t[None], (TILE, TILE))[0] for t in tiles], -1))
    if args.out:
        from PIL import Image

        sheet = torch.cat(rows, -2).clamp(0, 1).permute(1, 2, 0).numpy()
        Image.fromarray((sheet * 255).round().astype(np.uint8)).save(args.out)
        print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
