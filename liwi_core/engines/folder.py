"""The "folder" engine: layers another tool already wrote, read back for evaluation.

``create("folder", path=DIR)`` reads ``DIR/<key>/`` (the folder format of
:func:`liwi_core.export.save_layers_dir`, ``layers.json`` inside) for the image whose key,
a dataset sample id, is given to :meth:`FolderEngine.decompose`. The stored stack is
returned as it was written; nothing is computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import LiWiError
from ..layers import LayerStack
from ..options import option
from .base import Engine

__all__ = ["FolderEngine", "FolderSettings"]


@dataclass
class FolderSettings:
    path: str = option("", "Folder with one layer folder per image, named by its sample id.")


class FolderEngine(Engine):
    name = "folder"
    needs_masks = False

    def __init__(self, settings: FolderSettings | None = None, **options):
        self.settings = settings if settings is not None else FolderSettings(**options)
        if not self.settings.path or not Path(self.settings.path).is_dir():
            raise LiWiError(f"prediction folder '{self.settings.path}' does not exist")

    def peel(self, image, masks, names, prompt_indices, step=None, find=None):
        raise LiWiError("the folder engine reads finished stacks: call its decompose with key=<sample id>")

    def decompose(self, image=None, masks=None, key: str | None = None, **kwargs) -> LayerStack:
        """The stack stored for ``key``; ``image`` and ``masks`` are not used (the other tool had them)."""
        from ..export import load_layers_dir

        if not key:
            raise LiWiError("the folder engine needs the sample id (key) of the image")
        return load_layers_dir(Path(self.settings.path) / key)
