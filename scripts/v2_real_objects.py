"""What automatic mode's misses and spurious layers are on the held-out scenes built over the
example photos: the photo's own object, or a pasted object merged with something.

The held-out scenes (``liwi_core.benchmark_scenes``) paste objects over reserved photos, and the
truth holds only the pasted objects. Over the four example photos the photo's own object (a cup,
a cat, an astronaut, a rocket) is known from its mask in ``example_images/``, mapped into each
scene through the crop the scene records (:func:`liwi_core.benchmark_scenes.photo_object_mask`;
``eval`` itself reports the engine's layers on it as ``auto_photo_objects``). Per scene this
counts, with the proposals of :func:`liwi_core.proposals.find_objects`:

* proposals that are the photo's own object alone (IoU above 0.5 with its visible part, below
  0.3 with every true layer): spurious by the benchmark's truth, found by design;
* true layers no proposal matches (IoU below 0.5) that lie mostly (over half their area) inside
  one proposal: merged with what they touch.

The benchmark's own spurious and missed counts come from an evaluation's JSON::

    python -m liwi_core eval benchmarks/heldout-v2 --engines refined --flavours automatic --json auto.json
    python scripts/v2_real_objects.py --eval-json auto.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from liwi_core.benchmark_scenes import photo_object_mask
from liwi_core.dataset import iter_samples
from liwi_core.proposals import find_objects


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT / "benchmarks" / "heldout-v2"))
    parser.add_argument("--eval-json", required=True, help="an automatic evaluation of --data ('eval ... --json')")
    parser.add_argument("--masks", default=str(ROOT / "example_images"))
    args = parser.parse_args()
    results = json.loads(Path(args.eval_json).read_text())
    rows = {r["id"]: r for result in results if result.get("flavour") == "automatic" for r in result["rows"]}
    totals = {"scenes": 0, "spurious": 0.0, "photo_object_alone": 0, "missed": 0.0, "missed_inside_a_layer": 0}
    for sample in iter_samples(args.data, ids=sorted(rows)):
        truths = [layer.rgba[0, 3].numpy() > 0.5 for layer in sample.stack.layers]
        own = photo_object_mask(sample.meta.get("background"), truths[0].shape[0], [Path(args.masks)]) if truths else None
        if own is None:
            continue
        own = own[0, 0].numpy() > 0.5
        visible = own & ~np.any(truths, axis=0)
        found = [m[0].numpy() > 0.5 for m in find_objects(sample.composite).masks]
        totals["scenes"] += 1
        totals["spurious"] += rows[sample.id]["auto_spurious"]
        totals["missed"] += rows[sample.id]["auto_missed"]
        totals["photo_object_alone"] += sum(_iou(f, visible) > 0.5 and max(_iou(f, t) for t in truths) < 0.3
                                            for f in found)
        for t in truths:
            if found and max(_iou(f, t) for f in found) < 0.5 and max((f & t).sum() for f in found) > 0.5 * t.sum():
                totals["missed_inside_a_layer"] += 1
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
