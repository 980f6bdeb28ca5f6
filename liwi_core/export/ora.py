"""OpenRaster files (a zip of PNGs and ``stack.xml``): write ours, read ours or one edited elsewhere.

Each object is two layers, bottom to top: ``"<name> shadow"`` with
``composite-op="svg:multiply"`` directly below ``"<name>"`` (``svg:src-over``), so a shadow
darkens only what lies below its own object. ``liwi.json`` holds the layers-folder manifest
(files behind ``data/``) so that reading back restores what the layers alone cannot say.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import LiWiError
from ..imageio import atomic_write_bytes, to_uint8
from ..layers import Layer, LayerStack
from .common import ExportLayer, _png_bytes, _single, check_target, export_layers
from .folder import check_manifest, make_manifest, manifest_meta

__all__ = ["write_ora", "read_ora", "ORA_META"]

ORA_MIMETYPE = b"image/openraster"
ORA_META = "liwi.json"
THUMBNAIL_SIDE = 256


def _stack_xml(entries: list[ExportLayer], width: int, height: int) -> bytes:
    """``stack.xml`` with the top layer first, as the OpenRaster spec orders it."""
    image = ET.Element("image", {"version": "0.0.6", "w": str(width), "h": str(height),
                                 "xres": "72", "yres": "72"})
    root = ET.SubElement(image, "stack")
    for e in reversed(entries):
        ET.SubElement(root, "layer", {
            "name": e.name, "src": "data/" + e.file, "x": str(e.left), "y": str(e.top),
            "opacity": "1.0", "visibility": "visible",
            "composite-op": "svg:multiply" if e.blend == "multiply" else "svg:src-over",
        })
    return ET.tostring(image, encoding="utf-8", xml_declaration=True)


def _layer_png(e: ExportLayer) -> bytes:
    if e.pixels.shape[0] == 0 or e.pixels.shape[1] == 0:
        return _png_bytes(np.zeros((1, 1, 4), dtype=np.uint8))   # ORA needs a PNG; 1 px clear
    return _png_bytes(e.pixels[..., :3] if e.role == "background" else e.pixels)


def _thumbnail(rgb: np.ndarray) -> bytes:
    im = Image.fromarray(rgb, "RGB")
    im.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _ora_bytes(stack: LayerStack) -> bytes:
    h, w = stack.size
    entries = list(export_layers(stack))
    merged = to_uint8(stack.composite())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), ORA_MIMETYPE, compress_type=zipfile.ZIP_STORED)
        z.writestr("stack.xml", _stack_xml(entries, w, h), compress_type=zipfile.ZIP_DEFLATED)
        for e in entries:
            z.writestr("data/" + e.file, _layer_png(e))
        if stack.hole is not None:
            z.writestr("data/hole.png", _png_bytes(to_uint8(stack.hole)))
        if stack.canvas_alpha is not None:
            z.writestr("data/alpha.png", _png_bytes(to_uint8(stack.canvas_alpha)))
        z.writestr("mergedimage.png", _png_bytes(merged))
        z.writestr("Thumbnails/thumbnail.png", _thumbnail(merged))
        doc = json.dumps(make_manifest(stack, "data/"), indent=2, ensure_ascii=False)
        z.writestr(ORA_META, doc.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def write_ora(stack: LayerStack, path) -> Path:
    """Write an OpenRaster file (zip), atomically.

    Entries: ``mimetype`` (first, stored), ``stack.xml`` (top layer first), ``data/*.png``
    (the layers of :func:`export_layers`, cropped, placed by ``x``/``y``), ``mergedimage.png``
    (``stack.composite()``), ``Thumbnails/thumbnail.png`` (at most 256 px) and ``liwi.json``
    (the ``layers.json`` manifest: prompt indices, engine, settings; other readers ignore it).
    Shadows are layers with ``composite-op="svg:multiply"``.
    """
    stack = _single(stack)
    path = Path(path)
    check_target(path)
    atomic_write_bytes(path, _ora_bytes(stack))
    return path


def _zip_png(z: zipfile.ZipFile, name: str, where: str) -> np.ndarray:
    """A PNG entry as ``[H,W,4]`` float32 straight RGBA in [0, 1]."""
    try:
        with Image.open(io.BytesIO(z.read(name))) as im:
            return np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except KeyError:
        raise LiWiError(f"'{where}' is missing '{name}'") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise LiWiError(f"cannot read '{name}' in '{where}': {exc}") from None


def _place(z: zipfile.ZipFile, el: ET.Element, width: int, height: int, where: str) -> np.ndarray:
    """A ``<layer>`` on the full canvas, ``[H,W,4]`` float32, its opacity folded into alpha."""
    try:
        x, y = int(el.get("x", "0")), int(el.get("y", "0"))
        opacity = float(el.get("opacity", "1"))
    except ValueError:
        raise LiWiError(f"'{where}': layer '{el.get('name')}' has a bad x, y or opacity") from None
    src = el.get("src")
    if not src:
        raise LiWiError(f"'{where}': layer '{el.get('name')}' has no src")
    img = _zip_png(z, src, where)
    canvas = np.zeros((height, width, 4), dtype=np.float32)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + img.shape[1], width), min(y + img.shape[0], height)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = img[y0 - y:y1 - y, x0 - x:x1 - x]
    canvas[..., 3] *= min(max(opacity, 0.0), 1.0)
    return canvas


def _tensor(arr: np.ndarray) -> torch.Tensor:
    """``[H,W,C]`` -> ``[1,C,H,W]`` float32."""
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)[None].contiguous()


def _ora_layers(z: zipfile.ZipFile, where: str) -> tuple[int, int, list[tuple[str, str, np.ndarray]]]:
    """(width, height, visible layers bottom to top as (name, "normal"|"multiply", RGBA canvas))."""
    try:
        root = ET.fromstring(z.read("stack.xml"))
    except KeyError:
        raise LiWiError(f"'{where}' is not an OpenRaster file: stack.xml is missing") from None
    except ET.ParseError as exc:
        raise LiWiError(f"'{where}': stack.xml is not valid XML: {exc}") from None
    try:
        width, height = int(root.get("w", "")), int(root.get("h", ""))
    except ValueError:
        raise LiWiError(f"'{where}': stack.xml gives no image size") from None
    ops = {"svg:src-over": "normal", "svg:multiply": "multiply"}
    out = []
    for el in reversed(list(root.iter("layer"))):
        if el.get("visibility", "visible") == "hidden":
            continue
        op = el.get("composite-op", "svg:src-over")
        if op not in ops:
            raise LiWiError(f"'{where}': layer '{el.get('name')}' uses composite-op '{op}'; "
                            "only svg:src-over and svg:multiply can be read")
        out.append((el.get("name", ""), ops[op], _place(z, el, width, height, where)))
    return width, height, out


def _ora_meta(z: zipfile.ZipFile, where: str) -> dict | None:
    """Our manifest inside the ORA, or None when absent or not ours."""
    try:
        return check_manifest(json.loads(z.read(ORA_META).decode("utf-8")), f"{where}:{ORA_META}")
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError, LiWiError):
        return None


def _pair_layers(entries: list[tuple[str, str, np.ndarray]], info: list[dict]) -> list[Layer]:
    """Objects from (name, blend, RGBA) bottom to top: Multiply layers are the shadow of the
    next Normal layer above them (several multiply together)."""
    by_name: dict[str, list[dict]] = {}
    for entry in info:
        by_name.setdefault(str(entry.get("name")), []).append(entry)
    layers: list[Layer] = []
    pending: np.ndarray | None = None
    pending_name = ""
    for name, blend, rgba in entries:
        if blend == "multiply":
            a = rgba[..., 3:4]
            shadow = 1.0 - a + a * rgba[..., :3]
            pending = shadow if pending is None else pending * shadow
            pending_name = name
            continue
        entry = (by_name.get(name) or [{}]).pop(0)
        layers.append(_make_layer(name, rgba, pending, entry))
        pending = None
    if pending is not None:          # a shadow with no object above it: keep it on an empty layer
        name = pending_name[:-len(" shadow")] if pending_name.endswith(" shadow") else pending_name
        empty = np.zeros(pending.shape[:2] + (4,), dtype=np.float32)
        layers.append(_make_layer(name, empty, pending, (by_name.get(name) or [{}]).pop(0)))
    return layers


def _make_layer(name: str, rgba: np.ndarray, shadow: np.ndarray | None, entry: dict) -> Layer:
    """A Layer from full-canvas arrays; ``entry`` is its manifest entry (or empty)."""
    if shadow is None:
        shadow = np.ones(rgba.shape[:2] + (1,), dtype=np.float32)
    else:
        grey = entry.get("shadow_channels") == 1 if "shadow_channels" in entry else \
            bool((shadow == shadow[..., :1]).all())
        shadow = shadow[..., :1] if grey else shadow
    prompt = entry.get("prompt_index")
    return Layer(rgba=_tensor(rgba), shadow=_tensor(shadow), name=name,
                 prompt_index=prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else None)


def read_ora(path) -> LayerStack:
    """Read an OpenRaster file (ours, or one edited elsewhere) back into a stack.

    The bottom Normal layer is the background; each Multiply layer is the shadow of the
    next Normal layer above it. Hidden layers are skipped. ``liwi.json``, when present,
    restores prompt indices, shadow channel counts, hole, alpha, engine and settings.
    """
    path = Path(path)
    if not path.is_file():
        raise LiWiError(f"cannot read '{path}': no such file")
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise LiWiError(f"cannot read '{path}': not an OpenRaster (zip) file ({exc})") from None
    with z:
        _, _, entries = _ora_layers(z, str(path))
        if not entries or entries[0][1] != "normal":
            raise LiWiError(f"'{path}' has no background: the bottom visible layer must be a normal layer")
        doc = _ora_meta(z, str(path)) or {}
        masks = {k: _tensor(_zip_png(z, doc[k], str(path))[..., :1]) if doc.get(k) else None
                 for k in ("hole", "alpha")}
    channels, meta = manifest_meta(doc) if doc else (3, {})
    return LayerStack(
        background=_tensor(entries[0][2][..., :3]),
        layers=_pair_layers(entries[1:], doc.get("layers", [])),
        hole=masks["hole"],
        canvas_alpha=masks["alpha"],
        channels=channels,
        meta=meta,
    )
