"""The layers folder: PNGs plus a ``layers.json`` manifest (also the dataset's sample format).

The manifest (format ``liwi-layers``, version 1) names the files relative to its folder and
records the composite rule, prompt indices, shadow channel counts, engine and settings. The
ORA writer stores the same document as ``liwi.json`` with its files behind ``data/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import torch

from ..errors import LiWiError
from ..imageio import atomic_write_bytes, load_image, load_mask, save_image
from ..layers import Layer, LayerStack
from .common import _jsonable, _layer_file, _shadow_file, _single, check_target

__all__ = [
    "save_layers_dir",
    "load_layers_dir",
    "make_manifest",
    "check_manifest",
    "stack_from_manifest",
    "manifest_meta",
    "MANIFEST",
    "FORMAT_NAME",
    "FORMAT_VERSION",
]

MANIFEST = "layers.json"
#: the names :func:`save_layers_dir` may write into its folder
WRITTEN_NAMES = re.compile(r"(background|shadow|hole|alpha)\.png|(layer|shadow)_\d+\.png|layers\.json")
FORMAT_NAME = "liwi-layers"
FORMAT_VERSION = 1
COMPOSITE_RULE = (
    "C0 = background; Ck = over(layer_k, C(k-1) * shadow_k) "
    "= alpha_k * rgb_k + (1 - alpha_k) * C(k-1) * shadow_k for k = 1..n back to front "
    "(straight alpha; shadow_k multiplies everything below layer k, 1 = no shadow)"
)


def make_manifest(stack: LayerStack, prefix: str = "", extra_meta: dict | None = None) -> dict:
    """The ``layers.json`` document of a stack of one image.

    Args:
        stack: the stack (batch 1).
        prefix: put before every file name (``"data/"`` inside an ORA, ``""`` in a folder).
        extra_meta: merged into the document's ``meta`` (over the stack's own meta).

    Returns:
        A plain JSON-able dict; file names are relative to the manifest's folder.
    """
    h, w = stack.size
    meta = dict(stack.meta)
    extra = {k: v for k, v in meta.items() if k not in ("engine", "settings")}
    extra.update(extra_meta or {})
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "size": {"width": w, "height": h},
        "channels": int(stack.channels),
        "order": "back_to_front",
        "composite": COMPOSITE_RULE,
        "background": prefix + "background.png",
        "shadow": prefix + "shadow.png",
        "hole": prefix + "hole.png" if stack.hole is not None else None,
        "alpha": prefix + "alpha.png" if stack.canvas_alpha is not None else None,
        "layers": [
            {
                "file": prefix + _layer_file(i),
                "shadow_file": prefix + _shadow_file(i),
                "name": layer.name,
                "prompt_index": layer.prompt_index,
                "shadow_channels": int(layer.shadow.shape[1]),
                "blend": "normal",
                "shadow_blend": "multiply",
            }
            for i, layer in enumerate(stack.layers)
        ],
        "engine": _jsonable(meta.get("engine")),
        "settings": _jsonable(meta.get("settings", {})),
        "meta": _jsonable(extra),
    }


def save_layers_dir(stack: LayerStack, out_dir, extra_meta: dict | None = None) -> list[Path]:
    """Write a stack of one image as PNGs plus ``layers.json`` into ``out_dir``.

    Files: ``background.png`` (RGB), ``layer_NN.png`` (RGBA, full canvas, NN back to front),
    ``shadow_NN.png`` (grey or RGB as the map), ``shadow.png`` (all shadows multiplied, RGB),
    ``hole.png`` and ``alpha.png`` when the stack has them, and ``layers.json`` last.

    Written into a folder that already holds layers (a ``layers.json`` of this format), the
    files that manifest named and this stack does not (the layers of an earlier run with more
    objects) are removed once the new manifest is in place, so the folder holds one stack;
    files it did not name are left alone.

    Returns:
        The paths written.
    """
    stack = _single(stack)
    out_dir = Path(out_dir)
    check_layers_dir(out_dir)
    images: list[tuple[str, torch.Tensor]] = [("background.png", stack.background)]
    for i, layer in enumerate(stack.layers):
        images += [(_layer_file(i), layer.rgba), (_shadow_file(i), layer.shadow)]
    images.append(("shadow.png", stack.combined_shadow()))
    if stack.hole is not None:
        images.append(("hole.png", stack.hole))
    if stack.canvas_alpha is not None:
        images.append(("alpha.png", stack.canvas_alpha))
    earlier = _files_named(out_dir / MANIFEST)
    written = []
    for name, image in images:
        save_image(image, out_dir / name)
        written.append(out_dir / name)
    doc = json.dumps(make_manifest(stack, "", extra_meta), indent=2, ensure_ascii=False)
    atomic_write_bytes(out_dir / MANIFEST, (doc + "\n").encode("utf-8"))
    written.append(out_dir / MANIFEST)
    for name in earlier - {name for name, _ in images}:
        (out_dir / name).unlink(missing_ok=True)
    return written


def check_layers_dir(out_dir: Path) -> None:
    """Fail with one line when ``out_dir`` cannot become a layers folder (before any work)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise LiWiError(f"cannot write layers to '{out_dir}': it is a file, not a folder")
    check_target(out_dir / MANIFEST)


def _files_named(manifest: Path) -> set[str]:
    """The plain file names (no folders) a layers manifest of this format names; none when
    ``manifest`` is missing or is not one."""
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        return set()
    names = [doc.get(key) for key in ("background", "shadow", "hole", "alpha")]
    for layer in doc.get("layers") or []:
        if isinstance(layer, dict):
            names += [layer.get("file"), layer.get("shadow_file")]
    return {n for n in names if isinstance(n, str) and n and PurePosixPath(n).name == n}


