"""Export a layer stack: a folder of PNGs with ``layers.json``, a layered PSD, an OpenRaster file.

All three formats describe the same stack (see :mod:`liwi_core.compositing`)::

    C0 = background
    Ck = over(RGBA_k, C(k-1) * shadow_k)

In PSD and ORA each object becomes two layers, bottom to top: ``"<name> shadow"`` in
Multiply mode directly below ``"<name>"`` in Normal mode, so a shadow darkens only what
lies below its own object. :func:`export_layers` yields that list once for both formats.

Modules: :mod:`.common` (the shared layer list and helpers), :mod:`.folder` (the layers
folder and its manifest), :mod:`.psd` (PSD with PackBits), :mod:`.ora` (OpenRaster, both
ways). Every file is written atomically. Export takes one image: call
:meth:`LayerStack.select` on a batch first.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LiWiError
from ..layers import LayerStack
from .common import ExportLayer, export_layers
from .folder import (
    FORMAT_VERSION,
    MANIFEST,
    check_manifest,
    load_layers_dir,
    make_manifest,
    manifest_meta,
    save_layers_dir,
    stack_from_manifest,
)
from .ora import read_ora, write_ora
from .psd import packbits_rows, write_psd

__all__ = [
    "ExportLayer",
    "export_layers",
    "save_layers_dir",
    "load_layers_dir",
    "load_stack",
    "write_psd",
    "write_ora",
    "read_ora",
    "packbits_rows",
    "check_manifest",
    "stack_from_manifest",
    "make_manifest",
    "manifest_meta",
    "MANIFEST",
    "FORMAT_VERSION",
    "WRITERS",
    "save_formats",
]

#: format name -> (writer(stack, path), what the written path adds to a base name)
WRITERS = {"psd": (write_psd, ".psd"), "ora": (write_ora, ".ora"), "png": (save_layers_dir, "")}


def save_formats(stack: LayerStack, base, formats) -> list[Path]:
    """Write ``stack`` once per format in ``formats`` (names of :data:`WRITERS`) beside ``base``:
    ``base.psd``, ``base.ora``, and the layers folder ``base/``. Returns the paths written."""
    unknown = [f for f in formats if f not in WRITERS]
    if unknown:
        raise LiWiError(f"unknown format {', '.join(unknown)}: use {', '.join(WRITERS)}")
    paths = []
    for name in formats:
        write, suffix = WRITERS[name]
        paths.append(Path(f"{base}{suffix}"))
        write(stack, paths[-1])
    return paths


def load_stack(path) -> LayerStack:
    """Read a saved stack: a layers folder (with ``layers.json``) or an OpenRaster ``.ora`` file.

    Folders go through :func:`load_layers_dir`, ``.ora`` files through :func:`read_ora`.

    Raises:
        LiWiError: one line when ``path`` is missing, is neither of the two, or cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        return load_layers_dir(path)
    if path.suffix.lower() == ".ora":
        return read_ora(path)
    if not path.exists():
        raise LiWiError(f"cannot read layers from '{path}': no such file or folder")
    raise LiWiError(f"cannot read layers from '{path}': give a layers folder (with {MANIFEST}) "
                    "or an OpenRaster .ora file")
