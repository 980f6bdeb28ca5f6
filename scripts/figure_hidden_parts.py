"""The README's hidden-parts figure: an object behind another, with the one in front taken away.

    python scripts/figure_hidden_parts.py [--out docs/hidden_parts.png] [--data benchmarks/dev-photos-2] [--count 4]

The first ``count`` scenes of a tuning set (in order, none picked by hand) where an object hides
more than 2% of the one behind it, each object prompted with its dilated mask (a loose brush):
the photo, the stack with the front object's layer (and its shadow) left out as the refined
engine made it before 2026-11-28 (``hidden_parts`` off) and now, and the true stack the same way,
each cut to the objects' box.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from make_figures import sheet

from liwi_core.dataset import iter_samples
from liwi_core.decompose import decompose
from liwi_core.engines import base, create
from liwi_core.filters import bounding_box
from liwi_core.layers import LayerStack

ROOT = Path(__file__).resolve().parent.parent


def without_front(stack: LayerStack) -> torch.Tensor:
    """The stack recomposed with its front layer left out."""
    return LayerStack(stack.background, stack.layers[:-1]).composite()


def crop_to_objects(image: torch.Tensor, stack: LayerStack, margin: float = 0.15) -> torch.Tensor:
    """``image`` cut to the box of the stack's objects, grown by ``margin`` of its size."""
    y0, y1, x0, x1 = bounding_box(torch.stack([layer.alpha for layer in stack.layers]).amax(0))
    h, w = image.shape[-2:]
    my, mx = round(margin * (y1 - y0)), round(margin * (x1 - x0))
    return image[..., max(0, y0 - my):min(h, y1 + my), max(0, x0 - mx):min(w, x1 + mx)]


def hidden_share(stack: LayerStack) -> float:
    """How much of the back layer the front one hides (two-layer stacks)."""
    back, front = stack.layers[0].alpha, stack.layers[-1].alpha
    return float((back * front).sum() / back.sum().clamp_min(1e-6))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "hidden_parts.png"))
    parser.add_argument("--data", default=str(ROOT / "benchmarks" / "dev-photos-2"))
    parser.add_argument("--count", type=int, default=4)
    args = parser.parse_args()
    engine = create("refined")
    peel_each = base.StackBuilder.peel_each
    rows = []
    for sample in iter_samples(args.data):
        if len(sample.stack.layers) != 2 or hidden_share(sample.stack) <= 0.02:
            continue
        masks = torch.cat([sample.prompts[k]["dilated"] for k in reversed(range(len(sample.prompts)))])
        views = []
        for hidden_parts in (False, True):
            base.StackBuilder.peel_each = lambda self, *a, _on=hidden_parts, **k: peel_each(self, *a, **{**k, "hidden_parts": _on})
            try:
                views.append(without_front(decompose(sample.composite, masks, engine)))
            finally:
                base.StackBuilder.peel_each = peel_each
        crop = lambda t: crop_to_objects(t, sample.stack)
        rows.append([(sample.id, crop(sample.composite)), ("front left out, before", crop(views[0])),
                     ("front left out, now", crop(views[1])), ("front left out, truth", crop(without_front(sample.stack)))])
        if len(rows) == args.count:
            break
    sheet(rows, width=220).save(args.out)
    print(json.dumps({"wrote": args.out, "scenes": [r[0][0] for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
