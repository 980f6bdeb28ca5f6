"""The layer panel's data: a stack's layers as PNG files in ComfyUI's temp folder, listed in
the ``ui`` part of a node's output (key :data:`UI_KEY`).

The frontend extension in ``web/liwi_layers.js`` reads that list (``onExecuted``) and fetches
the files through ComfyUI's own ``/view`` route (``type=temp``), so nothing outside ComfyUI's
folders is served and no route of our own is needed. The panel is an addition: writing its
files never changes a node's outputs, and a failure to write them is logged, not raised.

Files (8-bit PNG, lossless): the background (RGB); per object its straight-alpha RGBA and its
shadow map (grey or RGB, white = no shadow), each cut to the rectangle where it is not empty
(alpha > 0, shadow < 1) and placed on the canvas by ``x, y``. Only the first image of a batch
is shown.
"""

from __future__ import annotations

import io
import logging
import os
import uuid

import numpy as np
from PIL import Image

import folder_paths

from ..liwi_core.imageio import to_uint8

#: key of the ``ui`` dict the frontend extension looks for
UI_KEY = "liwi_layers"
#: subfolder of ComfyUI's temp folder holding the panel's files
SUBFOLDER = "liwi_panel"
#: version of the panel data (the extension checks it)
VERSION = 1

log = logging.getLogger(__name__)


def _crop_box(empty: np.ndarray) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the pixels that are not ``empty`` (``[H,W]`` bool); a 1x1 box at 0,0 when all are."""
    ys, xs = np.nonzero(~empty)
    if len(ys) == 0:
        return 0, 0, 1, 1
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _write_png(arr: np.ndarray, folder: str, filename: str) -> dict:
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(buf, format="PNG", compress_level=1)
    with open(os.path.join(folder, filename), "wb") as fh:
        fh.write(buf.getvalue())
    return {"filename": filename, "subfolder": SUBFOLDER, "type": "temp"}


def write_panel(stack, indices: list[int] | None = None, source: str = "decompose",
                offsets: dict[int, tuple[int, int]] | None = None) -> dict:
    """Write the first image of ``stack`` for the panel and return its description.

    ``layers`` lists the background, then per object back to front its shadow and the object:
    the order in which the composite rule applies them.

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
    indices = list(range(len(stack.layers))) if indices is None else list(indices)
    bg = to_uint8(stack.background)
    layers = [{"name": "background", "kind": "background", "index": None, "owner": None,
               "x": 0, "y": 0, "w": w, "h": h, **_write_png(bg, folder, f"{token}_background.png")}]
    for k, layer in enumerate(stack.layers):
        idx = indices[k]
        # the composite order: a layer's shadow darkens what is below it, then the object goes over
        shadow = to_uint8(layer.shadow)
        x, y, cw, ch = _crop_box((shadow == 255).all(axis=2))
        layers.append({"name": f"{layer.name} shadow", "kind": "shadow", "index": idx, "owner": idx,
                       "x": x, "y": y, "w": cw, "h": ch,
                       **_write_png(shadow[y:y + ch, x:x + cw], folder, f"{token}_shadow_{idx:02}.png")})
        rgba = to_uint8(layer.rgba)
        x, y, cw, ch = _crop_box(rgba[..., 3] == 0)
        layers.append({"name": layer.name, "kind": "object", "index": idx, "owner": None,
                       "x": x, "y": y, "w": cw, "h": ch,
                       **_write_png(rgba[y:y + ch, x:x + cw], folder, f"{token}_object_{idx:02}.png")})
    return {"version": VERSION, "source": source, "token": token, "width": w, "height": h,
            "batch": int(batch), "layers": layers,
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
