"""Node widgets made from an engine's settings declaration (``liwi_core.options``), and back."""

from __future__ import annotations

from dataclasses import MISSING
from typing import Any

from comfy_api.latest import io

from ..liwi_core.options import check_settings, option_specs


def _widget_name(f, meta: dict) -> str:
    return meta["node"] or f.name


def settings_inputs(settings_type, only: tuple[str, ...] | None = None, prefix_tooltip: str = "") -> list:
    """One widget per declared option (or those named in ``only``, in that order: widgets added
    later go last, so saved workflows' positional values stay in place): its default, range,
    list labels and help as the tooltip."""
    inputs = []
    specs = option_specs(settings_type, only)
    if only is not None:
        specs = sorted(specs, key=lambda spec: only.index(spec[0].name))
    for f, meta in specs:
        name, default = _widget_name(f, meta), f.default
        tooltip = prefix_tooltip + meta["help"]
        if meta["labels"]:
            labels = list(meta["labels"])
            chosen = next(k for k, v in meta["labels"].items() if v == default)
            inputs.append(io.Combo.Input(name, options=labels, default=chosen, tooltip=tooltip))
        elif isinstance(default, bool):
            inputs.append(io.Boolean.Input(name, default=default, tooltip=tooltip))
        elif isinstance(default, int):
            inputs.append(io.Int.Input(name, default=default, min=meta["min"], max=meta["max"],
                                       step=int(meta["step"] or 1), tooltip=tooltip))
        elif isinstance(default, float):
            inputs.append(io.Float.Input(name, default=default, min=meta["min"], max=meta["max"],
                                         step=meta["step"], tooltip=tooltip))
        elif isinstance(default, str):
            inputs.append(io.String.Input(name, default=default, tooltip=tooltip))
    return inputs


def settings_from_widgets(settings_type, values: dict[str, Any]):
    """The settings a node's widget values ask for (absent widgets keep their default), checked."""
    chosen = {}
    for f, meta in option_specs(settings_type):
        name = _widget_name(f, meta)
        if name in values and f.default is not MISSING:
            value = values[name]
            chosen[f.name] = meta["labels"][value] if meta["labels"] else value
    return check_settings(settings_type(**chosen))

