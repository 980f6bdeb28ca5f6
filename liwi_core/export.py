"""Export a layer stack: a folder of PNGs with ``layers.json``, a layered PSD, an OpenRaster file.

All three formats describe the same stack (see :mod:`liwi_core.compositing`)::

    C0 = background
    Ck = over(RGBA_k, C(k-1) * shadow_k)

In PSD and ORA each object becomes two layers, bottom to top: ``"<name> shadow"`` in
Multiply mode directly below ``"<name>"`` in Normal mode, so a shadow darkens only what
lies below its own object. :func:`export_layers` yields that list once for both formats.

The PSD writer is our own (8-bit RGB, version 1, PackBits); psd-tools is only used by the
tests to read the files back. Every file is written atomically. Export takes one image:
call :meth:`LayerStack.select` on a batch first.
"""

from __future__ import annotations

import io
import json
import math
import struct
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image

from .errors import LiWiError
from .imageio import atomic_write_bytes, load_image, load_mask, save_image, to_uint8
from .layers import Layer, LayerStack

__all__ = [
    "ExportLayer",
    "export_layers",
    "save_layers_dir",
    "load_layers_dir",
    "write_psd",
    "write_ora",
    "read_ora",
    "packbits_rows",
    "MANIFEST",
    "FORMAT_VERSION",
]

MANIFEST = "layers.json"
FORMAT_NAME = "liwi-layers"
FORMAT_VERSION = 1
COMPOSITE_RULE = (
    "C0 = background; Ck = over(layer_k, C(k-1) * shadow_k) "
    "= alpha_k * rgb_k + (1 - alpha_k) * C(k-1) * shadow_k for k = 1..n back to front "
    "(straight alpha; shadow_k multiplies everything below layer k, 1 = no shadow)"
)
ORA_MIMETYPE = b"image/openraster"
ORA_META = "liwi.json"
PSD_MAX_SIDE = 30000
THUMBNAIL_SIDE = 256
_CHUNK_PIXELS = 1 << 22  # PackBits works on row blocks of about this many bytes


# --------------------------------------------------------------------------- shared helpers


def _single(stack: LayerStack) -> LayerStack:
    """The stack itself if it holds one image; a LiWiError otherwise."""
    if stack.batch != 1:
        raise LiWiError(f"export takes one image but the stack holds a batch of {stack.batch}; "
                        "export each with stack.select(i)")
    return stack


def _layer_file(i: int) -> str:
    return f"layer_{i:02d}.png"


def _shadow_file(i: int) -> str:
    return f"shadow_{i:02d}.png"


