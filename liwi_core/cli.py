"""Command line: ``python -m liwi_core decompose | recompose | export | add | dataset | eval | train``.

Every failure caused by the input exits with status 2 and one line on stderr
(``liwi: error: ...``), whatever the command. The engine flags of ``decompose`` are made from
each engine's settings declaration (:mod:`liwi_core.options`), so they have the same
defaults, ranges and help as the node widgets.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .decompose import MASK_KINDS, ORDERS, decompose
from .engines import DEFAULT_ENGINE, create, settings_type
from .errors import LiWiError
from .imageio import load_image, load_mask, save_image
from .layers import edit_stack, parse_edit
from .options import add_arguments, check_settings, flag_of, given_options
from .proposals import ProposalSettings

__all__ = ["main", "main_as", "build_parser"]

#: engines ``decompose`` offers (``folder`` only reads other tools' results, for ``eval``)
DECOMPOSE_ENGINES = ("refined", "classical", "learned", "baseline", "qwen-layered")


def _engine_from_args(args):
    """The chosen engine with the options given for it; a flag of another engine is an error."""
    own = given_options(settings_type(args.engine), args)
    for other in DECOMPOSE_ENGINES:
        stray = {k: v for k, v in given_options(settings_type(other), args).items() if k not in own}
        if other != args.engine and stray:
            flag = flag_of(settings_type(other), next(iter(stray)))
            raise LiWiError(f"{flag} is an option of the {other} engine; add --engine {other}")
    return create(args.engine, **own)


def _check_outputs(args) -> None:
    """Refuse, before any work, outputs that cannot be written or would overwrite an input."""
    from .export.common import check_target
    from .export.folder import WRITTEN_NAMES, check_layers_dir

    if not str(args.out).strip():
        raise LiWiError("--out is empty: give the folder to write the layers into")
    out = Path(args.out)
    check_layers_dir(out)
    for name in ("psd", "ora"):
        if getattr(args, name):
            check_target(Path(getattr(args, name)))
    for given in [args.image, *(args.mask or [])]:
        path = Path(given).resolve()
        if path.parent == out.resolve() and WRITTEN_NAMES.fullmatch(path.name):
            raise LiWiError(f"'{given}' is in the output folder under a name decompose writes: "
                            "give another --out or rename the file")


def _cmd_decompose(args) -> None:
    from .export import WRITERS, save_layers_dir

    _check_outputs(args)
    engine = _engine_from_args(args)
    image = load_image(args.image)
    # each mask is checked against the image on its own (one may need resizing, another not)
    masks = [load_mask(p) for p in args.mask] if args.mask else None
    names = args.name or ([Path(p).stem for p in args.mask] if args.mask else None)

    def progress(done: int, total: int) -> None:
        print(f"  {done}/{total}", file=sys.stderr)

    find = given_options(ProposalSettings, args)
    if find and masks is not None:
        raise LiWiError(f"{flag_of(ProposalSettings, next(iter(find)))} is for automatic mode: leave out --mask")
    if args.mask_kind != "drawn" and masks is None:
        raise LiWiError(f"--mask-kind {args.mask_kind} says what the --mask files are: give them, or leave both out "
                        "for automatic mode")
    stack = decompose(image, masks, engine, order=args.order, names=names, progress=progress,
                      find=check_settings(ProposalSettings(**find)), mask_kind=args.mask_kind)
    stack.meta["source"] = str(args.image)
    if masks is None:  # automatic mode: what was found, and any cuts offered for --split
        print("; ".join(stack.meta.get("found", [])), file=sys.stderr)
    save_layers_dir(stack, args.out)
    for name in ("psd", "ora"):
        if getattr(args, name):
            WRITERS[name][0](stack, getattr(args, name))
    print(f"wrote {len(stack.layers)} layer(s) to {args.out}")


def _cmd_recompose(args) -> None:
    from .export import load_stack

    stack = load_stack(args.dir)
    edits = dict(parse_edit(e) for e in args.edit or [])
    if edits:
        stack = edit_stack(stack, edits)
    save_image(stack.to_image(), args.out)
    print(f"wrote {args.out}")


def _cmd_export(args) -> None:
    from .export import WRITERS, load_stack

    targets = {name: getattr(args, name) for name in WRITERS if getattr(args, name)}
    if not targets:
        raise LiWiError("export needs --psd FILE, --ora FILE or --png DIR")
    stack = load_stack(args.dir)
    for name, path in targets.items():
        WRITERS[name][0](stack, path)
        print(f"wrote {path}")


def _add_layer_commands(sub) -> None:
    d = sub.add_parser("decompose", help="split an image into background, object layers and shadows")
    d.add_argument("image", help="input image (PNG, JPEG, ...; grey, RGB or RGBA)")
    d.add_argument("--mask", action="append", help="mask of one object (white = object); repeat per object, "
                   "front-most first; none: automatic mode (the objects are found)")
    d.add_argument("--out", required=True, help="output folder (background.png, layer_NN.png, shadow_NN.png, "
                   "shadow.png, layers.json)")
    d.add_argument("--name", action="append", help="layer name per mask (default: the mask's file name)")
    d.add_argument("--mask-kind", choices=MASK_KINDS, default="drawn",
                   help="drawn (default): painted, a box, or a segmentation model's; a brush off the object's edges "
                        "by an even margin is moved onto them. found: automatic mode's proposals (LiWi Find "
                        "Objects), edited or not, decomposed as automatic mode decomposes its own")
    d.add_argument("--order", choices=ORDERS, default="given",
                   help="front-to-back order: as given, or by the lowest point of each mask")
    d.add_argument("--engine", choices=DECOMPOSE_ENGINES, default=DEFAULT_ENGINE,
                   help=f"default {DEFAULT_ENGINE}. refined (the classical engine corrected by a small trained "
                        "network; masks, or automatic mode), classical (the same without that network; masks, or "
                        "automatic mode), learned (a LiWiNet checkpoint; masks optional), "
                        "baseline (the naive cut-along-the-mask baseline) or qwen-layered (Qwen-Image-Layered "
                        "through diffusers from a local pipeline folder, made exact; no masks)")
    d.add_argument("--psd", help="also write a layered PSD here")
    d.add_argument("--ora", help="also write an OpenRaster file here")
    add_arguments(d.add_argument_group("automatic mode (no --mask): how objects are found"), ProposalSettings)
    added: set[str] = set()
    for name in DECOMPOSE_ENGINES:
        add_arguments(d.add_argument_group(f"{name} engine"), settings_type(name), skip=added)
    d.set_defaults(run=_cmd_decompose)

    r = sub.add_parser("recompose", help="recompose a layer folder or .ora into one image, optionally edited")
    r.add_argument("dir", help="folder written by decompose, or an OpenRaster file")
    r.add_argument("--out", required=True, help="output PNG")
    r.add_argument("--edit", action="append",
                   help="INDEX:dx=..,dy=..,scale=..,opacity=..,visible=0|1 (layer index back to front)")
    r.set_defaults(run=_cmd_recompose)

    e = sub.add_parser("export", help="convert a layer folder or .ora to PSD, OpenRaster or a layer folder")
    e.add_argument("dir", help="folder written by decompose, or an OpenRaster file")
    e.add_argument("--psd", help="layered Photoshop file to write")
    e.add_argument("--ora", help="OpenRaster file to write")
    e.add_argument("--png", help="layer folder to write (PNGs + layers.json)")
    e.set_defaults(run=_cmd_export)


def build_parser() -> argparse.ArgumentParser:
    from . import dataset, eval as evaluation, train
    from .add import run as add_run

    parser = argparse.ArgumentParser(prog="python -m liwi_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_layer_commands(sub)
    for name, module, help_ in (
        ("add", add_run, "ADD: synthesize layered training data from photos"),
        ("dataset", dataset, "dataset tools: pack sample folders into shards, count samples"),
        ("eval", evaluation, "score engines on a layered dataset or the held-out benchmark"),
        ("train", train, "train the learned decomposer (LiWiNet) on an ADD dataset"),
    ):
        module.configure(sub.add_parser(name, help=help_, description=module.__doc__.splitlines()[0]))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("always")
    warnings.formatwarning = lambda msg, *a, **k: f"warning: {msg}\n"
    try:
        args.run(args)
    except LiWiError as exc:
        print(f"liwi: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main_as(command: str, argv: list[str] | None = None) -> int:
    """The old module entry points (``python -m liwi_core.add`` ..., ``python training/train.py``):
    the same as ``python -m liwi_core COMMAND ...``."""
    return main([command, *(sys.argv[1:] if argv is None else argv)])
