"""LiWi Layers From Images: a generative layering model's RGBA layers -> a lossless stack at the photo's size."""

from __future__ import annotations

from comfy_api.latest import io

from ..liwi_core.bridge import layers_from_images
from ..liwi_core.errors import LiWiError
from .convert import image_to_bchw, mask_to_b1hw
from .panel import panel_ui
from .types import Layers


class LiWiLayersFromImages(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LiWiLayersFromImages",
            display_name="LiWi Layers From Images",
            category="LiWi",
            description="Turn the RGBA layers of a generative layering model (Qwen-Image-Layered: VAE Decode of "
                        "its latent, cut to a batch) into a LiWi layer stack at the photo's own resolution. The "
                        "generated layers say which pixels belong to which object and what lies behind it; the "
                        "colours, alpha edges and shadows come from the photo, so the stack recomposes to it "
                        "exactly. The generated background is used only in the hole under the objects.",
            inputs=[
                io.Image.Input("image", tooltip="The original photo the layers were generated from (one image). "
                               "The stack has its size and recomposes to it exactly."),
                io.Image.Input("layer_images", tooltip="The generated layers as one batch, in the model's order "
                               "(back to front; Qwen-Image-Layered: the whole image first, then the background, "
                               "then the objects). RGBA when they have 4 channels. Any size with the photo's "
                               "aspect ratio (within 1%)."),
                io.Mask.Input("layer_masks", optional=True,
                              tooltip="One alpha per layer image, 1 = opaque: used when the layer images are RGB "
                                      "(and in place of their alpha when they are RGBA). A MASK from LoadImage is "
                                      "1 - alpha: put InvertMask in between."),
                io.Boolean.Input("drop_first", default=True,
                                 tooltip="Drop the first image of the batch: Qwen-Image-Layered's first slot is "
                                         "the regenerated whole image, not a layer."),
            ],
            outputs=[
                Layers.Output("layers", tooltip="The layer stack at the photo's size (layers named slot_K after "
                              "the batch index they came from), for Recompose, Shadow Layer and Save Layers."),
                io.String.Output("message", tooltip="What was done with each slot: which were dropped and why "
                                 "(empty, blank plate, whole image), which is the background, the order."),
            ],
        )

    @classmethod
    def execute(cls, image, layer_images, drop_first=True, layer_masks=None) -> io.NodeOutput:
        img = image_to_bchw(image)
        if img.shape[0] != 1:
            raise LiWiError(f"give one image (got a batch of {img.shape[0]}): the layers belong to one photo")
        if img.shape[1] != 3:
            img = img[:, :3] if img.shape[1] == 4 else img[:, :1].expand(-1, 3, -1, -1)
        gen = image_to_bchw(layer_images)
        alpha = None if layer_masks is None else mask_to_b1hw(layer_masks)
        stack, messages = layers_from_images(img, gen, alpha=alpha, drop_first=drop_first)
        text = "\n".join(messages)
        return io.NodeOutput(stack, text, ui={"text": [text], **panel_ui(stack, source="layers_from_images")})
