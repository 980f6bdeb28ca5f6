"""LiWi Shadow Layer: estimate an object's shadow from a photo, or synthesize a cast shadow."""

from __future__ import annotations

from comfy_api.latest import io

from ..liwi_core.errors import LiWiError
from ..liwi_core.shadow import estimate_shadow, synthesize_cast_shadow
from .convert import bchw_to_image, image_to_bchw, mask_to_b1hw
from .types import Layers


class LiWiShadowLayer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LiWiShadowLayer",
            display_name="LiWi Shadow Layer",
            category="LiWi",
            description="Estimate the shadow an object casts in a photo, or synthesize a cast shadow from its "
                        "alpha (e.g. after moving it). With a layer stack connected, the chosen layer's shadow "
                        "is replaced.",
            inputs=[
                io.Combo.Input("mode", options=["synthesize", "estimate"], default="synthesize",
                               tooltip="synthesize: project a cast shadow from the object's alpha. estimate: "
                                       "measure the darkening around the object in the image."),
                Layers.Input("layers", optional=True,
                             tooltip="Stack whose layer gets the new shadow; its alpha is the object."),
                io.Int.Input("layer_index", default=0, min=0, max=255,
                             tooltip="Layer of the stack (0 = back-most object)."),
                io.Image.Input("image", optional=True,
                               tooltip="Photo to estimate from (estimate mode; default: the recomposed stack)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Object alpha, 1 = object; used when no stack is connected."),
                io.Float.Input("angle", default=60.0, min=0.0, max=360.0, step=1.0,
                               tooltip="Direction the shadow falls: 0 right, 90 away from the viewer, 180 left, "
                                       "270 toward the viewer."),
                io.Float.Input("length", default=0.6, min=0.0, max=5.0, step=0.05,
                               tooltip="Shadow length as a fraction of the object's height."),
                io.Float.Input("softness", default=0.04, min=0.0, max=1.0, step=0.01,
                               tooltip="Blur at the far end, as a fraction of the object's height."),
                io.Float.Input("opacity", default=0.6, min=0.0, max=1.0, step=0.01,
                               tooltip="Darkness of the cast shadow."),
                io.Float.Input("contact", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="Darkness of the contact shadow at the object's base."),
                io.Float.Input("shadow_reach", default=0.5, min=0.0, max=4.0, step=0.05,
                               tooltip="Estimate mode: how far from the object to look, as a fraction of its size."),
            ],
            outputs=[
                io.Image.Output("shadow", tooltip="Shadow map, white = no shadow (multiply it over the scene)."),
                Layers.Output("layers_with_shadow", display_name="layers", tooltip="The stack with the layer's shadow replaced (if connected)."),
            ],
        )

    @classmethod
    def execute(cls, mode, layer_index, angle, length, softness, opacity, contact, shadow_reach,
                layers=None, image=None, mask=None) -> io.NodeOutput:
        if layers is not None:
            alpha = layers.layer(layer_index).alpha
        elif mask is not None:
            alpha = mask_to_b1hw(mask)
        else:
            raise LiWiError("connect a layer stack or a mask: the shadow needs an object")
        if mode == "estimate":
            if image is not None:
                photo = image_to_bchw(image)[:, :3]
            elif layers is not None:
                photo = layers.composite()
            else:
                raise LiWiError("estimate mode needs an image or a layer stack")
            if photo.shape[-2:] != alpha.shape[-2:]:
                raise LiWiError("image and object alpha differ in size")
            reach = round(shadow_reach * max(alpha.shape[-2:]))
            shadow = estimate_shadow(photo, alpha, reach, channels=3)
        else:
            shadow = synthesize_cast_shadow(alpha, angle, length, softness, opacity, contact)
        return io.NodeOutput(bchw_to_image(shadow), None if layers is None else layers.with_shadow(layer_index, shadow))
