"""SHA-256 of every layer each engine makes on the example photos: a refactor must not change one byte.

    python scripts/layer_hashes.py --out before.json     # on the old code
    python scripts/layer_hashes.py --compare before.json # on the new code; exit 1 if any layer differs

Engines: classical (prompted), baseline (prompted), learned with the bundled checkpoint
(prompted and automatic), folder (the classical layers written and read back).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# the checkout this script lies in, not whatever liwi_core the environment installed (an editable
# install points at one checkout, and "on the old code" is often a second one, a git worktree)
sys.path.insert(0, str(ROOT))
PHOTOS = ["coffee", "chelsea", "astronaut", "rocket"]


def _digest(t: torch.Tensor | None) -> str | None:
    return None if t is None else hashlib.sha256(t.detach().contiguous().float().numpy().tobytes()).hexdigest()[:16]


def stack_digest(stack) -> dict:
    return {"background": _digest(stack.background), "hole": _digest(stack.hole),
            "layers": [{"name": l.name, "prompt_index": l.prompt_index, "rgba": _digest(l.rgba),
                        "shadow": _digest(l.shadow)} for l in stack.layers]}


def run_engines() -> dict:
    from liwi_core.engines import create
    from liwi_core.export import save_layers_dir
    from liwi_core.imageio import load_image, load_mask

    torch.set_num_threads(2)
    engines = {"refined": create("refined"), "classical": create("classical"), "baseline": create("baseline"),
               "learned": create("learned")}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in PHOTOS:
            image = load_image(ROOT / "example_images" / f"{name}.png")
            mask = load_mask(ROOT / "example_images" / f"{name}_mask.png")
            for engine_name, engine in engines.items():
                out[f"{name}/{engine_name}"] = stack_digest(engine.decompose(image, mask))
            out[f"{name}/learned-automatic"] = stack_digest(engines["learned"].decompose(image, None))
            out[f"{name}/refined-automatic"] = stack_digest(engines["refined"].decompose(image, None))
            save_layers_dir(engines["classical"].decompose(image, mask), Path(tmp) / name)
        folder = create("folder", path=tmp)
        for name in PHOTOS:
            out[f"{name}/folder"] = stack_digest(folder.decompose(None, None, key=name))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the digests here")
    p.add_argument("--compare", help="compare with digests written before; exit 1 on any difference")
    args = p.parse_args(argv)
    digests = run_engines()
    if args.out:
        Path(args.out).write_text(json.dumps(digests, indent=1) + "\n")
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        differ = sorted(k for k in before.keys() | digests.keys() if before.get(k) != digests.get(k))
        print(f"{len(digests)} stacks compared, {len(differ)} differ" + (": " + ", ".join(differ) if differ else ""))
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
