"""Support code for testing ComfyUI workflows: offline checks and a real server.

Standard library only (HTTP through urllib), so both the offline workflow
check and the server helpers run in the project's own venv.

* :func:`ui_to_api` turns a UI-format workflow (what the ComfyUI frontend
  saves: ``nodes`` with ``widgets_values``, a ``links`` list) into the API
  prompt format (``{node_id: {"class_type", "inputs"}}``) that ``POST /prompt``
  takes, the way the frontend's ``graphToPrompt`` does it.
* :func:`check_workflow` lists what is wrong with a UI workflow against a
  ``GET /object_info`` schema: unknown node types, bad links, type mismatches,
  missing required inputs, widget count mismatches, values outside a COMBO's
  options or an INT/FLOAT's min/max.
* :func:`start_server` / :func:`post_and_wait` run a real ComfyUI server on
  127.0.0.1 and execute a prompt on it.

The conversion follows ComfyUI_frontend 1.27.10 (the version pinned by ComfyUI
0.3.64's requirements.txt); the behaviour it reproduces, and where in the
frontend it comes from:

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
  saved value is ``"image"``), or ``Comfy.AudioWidget`` for ``audio_upload``;
* API inputs = every serialisable widget's value (list values wrapped as
  ``{"__value__": [...]}``), then every linked input, resolved through virtual
  nodes (``Reroute``: same slot; ``PrimitiveNode``: its value replaces the
  widget's; ``Note`` / ``MarkdownNote`` have no outputs) and bypassed nodes
  (mode 4: first input whose type fits, slot-index first) - ``ExecutableNodeDTO``;
* muted (mode 2) and bypassed nodes are left out, and inputs linked to a node
  that was left out are dropped (``graphToPrompt``).

Not reproduced: subgraphs and group nodes (rejected with an error), dynamic
prompts (``{a|b}`` in STRING widgets with ``dynamicPrompts``), the
``%Node.widget%`` text replacement in ``filename_prefix``, and custom widgets
that frontend extensions of other packs define.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# LGraphEventMode
MODE_ALWAYS = 0
MODE_NEVER = 2  # "muted"
MODE_BYPASS = 4

#: Node types that exist only in the frontend (``isVirtualNode``).
FRONTEND_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})

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

#: File extensions of model weights: a COMBO value with one of these that the
#: server doesn't list is a model file missing on that server.
MODEL_FILE_EXTENSIONS = (
    ".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx", ".pkl",
)


class WorkflowError(ValueError):
    """A UI workflow that can't be converted."""


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


# --------------------------------------------------------------------------
# UI workflow model
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Link:
    id: int
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: Any


def _parse_link(raw: Any) -> Link:
    if isinstance(raw, dict):
        return Link(
            int(raw["id"]), str(raw["origin_id"]), int(raw["origin_slot"]),
            str(raw["target_id"]), int(raw["target_slot"]), raw.get("type"),
        )
    if isinstance(raw, (list, tuple)) and len(raw) >= 5:
        return Link(int(raw[0]), str(raw[1]), int(raw[2]), str(raw[3]), int(raw[4]),
                    raw[5] if len(raw) > 5 else None)
    raise WorkflowError(f"malformed link {raw!r}")


def _unsupported(workflow_ui: dict) -> list[str]:
    out = []
    defs = workflow_ui.get("definitions") or {}
    if defs.get("subgraphs"):
        out.append("workflow uses subgraphs, which this converter does not expand")
    if (workflow_ui.get("extra") or {}).get("groupNodes"):
        out.append("workflow uses group nodes, which this converter does not expand")
    return out


