"""Where nodes may write: every path-like text input goes through :func:`output_path`."""

from __future__ import annotations

from pathlib import Path

import folder_paths

from ..liwi_core.safepath import confined_path


def output_path(value: str, input_name: str) -> Path:
    """``value`` (a node input) as a path inside ComfyUI's output folder, or a one-line error
    naming ``input_name``: absolute paths, ``..``, drive letters and links leading out are refused
    (the prompt may come from anyone who can reach the server)."""
    return confined_path(folder_paths.get_output_directory(), value, input_name, "ComfyUI's output folder")
