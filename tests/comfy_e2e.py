"""Support code for testing ComfyUI workflows: offline checks and a real server.

Standard library only (HTTP through urllib), so both the offline workflow
check and the server helpers run in the project's own venv. This module only
re-exports the public names of:

* :mod:`comfy_nodes`: node definitions (``GET /object_info``) as the frontend
  sees them: widgets, input sockets, link type rules;
* :mod:`comfy_workflow`: :func:`ui_to_api`, UI-format workflow -> API prompt
  format, the way the frontend's ``graphToPrompt`` does it;
* :mod:`comfy_check`: :func:`check_workflow` / :func:`workflow_problems`, what
  is wrong with a UI workflow against an object_info schema;
* :mod:`comfy_server`: :func:`start_server` / :func:`post_and_wait`, a real
  ComfyUI server on 127.0.0.1 and prompts executed on it.
"""

from __future__ import annotations

from comfy_check import (
    MODEL_FILE_EXTENSIONS,
    Problem,
    check_workflow,
    node_types_used,
    workflow_problems,
)
from comfy_nodes import (
    WIDGET_TYPES,
    InputSlot,
    Widget,
    combo_options,
    is_valid_connection,
    node_input_slots,
    node_widgets,
    ordered_inputs,
    output_types,
    spec_type,
)
from comfy_server import (
    PromptError,
    Server,
    ServerError,
    free_port,
    http_json,
    import_failures,
    log_tail,
    make_custom_nodes_dir,
    output_files,
    post_and_wait,
    start_server,
)
from comfy_workflow import (
    FRONTEND_ONLY_TYPES,
    MODE_ALWAYS,
    MODE_BYPASS,
    MODE_NEVER,
    Link,
    WorkflowError,
    ui_to_api,
)

__all__ = [
    # comfy_nodes
    "WIDGET_TYPES", "InputSlot", "Widget", "combo_options", "is_valid_connection",
    "node_input_slots", "node_widgets", "ordered_inputs", "output_types", "spec_type",
    # comfy_workflow
    "FRONTEND_ONLY_TYPES", "MODE_ALWAYS", "MODE_BYPASS", "MODE_NEVER", "Link",
    "WorkflowError", "ui_to_api",
    # comfy_check
    "MODEL_FILE_EXTENSIONS", "Problem", "check_workflow", "node_types_used", "workflow_problems",
    # comfy_server
    "PromptError", "Server", "ServerError", "free_port", "http_json", "import_failures",
    "log_tail", "make_custom_nodes_dir", "output_files", "post_and_wait", "start_server",
]