class _Graph:
    """A UI workflow with the frontend's view of each node's inputs."""

    def __init__(self, workflow_ui: dict, object_info: dict):
        if not isinstance(workflow_ui, dict) or not isinstance(workflow_ui.get("nodes"), list):
            raise WorkflowError("not a UI-format workflow (no 'nodes' list)")
        self.object_info = object_info
        self.nodes: dict[str, dict] = {}
        for n in workflow_ui["nodes"]:
            self.nodes[str(n["id"])] = n
        self.links: dict[int, Link] = {}
        for raw in workflow_ui.get("links") or []:
            link = _parse_link(raw)
            self.links[link.id] = link
        self._inputs_cache: dict[str, list[dict]] = {}

    def node_def(self, node: dict) -> dict | None:
        return self.object_info.get(node.get("type"))

    def is_virtual(self, node: dict) -> bool:
        return node.get("type") in FRONTEND_ONLY_TYPES and node.get("type") not in self.object_info

    def inputs(self, node: dict) -> list[dict]:
        """Full input list (as after ``configure``): definition order, saved links by name."""
        nid = str(node["id"])
        if nid in self._inputs_cache:
            return self._inputs_cache[nid]
        saved = [dict(i) for i in node.get("inputs") or []]
        node_def = self.node_def(node)
        if node_def is None:
            result = saved
        else:
            by_name = {i.get("name"): i for i in saved}
            result = []
            defined = set()
            for slot in node_input_slots(node_def):
                defined.add(slot.name)
                data = by_name.get(slot.name, {})
                result.append({
                    "name": slot.name,
                    "type": slot.type,
                    "link": data.get("link"),
                    "widget": {"name": slot.name} if slot.widget else None,
                })
            result.extend(i for i in saved if i.get("name") not in defined)
        self._inputs_cache[nid] = result
        return result

    def outputs(self, node: dict) -> list[dict]:
        node_def = self.node_def(node)
        saved = node.get("outputs") or []
        if node_def is None:
            return [dict(o) for o in saved]
        types = output_types(node_def)
        names = list(node_def.get("output_name") or types)
        out = [{"name": names[i] if i < len(names) else t, "type": t} for i, t in enumerate(types)]
        out.extend(dict(o) for o in saved[len(types):])  # outputs added by frontend js
        return out

    # -- resolution (ExecutableNodeDTO.resolveInput / resolveOutput) --------

    def resolve_input(self, node: dict, slot: int, visited: set, type_: Any = None):
        key = f"{node['id']}[I]{slot}"
        if key in visited:
            raise WorkflowError(f"circular link resolution at node {node['id']} input {slot}")
        visited.add(key)
        inputs = self.inputs(node)
        if slot >= len(inputs):
            raise WorkflowError(f"node {node['id']} has no input slot {slot}")
        inp = inputs[slot]
        link_id = inp.get("link")
        if link_id is None:
            return None
        link = self.links.get(int(link_id))
        if link is None:
            raise WorkflowError(f"node {node['id']} input {inp.get('name')!r}: link {link_id} not in links")
        origin = self.nodes.get(link.origin_id)
        if origin is None:
            raise WorkflowError(f"link {link.id}: origin node {link.origin_id} not found")
        return self.resolve_output(origin, link.origin_slot, type_ if type_ is not None else inp.get("type"), visited)

    def resolve_output(self, node: dict, slot: int, type_: Any, visited: set):
        key = f"{node['id']}[O]{slot}"
        if key in visited:
            raise WorkflowError(f"circular link resolution at node {node['id']} output {slot}")
        visited.add(key)
        if node.get("mode", 0) == MODE_BYPASS:
            idx = self._bypass_slot_index(node, slot, type_)
            if idx == -1:
                return None
            return self.resolve_input(node, idx, visited)
        if self.is_virtual(node):
            if node.get("type") == "PrimitiveNode":
                values = node.get("widgets_values") or []
                return ("value", values[0] if values else None, node)
            if slot < len(self.inputs(node)):
                return self.resolve_input(node, slot, visited, type_)
            return None
        return ("link", str(node["id"]), int(slot))

    def _bypass_slot_index(self, node: dict, slot: int, type_: Any) -> int:
        inputs = self.inputs(node)
        outputs = self.outputs(node)
        if type_ in ("*", ""):
            return slot if len(inputs) > slot else 0
        out_type = outputs[slot]["type"] if slot < len(outputs) else "*"
        if slot < len(inputs):
            opp = inputs[slot]
            if is_valid_connection(opp.get("type"), out_type) and is_valid_connection(opp.get("type"), type_):
                return slot
        for i, inp in enumerate(inputs):
            if inp.get("type") == type_:
                return i
        for i, inp in enumerate(inputs):
            if is_valid_connection(inp.get("type"), out_type) and is_valid_connection(inp.get("type"), type_):
                return i
        return -1

    # -- widgets -------------------------------------------------------------

    def widget_values(self, node: dict) -> dict[str, Any]:
        """Serialisable widget name -> value, as after loading the workflow."""
        node_def = self.node_def(node)
        if node_def is None:
            return {}
        widgets = node_widgets(node_def)
        saved = node.get("widgets_values")
        values: dict[str, Any] = {}
        for i, w in enumerate(widgets):
            if not w.serialize:
                continue
            if w.role == "refresh":
                values[w.name] = "refresh"
                continue
            if w.role == "ui":
                values[w.name] = ""
                continue
            if isinstance(saved, dict):
                value = saved[w.name] if w.name in saved else _default_value(w.spec)
            elif isinstance(saved, list) and i < len(saved):
                value = saved[i]
            else:
                value = _default_value(w.spec)
            values[w.name] = value
        return values


