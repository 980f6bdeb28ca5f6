"""Engine settings declared once: their defaults, ranges and help make the command-line flags
(here) and the node widgets (``nodes/options.py``).

A setting is a dataclass field made with :func:`option`. Its metadata says how it is shown:
``cli`` (the flag, default ``--name-with-dashes``; a ``--no-...`` flag turns a True default
off), ``node`` (the widget name, default the field name) and ``labels`` (the words a node's
list shows for each value).
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, field, fields
from typing import Any

from .errors import LiWiError

__all__ = ["option", "add_arguments", "given_options", "flag_of", "check_settings", "option_specs", "widget_defaults"]


def option(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
           step: float | None = None, choices: tuple | None = None, labels: dict[str, Any] | None = None,
           cli: str | None = None, node: str | None = None) -> Any:
    """A settings field with what the CLI and the nodes need to show it."""
    return field(default=default, metadata={"help": help, "min": minimum, "max": maximum, "step": step,
                                            "choices": choices, "labels": labels, "cli": cli, "node": node})


def option_specs(settings_type, only: tuple[str, ...] | None = None) -> list[tuple[Field, dict]]:
    """``(field, metadata)`` of every declared option (or those named in ``only``), in declaration order."""
    return [(f, dict(f.metadata)) for f in fields(settings_type)
            if "help" in f.metadata and (only is None or f.name in only)]


def _flag(f: Field, meta: dict) -> str:
    return meta["cli"] or "--" + f.name.replace("_", "-")


def add_arguments(parser, settings_type, skip: set[str] | None = None) -> None:
    """One flag per option of ``settings_type`` (on a parser or an argument group), with its
    default, range and help. Flags not given stay out of the parsed namespace, so
    :func:`given_options` can tell what the user asked for. ``skip``: flags already added (an
    option two engines share, such as the refined engine's classical ones); the flags added
    are put in it."""
    for f, meta in option_specs(settings_type):
        default = f.default if f.default is not MISSING else None
        flag = _flag(f, meta)
        if skip is not None:
            if flag in skip:
                continue
            skip.add(flag)
        help_ = meta["help"].replace("%", "%%")  # argparse formats help with %
        if isinstance(default, bool):
            off = flag.startswith("--no-")
            parser.add_argument(flag, dest=f.name, action="store_false" if off else "store_true",
                                default=argparse.SUPPRESS, help=help_)
            continue
        extra = f" Range {meta['min']} to {meta['max']}." if meta["min"] is not None else ""
        parser.add_argument(flag, dest=f.name, type=str if default is None else type(default),
                            default=argparse.SUPPRESS, choices=meta["choices"],
                            help=help_ + extra + ("" if default is None else f" Default {default}."))


def given_options(settings_type, args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``settings_type`` whose flags were given, ``{field name: value}``."""
    return {f.name: getattr(args, f.name) for f, _ in option_specs(settings_type) if hasattr(args, f.name)}


def flag_of(settings_type, name: str) -> str:
    """The command-line flag of option ``name``."""
    return next(_flag(f, meta) for f, meta in option_specs(settings_type) if f.name == name)


def check_settings(settings):
    """``settings`` itself, or a one-line :class:`LiWiError` naming a value out of its range or choices."""
    for f, meta in option_specs(type(settings)):
        value = getattr(settings, f.name)
        if meta["choices"] is not None and value not in meta["choices"]:
            raise LiWiError(f"{f.name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
        if meta["min"] is not None and not meta["min"] <= value <= meta["max"]:
            raise LiWiError(f"{f.name} must be between {meta['min']} and {meta['max']}, got {value!r}")
    return settings


def widget_defaults(settings_type, only: tuple[str, ...] | None = None) -> list:
    """The node widgets' default values in order, as a saved workflow lists them (``widgets_values``)."""
    out = []
    for f, meta in option_specs(settings_type, only):
        if meta["labels"]:
            out.append(next(k for k, v in meta["labels"].items() if v == f.default))
        elif isinstance(f.default, (bool, int, float, str)):
            out.append(f.default)
    return out
