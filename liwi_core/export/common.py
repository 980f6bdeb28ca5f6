"""What the export formats share: the PSD/ORA layer list, target checks, PNG and JSON helpers.

:func:`export_layers` turns a stack of one image into the file layers of a PSD or ORA,
bottom to top: ``Background``, then per object ``"<name> shadow"`` (Multiply) directly
below ``"<name>"`` (Normal), each cropped to where it does something.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from ..errors import LiWiError
from ..imageio import to_uint8
from ..layers import LayerStack

__all__ = ["ExportLayer", "check_target", "export_layers"]


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


def check_target(path: Path) -> None:
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
