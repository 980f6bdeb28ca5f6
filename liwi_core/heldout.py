"""Which source cut-outs are held out from training: one rule, used by data preparation and the benchmark.

A cut-out belongs to a *group* (its file name without variant suffixes such as ``-1`` or
``_mirror``, so a mirrored copy never lands on the other side of the split). A group is held
out when the first byte of the SHA-1 of its name is divisible by :data:`HELDOUT_EVERY`:
about one group in five, deterministic, and independent of the order files are listed in.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

__all__ = ["HELDOUT_EVERY", "object_group", "is_heldout", "split_objects"]

HELDOUT_EVERY = 5
_VARIANT = re.compile(r"(?:[-_](?:\d+|[a-z]|mirror|flip|left|right))+$")


def object_group(name: str) -> str:
    """The group of a cut-out file name: lower case, no extension, no variant suffix."""
    stem = Path(name).stem.lower()
    return _VARIANT.sub("", stem) or stem


def is_heldout(name: str) -> bool:
    """True when the cut-out ``name`` (a file name or path) is reserved for evaluation."""
    digest = hashlib.sha1(object_group(name).encode("utf-8")).digest()
    return digest[0] % HELDOUT_EVERY == 0


def split_objects(paths) -> tuple[list[Path], list[Path]]:
    """``(training, heldout)`` lists of the cut-out ``paths``, each sorted."""
    paths = sorted(Path(p) for p in paths)
    return [p for p in paths if not is_heldout(p.name)], [p for p in paths if is_heldout(p.name)]
