"""LiWi Recompose Layers: stack (+ edits) -> image."""

from __future__ import annotations

from dataclasses import replace

from comfy_api.latest import io

from ..liwi_core.layers import LayerEdit, edit_stack, parse_edit
from .convert import b1hw_to_mask, bchw_to_image
from .panel import panel_ui
from .types import Layers


class LiWiRecomposeLayers(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LiWiRecomposeLayers",
            display_name="LiWi Recompose Layers",
            category="LiWi",
            description="Recompose a layer stack into one image, after hiding, moving, scaling or fading layers. "
                        "A moved object takes its shadow along.",
            inputs=[
                Layers.Input("layers", tooltip="Layer stack from LiWi Decompose."),
                io.Int.Input("layer_index", default=-1, min=-1, max=255,
                             tooltip="Layer the widgets below edit (0 = back-most object). -1 = none."),
                io.Boolean.Input("visible", default=True, tooltip="Show this layer and its shadow."),
                io.Float.Input("dx", default=0.0, min=-16384.0, max=16384.0, step=1.0,
                               tooltip="Move right by this many pixels (shadow moves too)."),
                io.Float.Input("dy", default=0.0, min=-16384.0, max=16384.0, step=1.0,
                               tooltip="Move down by this many pixels (shadow moves too)."),
                io.Float.Input("scale", default=1.0, min=0.05, max=20.0, step=0.01,
                               tooltip="Scale about the object's contact point (bottom centre)."),
                io.Float.Input("opacity", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Opacity of the layer and strength of its shadow."),
                io.String.Input("more_edits", default="", multiline=True,
                                tooltip="Edits of other layers, one per line: INDEX:dx=..,dy=..,scale=..,"
                                        "opacity=..,visible=0|1"),
            ],
            outputs=[
                io.Image.Output("image", tooltip="The recomposed image."),
                Layers.Output("edited_layers", display_name="layers", tooltip="The edited stack, for further nodes or Save Layers."),
                io.Mask.Output("canvas_alpha", tooltip="Alpha of an RGBA input (1 = opaque); all ones for RGB."),
            ],
        )

    @classmethod
    def execute(cls, layers, layer_index, visible, dx, dy, scale, opacity, more_edits="") -> io.NodeOutput:
        edits = dict(parse_edit(line.strip()) for line in more_edits.splitlines() if line.strip())
        if layer_index >= 0:
            edits[layer_index] = LayerEdit(visible=visible, dx=dx, dy=dy, scale=scale, opacity=opacity)
        stack = edit_stack(layers, edits) if edits else layers
        rgb = stack.composite()
        alpha = stack.canvas_alpha if stack.canvas_alpha is not None else rgb.new_ones(rgb[:, :1].shape)
        return io.NodeOutput(bchw_to_image(rgb), stack, b1hw_to_mask(alpha), ui=cls.panel(layers, edits) or None)

    @staticmethod
    def panel(layers, edits) -> dict:
        """The layer panel's ``ui``: the stack with every edit but the whole-pixel part of the moves,
        which the panel applies itself (so an object moved off the canvas and dragged back is whole).
        Hidden layers are left out; the panel is told the index (in the widgets' numbering) of the rest."""
        shown = [i for i in range(len(layers.layers)) if edits.get(i, LayerEdit()).visible]
        offsets = {i: (round(e.dx), round(e.dy)) for i, e in edits.items() if e.visible}
        rest = {i: replace(e, dx=e.dx - offsets.get(i, (0, 0))[0], dy=e.dy - offsets.get(i, (0, 0))[1])
                for i, e in edits.items()}
        return panel_ui(edit_stack(layers, rest) if rest else layers, shown, source="recompose", offsets=offsets)
