"""Render the README's before/after figures from the bundled examples with the pack itself.

    python scripts/make_figures.py [--out docs]
    python scripts/make_figures.py --automatic    # automatic mode: docs/automatic.png

Per example: input with its rough mask, clean background, object layer (on a checkerboard),
its shadow map, and the object moved with its shadow, recomposed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from liwi_core.decompose import decompose
from liwi_core.engines import DEFAULT_ENGINE, create
from liwi_core.proposals import ProposalSettings
from liwi_core.imageio import load_image, load_mask, to_uint8
from liwi_core.layers import LayerEdit, edit_stack

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example_images"
MOVES = {"coffee": (-140, 0), "chelsea": (-60, 0), "astronaut": (-90, 0), "rocket": (120, 0)}


def checker(h: int, w: int, size: int = 12) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h) // size, torch.arange(w) // size, indexing="ij")
    return (0.75 + 0.2 * ((yy + xx) % 2)).float()[None, None].expand(1, 3, h, w)


def on_checker(layer) -> torch.Tensor:
    """A layer's colour over a checkerboard where it is transparent, ``[1,3,H,W]``."""
    h, w = layer.alpha.shape[-2:]
    return layer.alpha * layer.rgba[:, :3] + (1 - layer.alpha) * checker(h, w)


def tiles_for(name: str) -> list[tuple[str, torch.Tensor]]:
    image = load_image(EXAMPLES / f"{name}.png")[:, :3]
    mask = load_mask(EXAMPLES / f"{name}_mask.png")
    stack = decompose(image, mask, names=[name])
    layer = stack.layers[0]
    h, w = stack.size
    overlay = image * (1 - 0.45 * mask) + torch.tensor([1.0, 0.1, 0.1]).view(1, 3, 1, 1) * 0.45 * mask
    dx, dy = MOVES.get(name, (60, 0))
    moved = edit_stack(stack, {0: LayerEdit(dx=dx, dy=dy)}).composite()
    return [("input + rough mask", overlay), ("background", stack.background), ("object layer", on_checker(layer)),
            ("shadow map", layer.shadow.expand(1, 3, h, w)), (f"moved dx={dx}", moved)]


def learned_rows(names: list[str], checkpoint=None) -> tuple[list, dict]:
    """The learned engine on the bundled photos: automatic mode (no mask) and prompted with
    the rough mask. Returns the rows and, per photo, how much of the automatic layer's alpha
    lies inside the photo's mask and its soft IoU with the mask."""
    from liwi_core.engines.learned import load_model
    from liwi_core.metrics import alpha_soft_iou

    model = load_model(checkpoint)
    rows, scores = [], {}
    for name in names:
        image = load_image(EXAMPLES / f"{name}.png")[:, :3]
        mask = load_mask(EXAMPLES / f"{name}_mask.png")
        h, w = image.shape[-2:]
        auto = decompose(image, None, create("learned", model=model), find=ProposalSettings(max_objects=1))
        prompted = decompose(image, mask, create("learned", model=model))
        row = [("input", image)]
        if auto.layers:
            a = auto.layers[0]
            row += [("automatic: layer", on_checker(a)),
                    ("automatic: background", auto.background)]
            scores[name] = {"inside_mask": round(float((a.alpha * mask).sum() / a.alpha.sum().clamp_min(1e-6)), 3),
                            "iou_with_mask": round(alpha_soft_iou(a.alpha, mask), 3)}
        else:
            row += [("automatic: nothing found", torch.ones(1, 3, h, w)), ("", torch.ones(1, 3, h, w))]
            scores[name] = None
        p = prompted.layers[0]
        row += [("prompted: layer", on_checker(p)),
                ("prompted: background", prompted.background), ("prompted: shadow", p.shadow.expand(1, 3, h, w))]
        rows.append(row)
    return rows, scores


def sheet(rows: list[list[tuple[str, torch.Tensor]]], width: int = 240) -> Image.Image:
    cells = []
    for row in rows:
        imgs = []
        for label, t in row:
            im = Image.fromarray(to_uint8(t))
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
            imgs.append((label, im))
        cells.append(imgs)
    row_h = [max(im.height for _, im in r) + 18 for r in cells]
    columns = max(len(r) for r in cells)
    out = Image.new("RGB", (width * columns + 4 * columns, sum(row_h)), "white")
    draw = ImageDraw.Draw(out)
    y = 0
    for r, rh in zip(cells, row_h):
        for i, (label, im) in enumerate(r):
            x = i * (width + 4)
            draw.text((x + 2, y + 2), label, fill="black")
            out.paste(im, (x, y + 16))
        y += rh
    return out


def add_rows(num: int = 4, size: int = 384) -> list[list[tuple[str, torch.Tensor]]]:
    """ADD samples from the bundled photos: composite, background, each layer, shadows."""
    import shutil
    import tempfile

    from liwi_core.add.run import AddConfig, run

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images, masks = Path(tmp) / "i", Path(tmp) / "m"
        images.mkdir()
        masks.mkdir()
        for p in EXAMPLES.glob("*.png"):
            shutil.copy(p, (masks if p.stem.endswith("_mask") else images) / p.name)
        run(AddConfig(images=str(images), masks=str(masks), out=f"{tmp}/out", num=num, seed=0, size=size),
            progress=False)
        rows = dataset_rows(f"{tmp}/out", num)
    return rows


