"""Confining a user-given relative path to a root folder.

Anything that writes where a *remote* user says (a ComfyUI prompt can be queued by
anyone who reaches the server) goes through :func:`confined_path`. The command line does
not: there the user already owns the shell and may write wherever they like.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import LiWiError

__all__ = ["confined_path"]

_DRIVE = re.compile(r"^[A-Za-z]:")


def _refusal(value: str) -> str | None:
    """Why ``value`` is not a plain relative path, judged from its text alone (any OS's syntax)."""
    if "\x00" in value:
        return "contains a NUL character"
    if value.startswith(("/", "\\")) or os.path.isabs(value):
        return "is an absolute path"
    if _DRIVE.match(value):
        return "names a drive"
    if ".." in re.split(r"[/\\]", value):
        return "contains a '..' segment"
    return None


def confined_path(root, relative: str, what: str, root_name: str | None = None) -> Path:
    """``root / relative``, refused unless it stays inside ``root``.

    Refused, with a one-line :class:`LiWiError` naming ``what`` (the input it came from):
    absolute paths (``/x``, ``\\\\server\\x``), drive letters (``C:x``), any ``..`` segment
    (even one that would come back inside), NUL characters, and a path whose real location,
    after following symlinks, is outside the real ``root``. Nothing is created. An empty
    ``relative`` is ``root`` itself. ``root_name`` is how the message names the root (the
    real path is not shown to a remote user when given).

    Returns:
        The joined path (not resolved, so the caller's view of the folder is kept).
    """
    if not isinstance(relative, str):
        raise LiWiError(f"{what}: expected a folder name, got {type(relative).__name__}")
    reason = _refusal(relative)
    if reason is None:
        joined = Path(root) / relative
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, os.path.realpath(joined)]) == real_root:
            return joined
        reason = "leads outside through a link"
    raise LiWiError(f"{what}: '{relative}' {reason}; give a folder inside {root_name or root}")
