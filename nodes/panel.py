"""The layer panel's data: a stack's layers as PNG files in ComfyUI's temp folder, listed in
the ``ui`` part of a node's output (key :data:`UI_KEY`).

The frontend extension in ``web/liwi_layers.js`` reads that list (``onExecuted``) and fetches
the files through ComfyUI's own ``/view`` route (``type=temp``), so nothing outside ComfyUI's
folders is served and no route of our own is needed. The panel is an addition: writing its
files never changes a node's outputs, and a failure to write them is logged, not raised.

Files (8-bit PNG, lossless): the background (RGB); per object its straight-alpha RGBA and its
shadow map (grey or RGB, white = no shadow), each cut to the rectangle where it is not empty
(alpha > 0, shadow < 1) and placed on the canvas by ``x, y``. Canvases larger than
:data:`MAX_SIZE` are written smaller (the panel composes at most 1024 px anyway). Only the first
image of a batch is shown.
"""

from __future__ import annotations

import io
import logging
import os
import uuid

import torch
from PIL import Image

import folder_paths

from ..liwi_core.imageio import pil_from_tensor

#: key of the ``ui`` dict the frontend extension looks for
UI_KEY = "liwi_layers"
#: subfolder of ComfyUI's temp folder holding the panel's files
SUBFOLDER = "liwi_panel"
#: version of the panel data (the extension checks it)
VERSION = 1

log = logging.getLogger(__name__)


#: files are written at most this many pixels on the canvas's long side (the panel composes at
#: most 1024); ``LIWI_LAYER_PANEL_MAX_SIZE`` changes it
MAX_SIZE = 2048

#: 8-bit PNG values: below this an alpha is 0, above ``1 - HALF_LEVEL`` a shadow is 1
HALF_LEVEL = 0.5 / 255


def _crop_box(keep: torch.Tensor) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the ``True`` pixels of ``keep`` ``[H,W]``; a 1x1 box at 0,0 when there are none."""
    rows = torch.nonzero(keep.any(dim=1)).flatten()
    cols = torch.nonzero(keep.any(dim=0)).flatten()
    if len(rows) == 0:
        return 0, 0, 1, 1
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def _write_png(t: torch.Tensor, box: tuple[int, int, int, int], scale: float, folder: str, filename: str) -> dict:
    """The ``box`` of ``t`` ``[1,C,H,W]`` as an 8-bit PNG, resized by ``scale`` (< 1 on large canvases;
    Pillow resizes RGBA with premultiplied alpha)."""
    x, y, w, h = box
    im = pil_from_tensor(t[..., y:y + h, x:x + w])
    if scale < 1:
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    with open(os.path.join(folder, filename), "wb") as fh:
        fh.write(buf.getvalue())
    return {"filename": filename, "subfolder": SUBFOLDER, "type": "temp"}


def write_panel(stack, indices: list[int] | None = None, source: str = "decompose",
                offsets: dict[int, tuple[int, int]] | None = None) -> dict:
    """Write the first image of ``stack`` for the panel and return its description.

    ``layers`` lists the background, then per object back to front its shadow and the object:
    the order in which the composite rule applies them. ``x, y, w, h`` place a layer's file on the
    canvas, in canvas pixels; the file has that size, or ``scale`` times it when the canvas is
    larger than :data:`MAX_SIZE`.

    ``indices[k]`` is the layer index (in the edit widgets' numbering) of ``stack.layers[k]``:
    Recompose drops hidden layers, so its output's k-th layer may be the input's (k+1)-th.
    ``offsets`` (layer index -> whole pixels ``(dx, dy)``) are moves the panel is to apply to an
    object and its shadow (listed as ``[index, dx, dy]``).
    """
    folder = os.path.join(folder_paths.get_temp_directory(), SUBFOLDER)
    os.makedirs(folder, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    batch = stack.batch
    stack = stack.select(0) if batch > 1 else stack
    h, w = stack.size
    scale = min(1.0, int(os.environ.get("LIWI_LAYER_PANEL_MAX_SIZE", MAX_SIZE)) / max(h, w))
    indices = list(range(len(stack.layers))) if indices is None else list(indices)
    box = (0, 0, w, h)
    layers = [{"name": "background", "kind": "background", "index": None, "owner": None,
               "x": 0, "y": 0, "w": w, "h": h,
               **_write_png(stack.background, box, scale, folder, f"{token}_background.png")}]
    for k, layer in enumerate(stack.layers):
        idx = indices[k]
        # the composite order: a layer's shadow darkens what is below it, then the object goes over
        box = _crop_box((layer.shadow[0] < 1 - HALF_LEVEL).any(dim=0))
        layers.append({"name": f"{layer.name} shadow", "kind": "shadow", "index": idx, "owner": idx,
                       "x": box[0], "y": box[1], "w": box[2], "h": box[3],
                       **_write_png(layer.shadow, box, scale, folder, f"{token}_shadow_{idx:02}.png")})
        box = _crop_box(layer.rgba[0, 3] >= HALF_LEVEL)
        layers.append({"name": layer.name, "kind": "object", "index": idx, "owner": None,
                       "x": box[0], "y": box[1], "w": box[2], "h": box[3],
                       **_write_png(layer.rgba, box, scale, folder, f"{token}_object_{idx:02}.png")})
    return {"version": VERSION, "source": source, "token": token, "width": w, "height": h,
            "batch": int(batch), "scale": scale, "layers": layers,
            "offsets": [[int(i), int(dx), int(dy)] for i, (dx, dy) in sorted((offsets or {}).items()) if i in indices]}


def panel_ui(stack, indices: list[int] | None = None, source: str = "decompose",
             offsets: dict[int, tuple[int, int]] | None = None) -> dict:
    """``{UI_KEY: [panel]}`` for a node's ``ui``; ``{}`` (and a warning) if the files cannot be written.

    Set ``LIWI_LAYER_PANEL=0`` to write nothing.
    """
    if os.environ.get("LIWI_LAYER_PANEL", "1") == "0":
        return {}
    try:
        return {UI_KEY: [write_panel(stack, indices, source, offsets)]}
    except Exception as exc:  # the panel is an addition: never fail the node for it
        log.warning("LiWi layer panel: could not write the preview files: %s", exc)
        return {}
