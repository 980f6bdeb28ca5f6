"""Loading a model folder (``config.json`` + ``.safetensors``) from a local path, written once.

Only safetensors weights are read, nothing downloads, and every way a folder can be wrong
(a pickle, no weights, a truncated file, another architecture) is a one-line
:class:`LiWiError` naming the file.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from .errors import LiWiError

__all__ = ["load_pretrained", "PICKLE_SUFFIXES"]

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


def load_pretrained(path, model_class, what: str):
    """``model_class.from_pretrained(path)`` (a diffusers ``ModelMixin``) in eval mode, checked.

    Args:
        path: the folder, or its ``.safetensors`` file.
        model_class: the class the folder's ``config.json`` must name.
        what: how messages name the folder ("checkpoint", "saliency model").
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES or suffix == ".onnx":
        kind = "an ONNX" if suffix == ".onnx" else "a pickle"
        raise LiWiError(f"'{path}' is {kind} file: LiWi loads only .safetensors weights")
    if path.is_file() and suffix == ".safetensors":
        path = path.parent
    if not (path / "config.json").is_file():
        raise LiWiError(f"'{path}' is not a {what} folder: config.json is missing")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        others = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES + (".onnx",)]
        raise LiWiError(f"'{path}' has no .safetensors weights" + (f" (found {others}, never loaded)" if others else ""))
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LiWiError(f"cannot read '{path / 'config.json'}': {str(exc).splitlines()[0][:200]}") from None
    name = config.get("_class_name") if isinstance(config, dict) else None
    if name != model_class.__name__:
        raise LiWiError(f"'{path / 'config.json'}' describes a {name!r}, not a {model_class.__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = model_class.from_pretrained(str(path), use_safetensors=True, low_cpu_mem_usage=False,
                                                local_files_only=True)
    except Exception as exc:  # diffusers / safetensors raise many kinds for broken files
        raise LiWiError(f"cannot load {what} '{weights[0]}': {str(exc).splitlines()[0][:200]}") from None
    return model.eval()