def _as_rgb(t: torch.Tensor) -> torch.Tensor:
    """``[1,C,H,W]`` -> ``[1,3,H,W]`` (grey repeated, alpha dropped)."""
    return t.repeat(1, 3, 1, 1) if t.shape[1] == 1 else t[:, :3]


def _as_rgba(t: torch.Tensor) -> torch.Tensor:
    """``[1,C,H,W]`` -> ``[1,4,H,W]`` (opaque alpha added when missing)."""
    if t.shape[1] == 4:
        return t
    return torch.cat([_as_rgb(t), torch.ones_like(t[:, :1])], dim=1)


def _as_shadow(t: torch.Tensor) -> torch.Tensor:
    """``[1,C,H,W]`` -> ``[1,1|3,H,W]``; an RGBA map counts as multiply-over-white."""
    if t.shape[1] == 4:
        a = t[:, 3:4]
        return 1.0 - a + a * t[:, :3]
    return t


def check_manifest(doc: Any, where: str) -> dict:
    """Validate a parsed ``layers.json`` document and return it unchanged.

    Checks the format name and version, the image size, that ``background`` and every
    layer's ``file`` / ``shadow_file`` are strings, and that every file name (with ``hole``
    and ``alpha``) is a plain relative name inside the folder (no absolute path, ``..``
    or backslash).

    Args:
        doc: the parsed JSON value.
        where: names the file in error messages.

    Raises:
        LiWiError: one line saying what is wrong.
    """
    def bad(why: str) -> LiWiError:
        return LiWiError(f"'{where}' is not a valid LiWi layers file: {why}")

    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise bad(f"'format' must be '{FORMAT_NAME}'")
    if doc.get("version") != FORMAT_VERSION:
        raise bad(f"version {doc.get('version')!r} is not supported (this LiWi reads {FORMAT_VERSION})")
    size = doc.get("size")
    if not (isinstance(size, dict) and all(isinstance(size.get(k), int) and size[k] > 0
                                           for k in ("width", "height"))):
        raise bad("'size' must hold positive integers 'width' and 'height'")
    if not isinstance(doc.get("background"), str):
        raise bad("'background' must name a file")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not all(
            isinstance(l, dict) and isinstance(l.get("file"), str) and isinstance(l.get("shadow_file"), str)
            for l in layers):
        raise bad("'layers' must be a list of entries with 'file' and 'shadow_file'")
    files = [doc["background"]] + [doc[k] for k in ("hole", "alpha") if doc.get(k) is not None]
    files += [f for l in layers for f in (l["file"], l["shadow_file"])]
    for f in files:
        p = PurePosixPath(f) if isinstance(f, str) else None
        if p is None or p.is_absolute() or ".." in p.parts or "\\" in f or not f:
            raise bad(f"file name {f!r} must be a plain name inside the folder")
    return doc


def stack_from_manifest(doc: dict, read: Callable[[str, str], torch.Tensor]) -> LayerStack:
    """Build a stack (batch 1) from a manifest that :func:`check_manifest` accepted.

    Args:
        doc: the checked manifest.
        read: ``read(name, kind)`` loads the file ``name`` named in the manifest as a
            ``[1,C,H,W]`` float tensor; ``kind`` is ``"image"`` or ``"mask"``. The caller
            decides where files come from (a folder, a tar shard) and checks their size.

    Returns:
        The stack: grey layers become RGB(A), RGBA shadow files multiply over white,
        missing names become ``"object <i>"``.
    """
    layers = []
    for i, entry in enumerate(doc["layers"]):
        name = entry.get("name")
        prompt = entry.get("prompt_index")
        layers.append(Layer(
            rgba=_as_rgba(read(entry["file"], "image")),
            shadow=_as_shadow(read(entry["shadow_file"], "image")),
            name=str(name) if name is not None else f"object {i}",
            prompt_index=prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else None,
        ))
    channels, meta = manifest_meta(doc)
    return LayerStack(
        background=_as_rgb(read(doc["background"], "image")),
        layers=layers,
        hole=read(doc["hole"], "mask") if doc.get("hole") else None,
        canvas_alpha=read(doc["alpha"], "mask") if doc.get("alpha") else None,
        channels=channels,
        meta=meta,
    )


def manifest_meta(doc: dict) -> tuple[int, dict]:
    """(input channels, stack meta) from a checked manifest.

    The stack meta is the document's ``meta`` plus ``engine`` (when set) and ``settings``;
    channels fall back to 3 when missing or not 1, 3 or 4.
    """
    meta = dict(doc["meta"]) if isinstance(doc.get("meta"), dict) else {}
    if doc.get("engine") is not None:
        meta["engine"] = doc["engine"]
    meta["settings"] = doc.get("settings") or {}
    channels = doc.get("channels")
    return (channels if channels in (1, 3, 4) else 3), meta


def load_layers_dir(directory) -> LayerStack:
    """Read a folder written by :func:`save_layers_dir` back into a stack (batch 1, float32)."""
    directory = Path(directory)
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise LiWiError(f"cannot read layers from '{directory}': '{manifest}' is missing")
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LiWiError(f"cannot read '{manifest}': {exc}") from None
    doc = check_manifest(doc, str(manifest))
    width, height = doc["size"]["width"], doc["size"]["height"]

    def read(name: str, kind: str) -> torch.Tensor:
        path = directory / name
        t = load_mask(path) if kind == "mask" else load_image(path)
        if tuple(t.shape[-2:]) != (height, width):
            raise LiWiError(f"'{path}' is {t.shape[-1]}x{t.shape[-2]} pixels but '{manifest}' "
                            f"says {width}x{height}")
        return t

    return stack_from_manifest(doc, read)
