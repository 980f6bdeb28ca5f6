"""Command line: ``python -m liwi_core decompose | recompose | export``.

Every failure caused by the input exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

from .decompose import ORDERS, decompose
from .engines.classical import ClassicalSettings
from .errors import LiWiError
from .imageio import load_image, load_mask, save_image
from .layers import edit_stack, parse_edit

__all__ = ["main"]


def _cmd_decompose(args) -> None:
    from .export import save_layers_dir, write_ora, write_psd

    image = load_image(args.image)
    masks = torch.cat([load_mask(p) for p in args.mask]) if args.mask else None
    settings = ClassicalSettings(refine=not args.no_refine, edge_radius=args.edge_radius,
                                 shadow_reach=args.shadow_reach, shadow_threshold=args.shadow_threshold,
                                 shadow_channels=args.shadow_channels)
    names = args.name or ([Path(p).stem for p in args.mask] if args.mask else None)

    def progress(done: int, total: int) -> None:
        print(f"  object {done}/{total}", file=sys.stderr)

    model = None
    if args.engine == "learned":
        from .engines.learned import load_model
        model = load_model(args.checkpoint)  # None: the bundled default
    stack = decompose(image, masks, settings, order=args.order, names=names, progress=progress, model=model,
                      max_objects=args.max_objects)
    stack.meta["source"] = str(args.image)
    save_layers_dir(stack, args.out)
    if args.psd:
        write_psd(stack, args.psd)
    if args.ora:
        write_ora(stack, args.ora)
    print(f"wrote {len(stack.layers)} layer(s) to {args.out}")


def _cmd_recompose(args) -> None:
    from .export import load_layers_dir

    stack = load_layers_dir(args.dir)
    edits = dict(parse_edit(e) for e in args.edit or [])
    if edits:
        stack = edit_stack(stack, edits)
    save_image(stack.to_image(), args.out)
    print(f"wrote {args.out}")


def _cmd_export(args) -> None:
    from .export import load_layers_dir, write_ora, write_psd

    if not args.psd and not args.ora:
        raise LiWiError("export needs --psd FILE or --ora FILE")
    stack = load_layers_dir(args.dir)
    if args.psd:
        write_psd(stack, args.psd)
        print(f"wrote {args.psd}")
    if args.ora:
        write_ora(stack, args.ora)
        print(f"wrote {args.ora}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m liwi_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("decompose", help="split an image into background, object layers and shadows")
    d.add_argument("image", help="input image (PNG, JPEG, ...; grey, RGB or RGBA)")
    d.add_argument("--mask", action="append", help="mask of one object (white = object); repeat per object, "
                   "front-most first")
    d.add_argument("--out", required=True, help="output folder (background.png, layer_NN.png, shadow_NN.png, "
                   "shadow.png, layers.json)")
    d.add_argument("--name", action="append", help="layer name per mask (default: the mask's file name)")
    d.add_argument("--order", choices=ORDERS, default="given",
                   help="front-to-back order: as given, or by the lowest point of each mask")
    d.add_argument("--no-refine", action="store_true", help="use the masks as they are (no GrabCut)")
    d.add_argument("--edge-radius", type=int, default=0, help="soft-edge band in pixels (0 = automatic)")
    d.add_argument("--shadow-reach", type=float, default=0.5,
                   help="how far shadows are looked for, as a fraction of object size (0 = off)")
    d.add_argument("--shadow-threshold", type=float, default=0.06, help="weakest darkening counted as shadow")
    d.add_argument("--shadow-channels", type=int, choices=(1, 3), default=1, help="grey or coloured shadows")
    d.add_argument("--engine", choices=("classical", "learned"), default="classical",
                   help="classical (no weights, masks required) or learned (a LiWiNet checkpoint; masks optional)")
    d.add_argument("--checkpoint", help="learned engine: checkpoint folder (config.json + .safetensors); "
                                        "default: the bundled liwi-default")
    d.add_argument("--max-objects", type=int, default=4, help="automatic mode: at most this many layers")
    d.add_argument("--psd", help="also write a layered PSD here")
    d.add_argument("--ora", help="also write an OpenRaster file here")
    d.set_defaults(func=_cmd_decompose)

    r = sub.add_parser("recompose", help="recompose a layer folder into one image, optionally edited")
    r.add_argument("dir", help="folder written by decompose")
    r.add_argument("--out", required=True, help="output PNG")
    r.add_argument("--edit", action="append",
                   help="INDEX:dx=..,dy=..,scale=..,opacity=..,visible=0|1 (layer index back to front)")
    r.set_defaults(func=_cmd_recompose)

    e = sub.add_parser("export", help="convert a layer folder to PSD or OpenRaster")
    e.add_argument("dir", help="folder written by decompose")
    e.add_argument("--psd", help="layered Photoshop file to write")
    e.add_argument("--ora", help="OpenRaster file to write")
    e.set_defaults(func=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("always")
    warnings.formatwarning = lambda msg, *a, **k: f"warning: {msg}\n"
    try:
        args.func(args)
    except LiWiError as exc:
        print(f"liwi: error: {exc}", file=sys.stderr)
        return 2
    return 0
