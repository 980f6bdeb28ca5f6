"""Contact sheet of the held-out benchmark scenes: per sample the image, the true object layers
(on a checkerboard, background left out) and the true shadow (all shadow maps multiplied, on white).

    python scripts/heldout_sheet.py [--data benchmarks/heldout-v2] [--num 8] [--out docs/heldout_v2_sheet.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from liwi_core.compositing import composite_layers  # noqa: E402
from liwi_core.dataset import iter_samples, sample_ids  # noqa: E402
from liwi_core.imageio import pil_from_tensor  # noqa: E402


def panels(sample, side: int) -> list[Image.Image]:
    stack = sample.stack
    h, w = stack.size
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    checker = (0.75 + 0.15 * (((yy // 16) + (xx // 16)) % 2).float()).expand(1, 3, h, w)
    layers = composite_layers(checker, [(l.rgba, None) for l in stack.layers])
    shadow = stack.combined_shadow()
    return [pil_from_tensor(t).resize((side, side), Image.LANCZOS) for t in (sample.composite, layers, shadow)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="benchmarks/heldout-v2")
    p.add_argument("--num", type=int, default=8)
    p.add_argument("--side", type=int, default=170)
    p.add_argument("--columns", type=int, default=2, help="samples per row")
    p.add_argument("--out", default="docs/heldout_v2_sheet.png")
    args = p.parse_args(argv)
    ids = sample_ids(args.data)
    step = max(1, len(ids) // args.num)
    picked = ids[::step][:args.num]
    side, gap, label = args.side, 4, 14
    rows = (len(picked) + args.columns - 1) // args.columns
    width = args.columns * (3 * side + 2 * gap) + (args.columns - 1) * 3 * gap
    sheet = Image.new("RGB", (width, rows * (side + label + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for n, sample in enumerate(iter_samples(args.data, ids=picked)):
        r, c = divmod(n, args.columns)
        x0, y0 = c * (3 * side + 5 * gap), r * (side + label + gap)
        kinds = ",".join(sample.meta.get("prompt_kinds", []))
        draw.text((x0 + 2, y0 + 1), f"{sample.id} {sample.meta['background']['file']} [{kinds}]", fill="black")
        for k, im in enumerate(panels(sample, side)):
            sheet.paste(im, (x0 + k * (side + gap), y0 + label))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
