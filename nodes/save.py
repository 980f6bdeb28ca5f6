"""LiWi Save Layers: write a stack as PSD, OpenRaster and/or PNGs + JSON into ComfyUI's output folder."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..liwi_core.export import save_formats
from ..liwi_core.imageio import save_image
from .paths import output_path
from .types import Layers

#: the format list the node offers -> the formats written
FORMATS = {"psd": ("psd",), "ora": ("ora",), "png": ("png",), "psd+png": ("psd", "png"), "all": ("psd", "ora", "png")}


class LiWiSaveLayers(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LiWiSaveLayers",
            display_name="LiWi Save Layers",
            category="LiWi",
            description="Save the layer stack into ComfyUI's output folder: a layered PSD (shadows as Multiply "
                        "layers), an OpenRaster .ora (Krita, GIMP), and/or a folder of PNGs with layers.json.",
            inputs=[
                Layers.Input("layers", tooltip="Layer stack to save."),
                io.String.Input("filename_prefix", default="LiWi/layers",
                                tooltip="Path inside the output folder; a counter is added. Absolute paths and '..' "
                                        "are refused."),
                io.Combo.Input("format", options=list(FORMATS), default="psd+png",
                               tooltip="psd: Photoshop/Krita/GIMP. ora: OpenRaster. png: background.png, "
                                       "layer_NN.png, shadow_NN.png and layers.json in a folder."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, layers, filename_prefix, format) -> io.NodeOutput:
        # ComfyUI's own check below follows no symlinks and raises a multi-line message
        output_path(filename_prefix, "filename_prefix")
        out_dir = folder_paths.get_output_directory()
        h, w = layers.size
        full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, out_dir, w, h)
        previews = []
        for stack in layers.split():
            base = f"{filename}_{counter:05}"
            save_formats(stack, os.path.join(full_folder, base), FORMATS[format])
            preview = base + "_composite.png"
            save_image(stack.to_image(), os.path.join(full_folder, preview))
            previews.append({"filename": preview, "subfolder": subfolder, "type": "output"})
            counter += 1
        return io.NodeOutput(ui={"images": previews})
