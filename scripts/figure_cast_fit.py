"""The README's cast-shadow figure: what `shadow.fit_cast_shadow` hands the refiner, on tuning scenes.

    python scripts/figure_cast_fit.py [--out docs/cast_fit.png] [--data benchmarks/dev-photos] [--count 5]

The first ``count`` one-object scenes of a tuning set, in order (none picked by hand), each
prompted with its dilated mask: the photo, the true shadow, the cast shadow fitted to the classical alpha (the plane the refiner
reads, on its region of interest), and the refined shadow layer with the refiner of stage 10
(without the plane) and the bundled one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from make_figures import sheet

from liwi_core.dataset import iter_samples
from liwi_core.decompose import decompose
from liwi_core.engines import create, refined
from liwi_core.filters import resize

ROOT = Path(__file__).resolve().parent.parent
#: the last commit whose bundled refiner did not read the fitted cast shadow (stage 10)
STAGE_10 = "a92c417"


def stage_10_refiner(folder: Path) -> Path:
    """The stage-10 refiner's files, taken from git into ``folder``."""
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        blob = subprocess.run(["git", "show", f"{STAGE_10}:liwi_core/weights/liwi-refiner/{name}"], cwd=ROOT,
                              capture_output=True, check=True).stdout
        (folder / name).write_bytes(blob)
    return folder


def fitted_planes(image: torch.Tensor, masks: torch.Tensor, engine) -> torch.Tensor:
    """The cast-shadow planes the engine fits, pasted on the canvas (the lower where two overlap)."""
    seen, regions = [], []
    real_fit, real_peel = refined.fit_cast_shadow, refined.peel_region

    def fit(img, alpha, **kwargs):
        found = real_fit(img, alpha, **kwargs)
        seen.append(found.shadow)
        return found

    def peel(img, mask, *args, **kwargs):
        out = real_peel(img, mask, *args, **kwargs)
        regions.append(out[0])
        return out

    refined.fit_cast_shadow, refined.peel_region = fit, peel
    try:
        decompose(image, masks, engine)
    finally:
        refined.fit_cast_shadow, refined.peel_region = real_fit, real_peel
    canvas = torch.ones(1, 1, *image.shape[-2:])
    for p, (y0, y1, x0, x1) in zip(seen, regions, strict=True):
        canvas[..., y0:y1, x0:x1] = torch.minimum(canvas[..., y0:y1, x0:x1], resize(p, (y1 - y0, x1 - x0)))
    return canvas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "cast_fit.png"))
    parser.add_argument("--data", default=str(ROOT / "benchmarks" / "dev-photos"))
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = create("refined", refiner_checkpoint=str(stage_10_refiner(Path(tmp))))
        now = create("refined")
        rows = []
        for sample in iter_samples(args.data):
            if len(sample.stack.layers) != 1:
                continue
            masks = sample.prompts[0]["dilated"]
            grey = lambda t: t.mean(1, keepdim=True).expand(1, 3, *t.shape[-2:])
            old, new = (decompose(sample.composite, masks, e).layers[0].shadow for e in (before, now))
            rows.append([(f"{sample.id}", sample.composite), ("true shadow", grey(sample.stack.layers[0].shadow)),
                         ("fitted cast shadow", grey(fitted_planes(sample.composite, masks, now))),
                         ("refined, stage 10", grey(old)), ("refined, bundled (stage 14)", grey(new))])
            if len(rows) == args.count:
                break
    sheet(rows, width=200).save(args.out)
    print(json.dumps({"wrote": args.out, "scenes": [r[0][0] for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
