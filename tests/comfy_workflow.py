"""UI-format -> API-format conversion of ComfyUI workflows.

Standard library only. Part of the support code for testing ComfyUI workflows
(:mod:`comfy_e2e` re-exports it).

* :func:`ui_to_api` turns a UI-format workflow (what the ComfyUI frontend
  saves: ``nodes`` with ``widgets_values``, a ``links`` list) into the API
  prompt format (``{node_id: {"class_type", "inputs"}}``) that ``POST /prompt``
  takes, the way the frontend's ``graphToPrompt`` does it.

The conversion follows ComfyUI_frontend 1.27.10 (the version pinned by ComfyUI
0.3.64's requirements.txt); which widgets a node has and in which order is in
:mod:`comfy_nodes`. The rest of the behaviour it reproduces, and where in the
frontend it comes from:

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

import dataclasses
from typing import Any

from comfy_nodes import (
    _default_value,
    is_valid_connection,
    node_input_slots,
    node_widgets,
    output_types,
)

# LGraphEventMode
MODE_ALWAYS = 0
MODE_NEVER = 2  # "muted"
MODE_BYPASS = 4

#: Node types that exist only in the frontend (``isVirtualNode``).
FRONTEND_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})


class WorkflowError(ValueError):
    """A UI workflow that can't be converted."""


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