def _check_target(path: Path) -> None:
    """Fail early, with one line, when ``path`` cannot become a file."""
    if path.is_dir():
        raise LiWiError(f"cannot write '{path}': it is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise LiWiError(f"cannot write '{path}': '{parent}' is a file, not a folder")


def _png_bytes(arr: np.ndarray) -> bytes:
    """``[H,W,C]`` uint8 (C = 1, 3 or 4) -> PNG bytes."""
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(buf, format="PNG", compress_level=4)
    return buf.getvalue()


def _jsonable(value: Any) -> Any:
    """Settings and meta as plain JSON values (tensors -> lists, unknown -> str)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist()) if value.size <= 64 else f"array{tuple(value.shape)}"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return str(value)


# --------------------------------------------------------------------------- the layer list


@dataclass(frozen=True)
class ExportLayer:
    """One layer of a PSD / ORA file, cropped to where it does something.

    Attributes:
        name: layer name.
        pixels: ``[h, w, 4]`` uint8 straight RGBA of the crop (``h`` or ``w`` may be 0).
        left, top: position of the crop on the canvas.
        blend: ``"normal"`` or ``"multiply"``.
        role: ``"background"``, ``"shadow"`` or ``"object"``.
        index: object index (back to front) for shadows and objects, -1 for the background.
    """

    name: str
    pixels: np.ndarray
    left: int
    top: int
    blend: str
    role: str
    index: int

    @property
    def file(self) -> str:
        """File name of this layer's PNG (the same names as in a layers folder)."""
        if self.role == "background":
            return "background.png"
        return (_shadow_file if self.role == "shadow" else _layer_file)(self.index)


def _crop(rgba: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``[H,W,4]`` uint8 -> (bounding-box crop of alpha > 0, left, top); empty -> ``[0,0,4]``."""
    alpha = rgba[..., 3] > 0
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return rgba[:0, :0], 0, 0
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return rgba[top:bottom, left:right], int(left), int(top)


def _shadow_rgba(shadow: torch.Tensor) -> np.ndarray:
    """Shadow map ``[1,1|3,H,W]`` -> ``[H,W,4]`` uint8: RGB = map, opaque where it is not 1."""
    s8 = to_uint8(shadow)
    rgb = np.repeat(s8, 3, axis=2) if s8.shape[2] == 1 else s8
    alpha = np.where((rgb < 255).any(axis=2), 255, 0).astype(np.uint8)
    return np.concatenate([rgb, alpha[..., None]], axis=2)


def export_layers(stack: LayerStack) -> Iterator[ExportLayer]:
    """Yield the file layers bottom to top: Background, then per object its shadow, then it."""
    stack = _single(stack)
    bg = to_uint8(stack.background)
    yield ExportLayer("Background", np.concatenate([bg, np.full_like(bg[..., :1], 255)], axis=2),
                      0, 0, "normal", "background", -1)
    for i, layer in enumerate(stack.layers):
        pixels, left, top = _crop(_shadow_rgba(layer.shadow))
        yield ExportLayer(f"{layer.name} shadow", pixels, left, top, "multiply", "shadow", i)
        pixels, left, top = _crop(to_uint8(layer.rgba))
        yield ExportLayer(layer.name, pixels, left, top, "normal", "object", i)


# --------------------------------------------------------------------------- layers folder


def _manifest(stack: LayerStack, prefix: str = "", extra_meta: dict | None = None) -> dict:
    """The ``layers.json`` document; file names relative to its folder, behind ``prefix``."""
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

    Returns:
        The paths written.
    """
    stack = _single(stack)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LiWiError(f"cannot write layers to '{out_dir}': it is a file, not a folder")
    _check_target(out_dir / MANIFEST)
    images: list[tuple[str, torch.Tensor]] = [("background.png", stack.background)]
    for i, layer in enumerate(stack.layers):
        images += [(_layer_file(i), layer.rgba), (_shadow_file(i), layer.shadow)]
    images.append(("shadow.png", stack.combined_shadow()))
    if stack.hole is not None:
        images.append(("hole.png", stack.hole))
    if stack.canvas_alpha is not None:
        images.append(("alpha.png", stack.canvas_alpha))
    written = []
    for name, image in images:
        save_image(image, out_dir / name)
        written.append(out_dir / name)
    doc = json.dumps(_manifest(stack, "", extra_meta), indent=2, ensure_ascii=False)
    atomic_write_bytes(out_dir / MANIFEST, (doc + "\n").encode("utf-8"))
    written.append(out_dir / MANIFEST)
    return written


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


def _check_manifest(doc: Any, where: str) -> dict:
    """Validate a ``layers.json`` document; returns it. ``where`` names the file in errors."""
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


def _stack_from_manifest(doc: dict, read: Callable[[str, str], torch.Tensor]) -> LayerStack:
    """Build a stack from a checked manifest; ``read(name, kind)`` loads one ``[1,C,H,W]`` file."""
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
    channels, meta = _manifest_meta(doc)
    return LayerStack(
        background=_as_rgb(read(doc["background"], "image")),
        layers=layers,
        hole=read(doc["hole"], "mask") if doc.get("hole") else None,
        canvas_alpha=read(doc["alpha"], "mask") if doc.get("alpha") else None,
        channels=channels,
        meta=meta,
    )


def _manifest_meta(doc: dict) -> tuple[int, dict]:
    """(input channels, stack meta) from a checked manifest."""
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
    doc = _check_manifest(doc, str(manifest))
    width, height = doc["size"]["width"], doc["size"]["height"]

    def read(name: str, kind: str) -> torch.Tensor:
        path = directory / name
        t = load_mask(path) if kind == "mask" else load_image(path)
        if tuple(t.shape[-2:]) != (height, width):
            raise LiWiError(f"'{path}' is {t.shape[-1]}x{t.shape[-2]} pixels but '{manifest}' "
                            f"says {width}x{height}")
        return t

    return _stack_from_manifest(doc, read)


# --------------------------------------------------------------------------- PackBits


def packbits_rows(a: np.ndarray) -> tuple[np.ndarray, bytes]:
    """PackBits-compress each row of a ``[H,W]`` uint8 array (PSD RLE).

    Runs of three or more equal bytes become repeat packets, the rest literal packets,
    both at most 128 bytes long and never crossing a row. Vectorised with numpy.

    Returns:
        (``[H]`` int64 compressed byte count per row, the packed bytes of all rows).
    """
    a = np.ascontiguousarray(a, dtype=np.uint8)
    h, w = a.shape
    if h == 0 or w == 0:
        return np.zeros(h, dtype=np.int64), b""
    step = max(1, _CHUNK_PIXELS // w)
    counts, parts = [], []
    for y in range(0, h, step):
        c, data = _packbits_block(a[y:y + step])
        counts.append(c)
        parts.append(data)
    return np.concatenate(counts), b"".join(parts)


def _packbits_block(a: np.ndarray) -> tuple[np.ndarray, bytes]:
    h, w = a.shape
    flat = a.reshape(-1)
    n = flat.size
    pos = np.arange(n)
    row_start = pos % w == 0
    run_start = row_start.copy()
    run_start[1:] |= flat[1:] != flat[:-1]
    starts = np.flatnonzero(run_start)
    lengths = np.diff(np.append(starts, n))
    literal = np.repeat(lengths < 3, lengths)            # byte is part of a run shorter than 3
    literal_start = literal & (row_start | ~np.concatenate([[False], literal[:-1]]))
    region_start = np.where(literal, literal_start, run_start)
    region_at = np.maximum.accumulate(np.where(region_start, pos, 0))
    packet_start = (pos - region_at) % 128 == 0           # regions split every 128 bytes
    emitted = literal | packet_start                       # bytes copied to the output
    p = np.flatnonzero(packet_start)
    plen = np.diff(np.append(p, n))
    header = np.where(literal[p], plen - 1, np.where(plen > 1, 257 - plen, 0))
    count = packet_start.astype(np.int64) + emitted
    end = np.cumsum(count)
    base = end - count
    out = np.empty(int(end[-1]), dtype=np.uint8)
    out[base[p]] = header
    out[(base + packet_start)[emitted]] = flat[emitted]
    return count.reshape(h, w).sum(axis=1), out.tobytes()


def _channel_data(plane: np.ndarray) -> bytes:
    """One PSD layer channel: compression word plus RLE (or raw when that is smaller)."""
    h, w = plane.shape
    counts, data = packbits_rows(plane)
    if h == 0 or w == 0 or len(data) + 2 * h >= h * w:
        return struct.pack(">H", 0) + np.ascontiguousarray(plane).tobytes()
    return struct.pack(">H", 1) + counts.astype(">u2").tobytes() + data


def _merged_data(rgb: np.ndarray) -> bytes:
    """PSD image data section for ``[H,W,3]`` uint8: one compression word for all channels."""
    packed = [packbits_rows(rgb[..., c]) for c in range(3)]
    size = sum(len(d) + 2 * len(c) for c, d in packed)
    if size >= rgb.size:
        return struct.pack(">H", 0) + np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
    counts = np.concatenate([c for c, _ in packed]).astype(">u2").tobytes()
    return struct.pack(">H", 1) + counts + b"".join(d for _, d in packed)


# --------------------------------------------------------------------------- PSD


_PSD_BLEND = {"normal": b"norm", "multiply": b"mul "}


def _pad(data: bytes, multiple: int) -> bytes:
    return data + b"\0" * (-len(data) % multiple)


def _pascal_name(name: str) -> bytes:
    """Pascal string (MacRoman, at most 255 bytes) padded to a multiple of 4 bytes."""
    raw = name.encode("mac_roman", errors="replace")[:255]
    return _pad(bytes([len(raw)]) + raw, 4)


def _unicode_name_block(name: str) -> bytes:
    """Additional layer info ``luni``: the layer name as UTF-16BE."""
    utf16 = name.encode("utf-16-be")
    data = _pad(struct.pack(">I", len(utf16) // 2) + utf16, 4)
    return b"8BIMluni" + struct.pack(">I", len(data)) + data


def _psd_layer(layer: ExportLayer) -> tuple[bytes, bytes]:
    """One layer as (layer record, channel image data)."""
    h, w = layer.pixels.shape[:2]
    channels = [(-1, 3), (0, 0), (1, 1), (2, 2)]           # transparency first, as Photoshop does
    data = [_channel_data(layer.pixels[..., c]) for _, c in channels]
    top, left = (layer.top, layer.left) if h and w else (0, 0)
    record = struct.pack(">4iH", top, left, top + h, left + w, len(channels))
    record += b"".join(struct.pack(">hI", cid, len(d)) for (cid, _), d in zip(channels, data))
    record += b"8BIM" + _PSD_BLEND[layer.blend] + struct.pack(">BBBB", 255, 0, 0x08, 0)
    extra = struct.pack(">II", 0, 0) + _pascal_name(layer.name) + _unicode_name_block(layer.name)
    record += struct.pack(">I", len(extra)) + extra
    return record, b"".join(data)


def _psd_bytes(stack: LayerStack) -> bytes:
    """The whole PSD file: header, empty colour data and resources, layers, merged image."""
    h, w = stack.size
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3)
    records, pixels = [], []
    for layer in export_layers(stack):
        record, data = _psd_layer(layer)
        records.append(record)
        pixels.append(data)
    layer_info = _pad(struct.pack(">h", len(records)) + b"".join(records) + b"".join(pixels), 4)
    layer_section = struct.pack(">I", len(layer_info)) + layer_info + struct.pack(">I", 0)
    merged = _merged_data(to_uint8(stack.composite()))
    return (header + struct.pack(">I", 0) + struct.pack(">I", 0)
            + struct.pack(">I", len(layer_section)) + layer_section + merged)


def write_psd(stack: LayerStack, path) -> Path:
    """Write a layered 8-bit RGB Photoshop file (PSD version 1), atomically.

    Layers bottom to top: ``Background``; per object ``"<name> shadow"`` (Multiply, the
    shadow map, opaque where it is not 1) then ``"<name>"`` (Normal, RGBA). Layers are
    cropped to their visible pixels. The merged image is ``stack.composite()``.
    """
    stack = _single(stack)
    path = Path(path)
    _check_target(path)
    h, w = stack.size
    if max(h, w) > PSD_MAX_SIDE:
        raise LiWiError(f"a PSD holds at most {PSD_MAX_SIDE} pixels a side but the image is {w}x{h}; "
                        "export a layers folder or an ORA file instead")
    atomic_write_bytes(path, _psd_bytes(stack))
    return path


# --------------------------------------------------------------------------- OpenRaster


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
        doc = json.dumps(_manifest(stack, "data/"), indent=2, ensure_ascii=False)
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
    _check_target(path)
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
        return _check_manifest(json.loads(z.read(ORA_META).decode("utf-8")), f"{where}:{ORA_META}")
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
    channels, meta = _manifest_meta(doc) if doc else (3, {})
    return LayerStack(
        background=_tensor(entries[0][2][..., :3]),
        layers=_pair_layers(entries[1:], doc.get("layers", [])),
        hole=masks["hole"],
        canvas_alpha=masks["alpha"],
        channels=channels,
        meta=meta,
    )