def _wrap(value: Any) -> Any:
    return {"__value__": value} if isinstance(value, list) else value


def ui_to_api(workflow_ui: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow into the API prompt format.

    ``object_info`` is the server's ``GET /object_info`` (or the part of it
    that covers the workflow's node types). Node types missing from it are
    converted with their links only (no widget values); use
    :func:`check_workflow` first to catch them.
    """
    problems = _unsupported(workflow_ui)
    if problems:
        raise WorkflowError("; ".join(problems))
    g = _Graph(workflow_ui, object_info)
    output: dict[str, dict] = {}
    for nid, node in g.nodes.items():
        if g.is_virtual(node) or node.get("mode", 0) in (MODE_NEVER, MODE_BYPASS):
            continue
        inputs: dict[str, Any] = {k: _wrap(v) for k, v in g.widget_values(node).items()}
        for i, inp in enumerate(g.inputs(node)):
            if inp.get("link") is None:
                continue
            resolved = g.resolve_input(node, i, set())
            if resolved is None:
                continue
            if resolved[0] == "value":
                if inp.get("widget"):
                    inputs[inp["name"]] = _wrap(resolved[1])
                continue
            inputs[inp["name"]] = [resolved[1], resolved[2]]
        entry = {"inputs": inputs, "class_type": node.get("type")}
        title = node.get("title")
        if title:
            entry["_meta"] = {"title": title}
        output[nid] = entry
    # Remove inputs connected to removed nodes.
    for entry in output.values():
        for name, value in list(entry["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and value[0] not in output:
                del entry["inputs"][name]
    return output


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Problem:
    #: unsupported, missing_node_type, bad_link, type_mismatch, missing_input,
    #: widget_count, bad_value, missing_file, no_output
    kind: str
    message: str

    def __str__(self) -> str:
        return self.message


def _describe(node: dict) -> str:
    title = node.get("title")
    t = node.get("type")
    return f"node {node.get('id')} ({t}{', ' + repr(title) if title and title != t else ''})"


def _check_value(where: str, spec: Any, value: Any, check_file_combos: bool) -> list[Problem]:
    t = spec_type(spec)
    opts = _spec_options(spec)
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    out: list[Problem] = []
    if t == "COMBO":
        options = combo_options(spec)
        if options is None or opts.get("multi_select"):
            return out
        if not check_file_combos and (any(opts.get(f) for f in _UPLOAD_FLAGS) or opts.get("audio_upload")):
            return out
        if value not in options:
            shown = options if len(options) <= 20 else f"(list of {len(options)})"
            # an empty option list is a model folder this server has nothing in (e.g. models/liwi)
            is_file = isinstance(value, str) and (value.lower().endswith(MODEL_FILE_EXTENSIONS) or not options)
            kind = "missing_file" if is_file else "bad_value"
            out.append(Problem(kind, f"{where}: {value!r} is not one of {shown}"))
        return out
    if t in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = int(value) if t == "INT" else float(value)
            except (TypeError, ValueError):
                return [Problem("bad_value", f"{where}: {value!r} is not a {t}")]
        if t == "INT" and isinstance(value, float) and not value.is_integer():
            out.append(Problem("bad_value", f"{where}: {value!r} is not an integer"))
        if "min" in opts and value < opts["min"]:
            out.append(Problem("bad_value", f"{where}: {value!r} < min {opts['min']}"))
        if "max" in opts and value > opts["max"]:
            out.append(Problem("bad_value", f"{where}: {value!r} > max {opts['max']}"))
    elif t == "BOOLEAN" and not isinstance(value, bool):
        out.append(Problem("bad_value", f"{where}: {value!r} is not a BOOLEAN"))
    elif t == "STRING" and not isinstance(value, str):
        out.append(Problem("bad_value", f"{where}: {value!r} is not a STRING"))
    return out


def workflow_problems(workflow_ui: dict, object_info: dict, *, check_file_combos: bool = True) -> list[Problem]:
    """Like :func:`check_workflow`, with each problem's kind.

    ``check_file_combos=False`` skips the value check of upload COMBOs
    (``image_upload`` etc.), whose options are the files of one server's
    input folder.
    """
    problems: list[Problem] = [Problem("unsupported", m) for m in _unsupported(workflow_ui)]
    try:
        g = _Graph(workflow_ui, object_info)
    except WorkflowError as e:
        return problems + [Problem("unsupported", str(e))]

    # Node types.
    for node in g.nodes.values():
        t = node.get("type")
        if t not in object_info and t not in FRONTEND_ONLY_TYPES:
            problems.append(Problem("missing_node_type", f"{_describe(node)}: node type {t!r} is not on the server"))

    # Raw links: ids, endpoints, slots, declared types.
    referenced: dict[int, tuple[str, int]] = {}
    for nid, node in g.nodes.items():
        for idx, inp in enumerate(node.get("inputs") or []):
            link_id = inp.get("link")
            if link_id is None:
                continue
            if int(link_id) in referenced:
                problems.append(Problem("bad_link", f"link {link_id} is the input of more than one slot"))
            referenced[int(link_id)] = (nid, idx)
            if int(link_id) not in g.links:
                problems.append(Problem("bad_link", f"{_describe(node)} input {inp.get('name')!r}: link {link_id} is not in the links list"))
    for link in g.links.values():
        origin = g.nodes.get(link.origin_id)
        target = g.nodes.get(link.target_id)
        if origin is None or target is None:
            missing = link.origin_id if origin is None else link.target_id
            problems.append(Problem("bad_link", f"link {link.id}: node {missing} does not exist"))
            continue
        ref = referenced.get(link.id)
        if ref is None:
            problems.append(Problem("bad_link", f"link {link.id}: no input of {_describe(target)} refers to it"))
        elif ref != (link.target_id, link.target_slot):
            problems.append(Problem("bad_link", f"link {link.id}: target [{link.target_id}, slot {link.target_slot}] but node {ref[0]} input slot {ref[1]} refers to it"))
        saved_outputs = origin.get("outputs") or []
        if link.origin_slot < len(saved_outputs):
            links_of_output = saved_outputs[link.origin_slot].get("links") or []
            if link.id not in links_of_output:
                problems.append(Problem("bad_link", f"link {link.id}: not listed in output slot {link.origin_slot} of {_describe(origin)}"))
        if g.node_def(origin) is not None or origin.get("type") in FRONTEND_ONLY_TYPES:
            outs = g.outputs(origin) if g.node_def(origin) is not None else saved_outputs
            if origin.get("type") == "Note" or origin.get("type") == "MarkdownNote" or link.origin_slot >= len(outs) or link.origin_slot < 0:
                problems.append(Problem("bad_link", f"link {link.id}: {_describe(origin)} has no output slot {link.origin_slot}"))
                continue
            if g.node_def(origin) is not None and link.type is not None:
                out_type = outs[link.origin_slot]["type"]
                if not is_valid_connection(link.type, out_type):
                    problems.append(Problem("type_mismatch", f"link {link.id}: declared type {link.type!r} but output {link.origin_slot} of {_describe(origin)} is {out_type!r}"))
        if g.node_def(target) is not None and ref is not None and ref[0] == link.target_id:
            saved_in = (target.get("inputs") or [])[ref[1]]
            names = {s.name for s in node_input_slots(g.node_def(target))}
            if saved_in.get("name") not in names:
                problems.append(Problem("bad_link", f"link {link.id}: {_describe(target)} has no input named {saved_in.get('name')!r}"))

    # Per node: widgets, resolved links and their types, required inputs.
    has_output = False
    for nid, node in g.nodes.items():
        node_def = g.node_def(node)
        if node_def is None:
            continue
        muted = node.get("mode", 0) in (MODE_NEVER, MODE_BYPASS)
        if not muted and node_def.get("output_node"):
            has_output = True
        widgets = node_widgets(node_def)
        saved = node.get("widgets_values")
        if isinstance(saved, list):
            # Widgets that are not saved leave a null hole, or nothing when last.
            shortest = max((i + 1 for i, w in enumerate(widgets) if w.saved), default=0)
            if not shortest <= len(saved) <= len(widgets):
                names = [w.name for w in widgets]
                problems.append(Problem("widget_count", f"{_describe(node)}: {len(saved)} widgets_values but the node has {len(widgets)} widgets {names}"))
        elif isinstance(saved, dict):
            unknown = sorted(set(saved) - {w.name for w in widgets})
            if unknown:
                problems.append(Problem("widget_count", f"{_describe(node)}: widgets_values names {unknown} are not widgets of the node"))
        elif saved is None and any(w.serialize for w in widgets):
            problems.append(Problem("widget_count", f"{_describe(node)}: no widgets_values but the node has widgets {[w.name for w in widgets]}"))
        if muted:
            continue

        specs = {name: (spec, opt) for name, spec, opt in ordered_inputs(node_def)}
        wvalues = g.widget_values(node)
        linked: set[str] = set()
        for i, inp in enumerate(g.inputs(node)):
            name = inp.get("name")
            if inp.get("link") is None:
                continue
            try:
                resolved = g.resolve_input(node, i, set())
            except WorkflowError as e:
                problems.append(Problem("bad_link", str(e)))
                continue
            spec = specs.get(name, (None, True))[0]
            if resolved is None:
                continue
            if resolved[0] == "value":
                if not inp.get("widget"):
                    problems.append(Problem("bad_link", f"{_describe(node)} input {name!r}: PrimitiveNode linked to a non-widget input"))
                    continue
                linked.add(name)
                if spec is not None:
                    problems.extend(_check_value(f"{_describe(node)} input {name!r} (from PrimitiveNode)", spec, resolved[1], check_file_combos))
                continue
            origin = g.nodes[resolved[1]]
            if origin.get("mode", 0) in (MODE_NEVER,):
                problems.append(Problem("bad_link", f"{_describe(node)} input {name!r} is linked to muted {_describe(origin)}; the frontend drops it"))
                continue
            linked.add(name)
            origin_def = g.node_def(origin)
            if origin_def is None or spec is None:
                continue
            outs = output_types(origin_def)
            if resolved[2] >= len(outs):
                continue  # reported with the raw link
            out_type = outs[resolved[2]]
            in_type = spec_type(spec)
            if not is_valid_connection(out_type, in_type):
                problems.append(Problem("type_mismatch", f"{_describe(node)} input {name!r} ({in_type}) is linked to output {resolved[2]} ({out_type}) of {_describe(origin)}"))

        server_inputs = node_def.get("input") or {}
        for name, (spec, optional) in specs.items():
            if name in linked:
                continue
            if name not in (server_inputs.get("required") or {}) and name not in (server_inputs.get("optional") or {}):
                continue  # added by a frontend extension (upload button, audioUI, ...)
            if name in wvalues:
                problems.extend(_check_value(f"{_describe(node)} widget {name!r}", spec, wvalues[name], check_file_combos))
            elif not optional:
                problems.append(Problem("missing_input", f"{_describe(node)}: required input {name!r} ({spec_type(spec)}) is not linked"))

    if not has_output:
        problems.append(Problem("no_output", "workflow has no active output node (the server would refuse it)"))
    return problems


def check_workflow(workflow_ui: dict, object_info: dict, *, check_file_combos: bool = True) -> list[str]:
    """Problems of a UI workflow against an object_info schema; ``[]`` when fine."""
    return [str(p) for p in workflow_problems(workflow_ui, object_info, check_file_combos=check_file_combos)]


def node_types_used(workflow_ui: dict) -> set[str]:
    return {n.get("type") for n in workflow_ui.get("nodes") or [] if n.get("type")}


# --------------------------------------------------------------------------
# Real server
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_custom_nodes_dir(repo_root: str | os.PathLike, parent: str | os.PathLike, name: str = "ComfyUI-LiWi") -> Path:
    """A folder holding only a symlink ``name`` -> ``repo_root``.

    ComfyUI imports each folder under custom_nodes by path; the repo's own
    folder may be called ``main``, which would shadow ComfyUI's main.py.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    link = parent / name
    if not link.exists():
        link.symlink_to(Path(repo_root).resolve(), target_is_directory=True)
    return parent


class ServerError(RuntimeError):
    pass


@dataclasses.dataclass
class Server:
    base_url: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    output_dir: Path
    input_dir: Path
    temp_dir: Path

    def log_tail(self, n: int = 80) -> str:
        return log_tail(self.log_path, n)

    def object_info(self, node_class: str | None = None) -> dict:
        url = f"{self.base_url}/object_info" + (f"/{node_class}" if node_class else "")
        status, body = http_json("GET", url)
        if status != 200:
            raise ServerError(f"GET {url}: {status} {body!r}")
        return body


def http_json(method: str, url: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
    """``(status, decoded JSON or text)``; HTTP error statuses are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw.decode() or "null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return status, raw.decode(errors="replace")


def log_tail(path: str | os.PathLike, n: int = 80) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def import_failures(log_text: str, pack_name: str) -> list[str]:
    """Log lines saying that the pack (a custom_nodes folder name) didn't import."""
    out = []
    for line in log_text.splitlines():
        if pack_name not in line:
            continue
        if "IMPORT FAILED" in line or "Cannot import" in line or "Error while calling comfy_entrypoint" in line:
            out.append(line.strip())
    return out


@contextlib.contextmanager
def start_server(
    comfy_dir: str | os.PathLike,
    python: str | os.PathLike,
    custom_nodes_parent: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    input_dir: str | os.PathLike,
    port: int | None = None,
    *,
    pack_name: str | None = "ComfyUI-LiWi",
    work_dir: str | os.PathLike | None = None,
    extra_args: list[str] = (),
    startup_timeout: float = 300.0,
    model_paths: dict[str, str | os.PathLike] | None = None,
) -> Iterator[Server]:
    """Run ``python main.py --cpu`` on 127.0.0.1 until the block ends.

    ``custom_nodes_parent`` is added as a custom_nodes folder through a
    temporary ``--extra-model-paths-config`` (see :func:`make_custom_nodes_dir`), with
    ``model_paths`` (model folder name -> path, e.g. ``{"liwi": ...}``) beside it.
    Temp, user folder and database go under ``work_dir`` (a new temporary
    folder by default). Waits for ``GET /object_info``; raises
    :class:`ServerError` with the log tail if the server exits, doesn't answer
    in time, or logs an import failure of ``pack_name``.
    """
    comfy_dir = Path(comfy_dir).resolve()
    port = port or free_port()
    own_work = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="comfy_e2e_")) if own_work else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    user_dir = work / "user"
    user_dir.mkdir(exist_ok=True)
    temp_parent = work / "tmp"
    output_dir, input_dir = Path(output_dir).resolve(), Path(input_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    input_dir.mkdir(parents=True, exist_ok=True)
    log_path = work / "comfyui.log"
    cmd = [
        str(python), "main.py", "--cpu",
        "--listen", "127.0.0.1", "--port", str(port),
        "--disable-auto-launch",
        "--output-directory", str(output_dir),
        "--input-directory", str(input_dir),
        "--temp-directory", str(temp_parent),
        "--user-directory", str(user_dir),
        "--database-url", "sqlite:///:memory:",
    ]
    if custom_nodes_parent is not None:
        yaml_path = work / "extra_model_paths.yaml"
        cn = str(Path(custom_nodes_parent).resolve())
        lines = [f"  custom_nodes: {json.dumps(cn)}"]
        lines += [f"  {name}: {json.dumps(str(Path(p).resolve()))}" for name, p in (model_paths or {}).items()]
        yaml_path.write_text("comfy_e2e:\n" + "\n".join(lines) + "\n")
        cmd += ["--extra-model-paths-config", str(yaml_path)]
    cmd += list(extra_args)
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", DO_NOT_TRACK="1")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        cmd, cwd=comfy_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", port, proc, log_path, output_dir, input_dir, temp_parent / "temp")
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise ServerError(f"ComfyUI exited with {proc.returncode} during start-up:\n{server.log_tail()}")
            try:
                if http_json("GET", f"{server.base_url}/object_info", timeout=30)[0] == 200:
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"ComfyUI did not answer /object_info in {startup_timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.5)
        if pack_name:
            failed = import_failures(log_path.read_text(errors="replace"), pack_name)
            if failed:
                raise ServerError(f"{pack_name} failed to import: {failed}\n{server.log_tail(120)}")
        yield server
    finally:
        _stop(proc)
        log.close()
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # our own session: the server and its children only
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


