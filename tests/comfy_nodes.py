"""Node definitions (``GET /object_info``) as the ComfyUI frontend sees them.

Standard library only. Part of the support code for testing ComfyUI workflows
(:mod:`comfy_e2e` re-exports it): which widgets and input sockets the frontend
gives a node, in which order, and when two socket types may be linked.

This follows ComfyUI_frontend 1.27.10 (the version pinned by ComfyUI 0.3.64's
requirements.txt); the behaviour it reproduces, and where in the frontend it
comes from:

* widgets are created per input spec in ``input_order`` (required, then
  optional, then inputs that extensions added), for types that have a widget
  constructor, unless ``forceInput`` (``litegraphService.#addInputs`` /
  ``#addInputWidget``, ``getOrderedInputSpecs``);
* ``widgets_values[i]`` belongs to the i-th widget (``LGraphNode.configure``),
  including widgets that are never sent to the server: the
  ``control_after_generate`` combo that follows an INT widget whose spec has
  ``control_after_generate`` (or, when the spec doesn't say, whose name is
  ``seed`` / ``noise_seed``) (``useIntWidget``), the control combo *and* the
  ``control_filter_list`` string that follow a COMBO with
  ``control_after_generate`` (``useComboWidget``), and the ``upload`` button
  that the ``Comfy.UploadImage`` extension adds to nodes with an
  ``image_upload`` / ``video_upload`` / ``animated_image_upload`` COMBO (its
  saved value is ``"image"``), or ``Comfy.AudioWidget`` for ``audio_upload``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: Input types that get a widget in the core frontend (``ComfyWidgets`` and the
#: ``getCustomWidgets`` of the core extensions).
WIDGET_TYPES = frozenset(
    {
        "INT", "FLOAT", "BOOLEAN", "STRING", "MARKDOWN", "COMBO", "IMAGEUPLOAD",
        "FILEUPLOAD", "COLOR", "IMAGECOMPARE", "TREESELECT", "MULTISELECT",
        "CHART", "GALLERIA", "SELECTBUTTON", "TEXTAREA",
        # core extensions
        "AUDIOUPLOAD", "AUDIO_UI", "AUDIO_RECORD", "WEBCAM", "LOAD_3D",
        "LOAD_3D_ANIMATION", "PREVIEW_3D", "PREVIEW_3D_ANIMATION",
    }
)

_UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
_AUDIO_UI_NODES = ("LoadAudio", "SaveAudio", "PreviewAudio", "SaveAudioMP3", "SaveAudioOpus")


# --------------------------------------------------------------------------
# Node definitions (object_info) helpers
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Widget:
    """One frontend widget of a node, in ``widgets_values`` order."""

    name: str
    #: Sent to the server (``options.serialize !== false``).
    serialize: bool
    #: The input name this widget belongs to (``None`` for helper widgets).
    input_name: str | None
    #: The input spec ``[type, options]`` (``None`` for helper widgets).
    spec: tuple | None
    #: "widget", "control", "filter", "upload", "refresh" or "ui".
    role: str = "widget"
    #: Written to ``widgets_values`` (``widget.serialize !== false``); DOM
    #: widgets such as ``audioUI`` leave a ``null`` hole or nothing.
    saved: bool = True


@dataclasses.dataclass(frozen=True)
class InputSlot:
    """One input socket of a node as the frontend builds it."""

    name: str
    type: str
    widget: bool
    optional: bool


def _spec_options(spec: Any) -> dict:
    if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1]
    return {}


def spec_type(spec: Any) -> str:
    """The socket type of an input spec (lists of options are ``COMBO``)."""
    t = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    if isinstance(t, (list, tuple)):
        return "COMBO"
    return str(t)


def combo_options(spec: Any) -> list | None:
    """The options of a COMBO input spec (V1 list form or V3 ``COMBO`` + options)."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return None
    if isinstance(spec[0], (list, tuple)):
        return list(spec[0])
    if spec[0] == "COMBO":
        opts = _spec_options(spec).get("options")
        return list(opts) if isinstance(opts, (list, tuple)) else None
    return None


def output_types(node_def: dict) -> list[str]:
    """Output socket types of a node definition (COMBO outputs are lists)."""
    return ["COMBO" if isinstance(t, (list, tuple)) else str(t) for t in node_def.get("output", [])]


def _widget_type(spec: Any) -> str | None:
    opts = _spec_options(spec)
    if opts.get("forceInput"):
        return None
    t = opts.get("widgetType") or spec_type(spec)
    return t if t in WIDGET_TYPES else None


def _is_media_upload_combo(spec: Any) -> bool:
    opts = _spec_options(spec)
    return any(opts.get(flag) is True for flag in _UPLOAD_FLAGS) and spec_type(spec) == "COMBO"


