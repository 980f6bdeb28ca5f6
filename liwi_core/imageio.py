"""Image reading and writing, written once for the CLI, the nodes, export and datasets.

Images come back as ``[1, C, H, W]`` float32 tensors in [0, 1] with C = 1 (grey),
3 (RGB) or 4 (RGBA). Files are written atomically: a temporary file in the same
folder is renamed over the target, so a killed job never leaves half a PNG.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import LiWiError

__all__ = ["load_image", "load_mask", "save_image", "shown_size", "to_uint8", "pil_from_tensor", "atomic_write_bytes"]

Image.MAX_IMAGE_PIXELS = 200_000_000  # large photos are legitimate; decompression bombs beyond this are not


def _open(path) -> Image.Image:
    """Open a path or a binary file object (a tar member, bytes in memory)."""
    if not hasattr(path, "read"):
        path = Path(path)
        if path.is_dir():
            raise LiWiError(f"cannot read image '{path}': it is a folder")
        if not path.is_file():
            raise LiWiError(f"cannot read image '{path}': no such file")
    im = None
    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if im is not None:
            im.close()  # else the half-read file is reported unclosed after the one-line error
        where = (getattr(path, "name", None) or "in memory") if hasattr(path, "read") else path
        raise LiWiError(f"cannot read image '{where}': {exc}") from None
    return im


def _to_array(im: Image.Image) -> np.ndarray:
    """PIL image (any mode, 8 or 16 bit) -> float32 ``[H, W, C]`` in [0, 1], C in {1, 3, 4}.

    A 16-bit file is scaled by 65535 whatever its values (a dark 16-bit photo is dark, not 8-bit);
    Pillow's 32-bit integer mode says nothing of the depth the file had, so there values above
    255 mean 16 bits and the rest 8."""
    if im.mode in ("I;16", "I;16B", "I;16L"):
        return (np.asarray(im, dtype=np.float32) / 65535.0).clip(0, 1)[..., None]
    if im.mode == "I":
        arr = np.asarray(im, dtype=np.float32)
        return (arr / (65535.0 if arr.max(initial=0) > 255 else 255.0)).clip(0, 1)[..., None]
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32).clip(0, 1)[..., None]
    if im.mode in ("L", "1"):
        return (np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[..., None]
    if im.mode in ("LA", "RGBA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


#: EXIF orientations that show the stored picture turned a quarter (width and height swapped)
_QUARTER_TURNS = (5, 6, 7, 8)


def shown_size(path) -> tuple[int, int]:
    """``(H, W)`` of an image file as :func:`load_image` gives it (EXIF orientation applied), read
    from its header only."""
    with _open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112) in _QUARTER_TURNS:
            w, h = h, w
    return h, w


def load_image(path) -> torch.Tensor:
    """Read an image file as ``[1, C, H, W]`` float32 in [0, 1]; the first frame of animations.

    Turned as its EXIF orientation says (a phone photo stored sideways comes back as it is
    shown, so a mask drawn on what the user sees fits it)."""
    with _open(path) as im:
        try:
            upright = ImageOps.exif_transpose(im)
        except (OSError, SyntaxError, ValueError, TypeError):
            upright = im  # a broken EXIF block is not a reason to refuse the pixels
        arr = _to_array(upright)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]


def load_mask(path) -> torch.Tensor:
    """Read a mask as ``[1, 1, H, W]``: 1 marks the object.

    Grey files are used as they are. For files with an alpha channel the alpha is the
    mask (a cut-out PNG works as a mask). A mask saved as label values 0 and 1 (as many
    segmentation tools write it; it looks black) is read as 0 and 1, with a warning.
    """
    img = load_image(path)
    mask = img[:, 3:4] if img.shape[1] == 4 else img.mean(dim=1, keepdim=True)
    top = float(mask.max()) if mask.numel() else 0.0
    if 0.0 < top <= 1.0 / 255.0 + 1e-6:
        warnings.warn(f"LiWi: mask '{path}' holds only the values 0 and 1 of 255: read as a 0/1 label mask")
        mask = (mask > 0).float()
    return mask


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """``[C,H,W]`` or ``[1,C,H,W]`` float in [0,1] -> ``[H,W,C]`` uint8 (NaN -> 0)."""
    if t.dim() not in (3, 4):
        raise LiWiError(f"an image to save must be [C,H,W] or [1,C,H,W], got shape {tuple(t.shape)}")
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise LiWiError(f"expected one image, got a batch of {t.shape[0]}")
        t = t[0]
    arr = torch.nan_to_num(t.detach().float().cpu(), nan=0.0).clamp(0, 1).permute(1, 2, 0).numpy()
    return (arr * 255.0 + 0.5).astype(np.uint8)


def pil_from_tensor(t: torch.Tensor) -> Image.Image:
    arr = to_uint8(t)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(arr.shape[2])
    if mode is None:
        raise LiWiError(f"cannot save an image with {arr.shape[2]} channels")
    return Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise LiWiError(f"cannot write '{path}': {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise LiWiError(f"cannot write '{path}': {exc.strerror or exc}") from None


def save_image(t: torch.Tensor, path) -> None:
    """Save ``[C,H,W]`` / ``[1,C,H,W]`` (C = 1, 3 or 4) as an 8-bit PNG, atomically."""
    buf = io.BytesIO()
    pil_from_tensor(t).save(buf, format="PNG", compress_level=4)
    atomic_write_bytes(path, buf.getvalue())