class PromptError(RuntimeError):
    pass


def post_and_wait(base_url: str, prompt: dict, timeout: float = 600.0, *, poll: float = 0.25) -> dict:
    """POST a prompt, wait for it, and return its ``/history`` entry.

    Raises :class:`PromptError` with the server's node errors when the prompt
    is refused, or with the exception message when execution fails.
    """
    client_id = uuid.uuid4().hex
    status, body = http_json("POST", f"{base_url}/prompt", {"prompt": prompt, "client_id": client_id})
    if status != 200:
        raise PromptError(f"prompt refused ({status}): {json.dumps(body, indent=1)[:6000]}")
    if body.get("node_errors"):
        raise PromptError(f"prompt has node errors: {json.dumps(body['node_errors'], indent=1)[:6000]}")
    prompt_id = body["prompt_id"]
    deadline = time.monotonic() + timeout
    while True:
        hstatus, history = http_json("GET", f"{base_url}/history/{prompt_id}")
        if hstatus != 200:
            raise PromptError(f"GET /history/{prompt_id}: {hstatus} {history!r}")
        entry = history.get(prompt_id)
        if entry is not None:
            status = entry.get("status") or {}
            if status.get("status_str") == "error" or (status.get("completed") is False and status.get("messages")):
                raise PromptError(f"prompt {prompt_id} failed: {_execution_error(status)}")
            if status.get("completed", True):
                return entry
        if time.monotonic() > deadline:
            raise PromptError(f"prompt {prompt_id} did not finish in {timeout:.0f} s")
        time.sleep(poll)


def _execution_error(status: dict) -> str:
    for kind, data in status.get("messages") or []:
        if kind in ("execution_error", "execution_interrupted"):
            tb = "".join(data.get("traceback") or [])
            return (f"{kind} in node {data.get('node_id')} ({data.get('node_type')}): "
                    f"{data.get('exception_type')}: {data.get('exception_message')}\n{tb}")
    return json.dumps(status)[:4000]


def output_files(history_entry: dict) -> list[dict]:
    """Every ``{filename, subfolder, type}`` that the output nodes reported."""
    files = []
    for node_id, out in (history_entry.get("outputs") or {}).items():
        for key, items in out.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and "filename" in item:
                    files.append({**item, "node_id": node_id, "key": key})
    return files
