"""Checks of a UI-format ComfyUI workflow against a server's ``GET /object_info``.

Standard library only. Part of the support code for testing ComfyUI workflows
(:mod:`comfy_e2e` re-exports it).

* :func:`check_workflow` lists what is wrong with a UI workflow against a
  ``GET /object_info`` schema: unknown node types, bad links, type mismatches,
  missing required inputs, widget count mismatches, values outside a COMBO's
  options or an INT/FLOAT's min/max.

The workflow is read the way :mod:`comfy_workflow` converts it (links resolved
through Reroute, PrimitiveNode and bypassed nodes; muted nodes left out).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from comfy_nodes import (
    _UPLOAD_FLAGS,
    _spec_options,
    combo_options,
    is_valid_connection,
    node_input_slots,
    node_widgets,
    ordered_inputs,
    output_types,
    spec_type,
)
from comfy_workflow import (
    FRONTEND_ONLY_TYPES,
    MODE_BYPASS,
    MODE_NEVER,
    WorkflowError,
    _Graph,
    _unsupported,
)

#: File extensions of model weights: a COMBO value with one of these that the
#: server doesn't list is a model file missing on that server.
MODEL_FILE_EXTENSIONS = (
    ".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx", ".pkl",
)


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