def dataset_rows(root, num: int) -> list[list[tuple[str, torch.Tensor]]]:
    """The first ``num`` samples of a layered dataset: composite, background, layers, shadows."""
    from liwi_core.dataset import iter_samples

    rows = []
    for sample in iter_samples(root):
        if len(rows) == num:
            break
        stack = sample.stack
        h, w = stack.size
        row = [(f"{sample.id} composite", sample.composite), ("background", stack.background)]
        for k, layer in enumerate(stack.layers[:3]):
            row.append((f"layer {k}", on_checker(layer)))
        row += [("", torch.ones(1, 3, h, w))] * (3 - min(3, len(stack.layers)))
        row.append(("shadows", stack.combined_shadow()))
        rows.append(row)
    return rows


def automatic_rows(names: list[str]) -> tuple[list, dict]:
    """Automatic mode (no mask, the default engine) on the bundled photos: the saliency map,
    the proposals outlined on the photo, each layer, the background; for a photo where Find
    Objects offers cuts, a second row with them taken (``split``). Returns the rows and, per
    photo, the found objects' alpha IoU with the layer the photo's own mask gives."""
    from liwi_core.metrics import alpha_soft_iou
    from liwi_core.proposals import ProposalSettings, find_objects

    engine = create(DEFAULT_ENGINE)
    rows, scores = [], {}
    colours = [(1.0, 0.15, 0.1), (0.1, 0.6, 1.0), (0.2, 0.9, 0.2), (1.0, 0.8, 0.1)]
    for name in names:
        image = load_image(EXAMPLES / f"{name}.png")[:, :3]
        reference = engine.decompose(image, load_mask(EXAMPLES / f"{name}_mask.png")).layers[0].alpha
        offered = find_objects(image, ProposalSettings(offer_cuts=True)).offered
        splits = [("", name)]
        if len(offered):
            numbers = ",".join(str(k) for k in range(1, len(offered) + 1))
            splits.append((numbers, f"{name}, split {numbers}"))
        for split, key in splits:
            settings = ProposalSettings(split=split)
            found = find_objects(image, settings)
            # automatic mode itself (the proposals decomposed as proposals, not as drawn masks)
            stack = engine.decompose(image, None, find=settings) if len(found.masks) else None
            outline = image.clone()
            for k, m in enumerate(found.masks):
                edge = (torch.nn.functional.max_pool2d(m[None], 7, 1, 3) - m[None]).clamp(0, 1)
                outline = outline * (1 - edge) + torch.tensor(colours[k % 4]).view(1, 3, 1, 1) * edge
            message = found.message.split(";")[0] + (f" (offered cut {split} taken)" if split else "")
            row = [("saliency", found.saliency.expand(1, 3, -1, -1)), (message, outline)]
            layers = stack.layers[::-1] if stack else []  # front-most first, like the proposals
            row += [(f"layer {k} (IoU {alpha_soft_iou(l.alpha, reference):.2f})", on_checker(l))
                    for k, l in enumerate(layers)]
            row.append(("background", stack.background if stack else image))
            scores[key] = [round(alpha_soft_iou(l.alpha, reference), 3) for l in layers]
            rows.append(row)
    return rows, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--examples", nargs="*", default=["coffee", "chelsea", "astronaut", "rocket"])
    parser.add_argument("--dataset", help="only draw the first samples of this dataset to OUT/dataset_samples.png")
    parser.add_argument("--num", type=int, default=6, help="samples drawn with --dataset")
    parser.add_argument("--learned", action="store_true", help="only draw the learned engine to OUT/learned.png")
    parser.add_argument("--checkpoint", help="with --learned: a checkpoint folder (default: the bundled one)")
    parser.add_argument("--automatic", action="store_true", help="only draw automatic mode to OUT/automatic.png")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.automatic:
        rows, scores = automatic_rows(args.examples)
        path = Path(args.out) / "automatic.png"
        sheet(rows, width=200).save(path)
        print(f"wrote {path}; alpha IoU of each found layer with the one the photo's mask gives: {scores}")
        return
    if args.learned:
        rows, scores = learned_rows(args.examples, args.checkpoint)
        path = Path(args.out) / "learned.png"
        sheet(rows, width=200).save(path)
        print(f"wrote {path}; automatic mode vs the rough masks: {scores}")
        return
    if args.dataset:
        path = Path(args.out) / "dataset_samples.png"
        sheet(dataset_rows(args.dataset, args.num), width=200).save(path)
        print(f"wrote {path}")
        return
    rows = [tiles_for(n) for n in args.examples]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / "examples.png"
    sheet(rows).save(path)
    print(f"wrote {path}")
    path = Path(args.out) / "add_samples.png"
    sheet(add_rows(), width=200).save(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
