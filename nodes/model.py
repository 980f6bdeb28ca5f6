"""LiWi Load Model: a LiWiNet checkpoint from ComfyUI/models/liwi."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..liwi_core.engines.learned import load_model
from ..liwi_core.errors import LiWiError
from .types import Model


def _checkpoints() -> list[str]:
    """Checkpoint folders (with a config.json) under every registered liwi model path."""
    found = []
    for base in folder_paths.get_folder_paths("liwi"):
        if os.path.isdir(base):
            for name in sorted(os.listdir(base)):
                if os.path.isfile(os.path.join(base, name, "config.json")):
                    found.append(name)
    return found


class LiWiLoadModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LiWiLoadModel",
            display_name="LiWi Load Model",
            category="LiWi",
            description="Load a learned LiWi decomposer (a folder with config.json and .safetensors in "
                        "models/liwi). Connect it to LiWi Decompose; with no mask it finds objects itself.",
            inputs=[io.Combo.Input("checkpoint", options=_checkpoints(),
                                   tooltip="Checkpoint folder in models/liwi (only .safetensors weights are loaded).")],
            outputs=[Model.Output("model", tooltip="The learned model, for LiWi Decompose.")],
        )

    @classmethod
    def execute(cls, checkpoint) -> io.NodeOutput:
        for base in folder_paths.get_folder_paths("liwi"):
            path = os.path.join(base, checkpoint)
            if os.path.isdir(path):
                import comfy.model_management
                model = load_model(path).to(comfy.model_management.get_torch_device())
                return io.NodeOutput(model)
        raise LiWiError(f"checkpoint '{checkpoint}' not found in models/liwi")
