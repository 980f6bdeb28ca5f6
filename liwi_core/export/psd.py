"""Layered Photoshop files: an 8-bit RGB PSD (version 1) with PackBits-compressed channels.

The writer is our own; psd-tools is only used by the tests to read the files back. Layers
bottom to top are those of :func:`liwi_core.export.common.export_layers`: ``Background``,
then per object ``"<name> shadow"`` (Multiply) and ``"<name>"`` (Normal). The merged image
is ``stack.composite()``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import LiWiError
from ..imageio import atomic_write_bytes, to_uint8
from ..layers import LayerStack
from .common import ExportLayer, _single, check_target, export_layers

__all__ = ["write_psd", "packbits_rows", "PSD_MAX_SIDE"]

PSD_MAX_SIDE = 30000
_CHUNK_PIXELS = 1 << 22  # PackBits works on row blocks of about this many bytes


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
    check_target(path)
    h, w = stack.size
    if max(h, w) > PSD_MAX_SIDE:
        raise LiWiError(f"a PSD holds at most {PSD_MAX_SIDE} pixels a side but the image is {w}x{h}; "
                        "export a layers folder or an ORA file instead")
    atomic_write_bytes(path, _psd_bytes(stack))
    return path