def ordered_inputs(node_def: dict) -> list[tuple[str, Any, bool]]:
    """``(name, spec, optional)`` in the order the frontend creates them.

    Includes the ``upload`` pseudo-inputs that core frontend extensions add.
    """
    inp = node_def.get("input") or {}
    required = dict(inp.get("required") or {})
    optional = dict(inp.get("optional") or {})
    # beforeRegisterNodeDef of the core frontend extensions, in their order.
    node_name = node_def.get("name")
    if node_name in ("Preview3D", "SaveGLB"):  # Comfy.Preview3D, Comfy.SaveGLB
        required["image"] = ["PREVIEW_3D"]
    elif node_name == "Preview3DAnimation":
        required["image"] = ["PREVIEW_3D_ANIMATION"]
    if node_name in _AUDIO_UI_NODES:  # Comfy.AudioWidget
        required["audioUI"] = ["AUDIO_UI", {}]
    audio = required.get("audio")
    if isinstance(audio, (list, tuple)) and _spec_options(audio).get("audio_upload") is True:
        required["upload"] = ["AUDIOUPLOAD", {}]  # Comfy.UploadAudio
    for name, spec in list(required.items()):  # Comfy.UploadImage: first media COMBO
        if _is_media_upload_combo(spec):
            required["upload"] = ["IMAGEUPLOAD", {**_spec_options(spec), "imageInputName": name}]
            break

    specs: dict[str, tuple[Any, bool]] = {}
    for name, spec in required.items():
        specs[name] = (spec, False)
    for name, spec in optional.items():
        specs.setdefault(name, (spec, True))

    order = node_def.get("input_order")
    if not order:
        return [(n, s, o) for n, (s, o) in specs.items()]
    out: list[tuple[str, Any, bool]] = []
    seen: set[str] = set()
    for key, want_optional in (("required", False), ("optional", True)):
        for name in order.get(key) or []:
            if name in specs and specs[name][1] == want_optional and name not in seen:
                out.append((name, specs[name][0], want_optional))
                seen.add(name)
    for name, (spec, opt) in specs.items():
        if name not in seen:
            out.append((name, spec, opt))
    return out


def node_widgets(node_def: dict) -> list[Widget]:
    """The widgets the frontend gives a node, in ``widgets_values`` order."""
    widgets: list[Widget] = []
    for name, spec, _opt in ordered_inputs(node_def):
        wtype = _widget_type(spec)
        if wtype is None:
            continue
        opts = _spec_options(spec)
        if wtype == "IMAGEUPLOAD":  # button, saved as "image", not sent
            widgets.append(Widget(name, False, None, None, "upload"))
            continue
        if wtype == "AUDIOUPLOAD":
            widgets.append(Widget(name, False, None, None, "upload", saved=False))
            continue
        if wtype == "AUDIO_UI":  # DOM <audio> element: not saved, sent as ""
            widgets.append(Widget(name, True, None, None, "ui", saved=False))
            continue
        widgets.append(Widget(name, True, name, tuple(spec) if isinstance(spec, list) else spec))
        remote = opts.get("remote")
        if wtype == "COMBO" and isinstance(remote, dict) and remote.get("refresh_button"):
            # useRemoteWidget.addRefreshButton: a button named "refresh" (sent, ignored by the server)
            widgets.append(Widget("refresh", True, None, None, "refresh"))
        cag = opts.get("control_after_generate")
        control_name = cag if isinstance(cag, str) else "control_after_generate"
        if wtype == "INT":
            if cag is None:
                cag = name in ("seed", "noise_seed")
            if cag:
                widgets.append(Widget(control_name, False, None, None, "control"))
        elif wtype == "COMBO" and cag and not opts.get("multi_select"):
            widgets.append(Widget(control_name, False, None, None, "control"))
            widgets.append(Widget("control_filter_list", False, None, None, "filter"))
    if node_def.get("name") == "PreviewAny":  # Comfy.PreviewAny: read-only text, sent as ""
        widgets.append(Widget("preview", True, None, None, "ui", saved=False))
    return widgets


def node_input_slots(node_def: dict) -> list[InputSlot]:
    """Input sockets in the frontend's order: plain sockets, then widget sockets."""
    specs = ordered_inputs(node_def)
    slots: list[InputSlot] = []
    for name, spec, opt in specs:
        if _widget_type(spec) is None:
            slots.append(InputSlot(name, spec_type(spec), False, opt))
    for name, spec, opt in specs:
        wtype = _widget_type(spec)
        if wtype is None or _spec_options(spec).get("socketless"):
            continue
        if wtype in ("IMAGEUPLOAD", "AUDIOUPLOAD"):
            slots.append(InputSlot(name, wtype, True, opt))
        else:
            slots.append(InputSlot(name, spec_type(spec), True, opt))
    return slots


def _default_value(spec: Any) -> Any:
    opts = _spec_options(spec)
    t = spec_type(spec)
    if "default" in opts:
        return opts["default"]
    if t == "COMBO":
        options = combo_options(spec) or []
        return options[0] if options else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(t)


def is_valid_connection(type_a: Any, type_b: Any) -> bool:
    """``LiteGraph.isValidConnection``: ``*``/empty match all, comma lists, case-insensitive."""
    a = 0 if type_a in ("", "*") else type_a
    b = 0 if type_b in ("", "*") else type_b
    if not a or not b or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    if "," not in a and "," not in b:
        return a == b
    return any(is_valid_connection(x, y) for x in a.split(",") for y in b.split(","))
