"""Decomposition engines behind one interface (:class:`~liwi_core.engines.base.Engine`), and their registry.

    from liwi_core.engines import available, create
    available()                                   # ['baseline', 'classical', 'folder', 'learned', 'qwen-layered', 'refined']
    engine = create("classical", shadow_reach=0.8)
    stack = engine.decompose(image, masks)        # = liwi_core.decompose.decompose(image, masks, engine=engine)

The command line, the nodes, the evaluation and ADD all build engines here.
"""

from __future__ import annotations

from importlib import import_module

from ..errors import LiWiError
from .base import Engine, Peeled, StackBuilder

__all__ = ["available", "create", "settings_type", "DEFAULT_ENGINE", "Engine", "Peeled", "StackBuilder"]

# what the CLI, the Decompose node and decompose() use when no engine is named
DEFAULT_ENGINE = "refined"

# name -> (module, engine class, settings class); imported on demand, so the learned engine's
# diffusers is only needed when it is used
_REGISTRY = {
    "classical": (".classical", "ClassicalEngine", "ClassicalSettings"),
    "learned": (".learned", "LearnedEngine", "LearnedSettings"),
    "refined": (".refined", "RefinedEngine", "RefinedSettings"),
    "baseline": (".baseline", "BaselineEngine", "BaselineSettings"),
    "folder": (".folder", "FolderEngine", "FolderSettings"),
    "qwen-layered": (".qwen_layered", "QwenLayeredEngine", "QwenLayeredSettings"),
}


def available() -> list[str]:
    """The names :func:`create` takes, sorted."""
    return sorted(_REGISTRY)


def _lookup(name: str, index: int):
    if name not in _REGISTRY:
        raise LiWiError(f"unknown engine '{name}': use one of {', '.join(available())}")
    module, *attrs = _REGISTRY[name]
    return getattr(import_module(module, __name__), attrs[index])


def settings_type(name: str) -> type:
    """The settings dataclass of engine ``name`` (its options, defaults, ranges and help)."""
    return _lookup(name, 1)


def create(name: str, **options) -> Engine:
    """Build engine ``name`` with ``options`` (fields of its :func:`settings_type`, or ``settings=``
    an instance; ``learned`` also takes ``model=`` a loaded model)."""
    cls = _lookup(name, 0)
    try:
        return cls(**options)
    except TypeError as exc:
        raise LiWiError(f"engine '{name}': {exc}") from None
