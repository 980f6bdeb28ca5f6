"""LiWi Fill Background: stack + an inpainting of its hole -> the stack with that background."""

from __future__ import annotations

from comfy_api.latest import io

from ..liwi_core.fill import fill_background
from .convert import bchw_to_image, image_to_bchw
from .types import Layers


class LiWiFillBackground(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LiWiFillBackground",
            display_name="LiWi Fill Background",
            category="LiWi",
            description="Use an inpainting model's fill of Decompose's background and hole as the stack's "
                        "background under the objects: colour-matched and feathered at the hole's edge, the "
                        "background outside the hole untouched, and the layers still recomposing to the photo.",
            inputs=[
                Layers.Input("layers", tooltip="Layer stack from LiWi Decompose."),
                io.Image.Input("fill", tooltip="The inpainted background: Decompose's background and hole through "
                               "any inpainting model (e.g. VAEEncodeForInpaint, KSampler, VAEDecode). Another size "
                               "is fine if the aspect ratio is the same; one image fills every image of a batch."),
                io.Int.Input("feather", default=6, min=0, max=64,
                             tooltip="Pixels over which the fill fades in from the hole's edge (0 = hard edge). "
                                     "Only pixels inside the hole change."),
                io.Boolean.Input("colour_match", default=True,
                                 tooltip="Match the fill's colour and contrast to the background just around the "
                                         "hole, so the seam does not show."),
            ],
            outputs=[
                Layers.Output("filled_layers", display_name="layers",
                              tooltip="The stack with the fill in its hole, for Recompose and Save Layers. Layers "
                                      "that are partly transparent over the hole get colours that keep the "
                                      "composite exact."),
                io.Image.Output("background", tooltip="The new clean background."),
            ],
        )

    @classmethod
    def execute(cls, layers, fill, feather, colour_match) -> io.NodeOutput:
        stack = fill_background(layers, image_to_bchw(fill), feather=feather, colour_match=colour_match)
        return io.NodeOutput(stack, bchw_to_image(stack.background))
