"""ComfyUI-LiWi: ComfyUI's entry point (``comfy_entrypoint``, the V3 extension API).

Only ``comfy_entrypoint`` and ``WEB_DIRECTORY`` are exported (no ``NODE_CLASS_MAPPINGS``:
ComfyUI would then ignore the entry point). Outside ComfyUI (pytest, the CLI) ComfyUI's modules are
absent and nothing here is imported.
"""

#: the frontend extension (the layer panel, web/liwi_layers.js); ComfyUI serves it at /extensions/<folder>/
WEB_DIRECTORY = "./web"

try:
    from comfy_api.latest import ComfyExtension  # noqa: F401
except ImportError:  # not running inside ComfyUI
    ComfyExtension = None

if ComfyExtension is not None:
    import os

    import folder_paths

    from .nodes import LiWiExtension

    # checkpoints of the learned engine live in models/liwi (extra_model_paths.yaml can add more)
    folder_paths.add_model_folder_path("liwi", os.path.join(folder_paths.models_dir, "liwi"))

    async def comfy_entrypoint() -> LiWiExtension:
        return LiWiExtension()
