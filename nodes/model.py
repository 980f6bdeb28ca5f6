"""LiWi Load Model: the bundled default LiWiNet checkpoint or one from ComfyUI/models/liwi."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..liwi_core.engines.learned import DEFAULT_CHECKPOINT, load_model
from ..liwi_core.errors import LiWiError
from .types import Model

BUNDLED = "liwi-default (bundled)"


def _checkpoints() -> list[str]:
    """The bundled default, then checkpoint folders (with a config.json) under every
    registered liwi model path."""
    found = [BUNDLED] if (DEFAULT_CHECKPOINT / "config.json").is_file() else []
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
            description="Load a learned LiWi decomposer: the bundled default or a folder with config.json and "
                        ".safetensors in models/liwi. Connect it to LiWi Decompose; with no mask it finds objects "
                        "itself. The bundled default is a CPU-trained preview, weaker than the classical engine "
                        "when you have masks (see liwi_core/weights/liwi-default/MODEL_CARD.md).",
            inputs=[io.Combo.Input("checkpoint", options=_checkpoints(),
                                   tooltip="The bundled default, or a checkpoint folder in models/liwi (only "
                                           ".safetensors weights are loaded).")],
            outputs=[Model.Output("model", tooltip="The learned model, for LiWi Decompose.")],
        )

    @classmethod
    def execute(cls, checkpoint) -> io.NodeOutput:
        import comfy.model_management

        device = comfy.model_management.get_torch_device()
        if checkpoint == BUNDLED:
            return io.NodeOutput(load_model(DEFAULT_CHECKPOINT).to(device))
        # only names the list offers: a hand-made prompt cannot point the loader elsewhere
        if checkpoint in _checkpoints():
            for base in folder_paths.get_folder_paths("liwi"):
                path = os.path.join(base, checkpoint)
                if os.path.isdir(path):
                    return io.NodeOutput(load_model(path).to(device))
        raise LiWiError(f"checkpoint '{checkpoint}' not found in models/liwi")
