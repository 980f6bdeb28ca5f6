"""The README's shadow figure: the coffee cup's layers with the classical and the refined engine,
and the cup moved with its shadow.

    python scripts/figure_moved_shadow.py [--out docs/moved_shadow.png] [--photo coffee] [--dx -140]

Per engine: the photo with its rough mask, the object's shadow layer (what it darkens), the
object layer, the clean background, and the object moved by ``dx`` pixels with its shadow,
recomposed. A shadow left in the background stays behind when the object moves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from liwi_core.decompose import decompose
from liwi_core.engines import create
from liwi_core.imageio import load_image, load_mask
from liwi_core.layers import LayerEdit, edit_stack
from make_figures import EXAMPLES, on_checker, sheet


def rows_for(photo: str, engines: list[str], dx: int) -> list:
    image = load_image(EXAMPLES / f"{photo}.png")[:, :3]
    mask = load_mask(EXAMPLES / f"{photo}_mask.png")
    overlay = image * (1 - 0.45 * mask) + torch.tensor([1.0, 0.1, 0.1]).view(1, 3, 1, 1) * 0.45 * mask
    rows = []
    for name in engines:
        stack = decompose(image, mask, create(name), names=[photo])
        layer = stack.layers[0]
        h, w = stack.size
        moved = edit_stack(stack, {0: LayerEdit(dx=dx)}).composite()
        rows.append([(f"{name}: input + mask", overlay), ("shadow layer", layer.shadow.expand(1, 3, h, w)),
                     ("object layer", on_checker(layer)), ("background", stack.background),
                     (f"moved dx={dx}", moved)])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "moved_shadow.png"))
    p.add_argument("--photo", default="coffee")
    p.add_argument("--dx", type=int, default=-140)
    p.add_argument("--engines", default="classical,refined")
    args = p.parse_args()
    sheet(rows_for(args.photo, args.engines.split(","), args.dx), width=260).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
