"""LiWi Decompose: image + one mask per object -> layer stack and plain outputs."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..liwi_core.decompose import ORDERS, decompose
from ..liwi_core.engines.classical import ClassicalSettings
from .convert import b1hw_to_mask, bchw_to_image, comfy_progress, image_to_bchw, mask_to_b1hw
from .types import Layers, Model


class LiWiDecompose(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LiWiDecompose",
            display_name="LiWi Decompose",
            category="LiWi",
            description="Split a photo into a clean background, one RGBA layer per masked object and a shadow "
                        "layer per object. The layers recompose exactly to the input.",
            inputs=[
                io.Image.Input("image", tooltip="Photo to split. A batch works: give one mask per image, "
                               "or one mask for all."),
                io.Mask.Input("masks", optional=True,
                              tooltip="One mask per object, 1 = object (mask editor, SAM and LoadImageMask "
                                      "convention). Rough is fine: a box, a loose outline. Front-most first."),
                Model.Input("model", optional=True,
                            tooltip="Learned model from LiWi Load Model. Without it the classical engine runs "
                                    "(masks required); with it and no masks, objects are found automatically."),
                io.Combo.Input("order", options=list(ORDERS), default="given",
                               tooltip="given: first mask is the front-most object. bottom: the object reaching "
                                       "lowest in the frame is in front."),
                io.Boolean.Input("refine_masks", default=True,
                                 tooltip="Snap rough masks to the object with GrabCut. Turn off for exact masks."),
                io.Int.Input("edge_radius", default=0, min=0, max=256,
                             tooltip="Half-width in pixels of the soft-edge band (hair, fur). 0 = automatic."),
                io.Float.Input("shadow_reach", default=0.5, min=0.0, max=4.0, step=0.05,
                               tooltip="How far from an object its shadow is looked for, as a fraction of the "
                                       "object's size. 0 = no shadow layers."),
                io.Float.Input("shadow_threshold", default=0.06, min=0.0, max=0.5, step=0.01,
                               tooltip="Darkening weaker than this is treated as texture, not shadow."),
                io.Combo.Input("shadow_channels", options=["grey", "colour"], default="grey",
                               tooltip="grey: one attenuation for R, G, B. colour: tinted shadows."),
                io.Int.Input("max_objects", default=4, min=1, max=32,
                             tooltip="Automatic mode (model, no masks): at most this many layers."),
            ],
            outputs=[
                Layers.Output("layers", tooltip="The layer stack, for Recompose, Shadow Layer and Save Layers."),
                io.Image.Output("background", tooltip="Clean background with objects and shadows removed."),
                io.Image.Output("foregrounds", tooltip="Object colours, one image per layer (back to front, "
                                "per input image)."),
                io.Mask.Output("foreground_alphas", tooltip="Object alphas, 1 = object. JoinImageWithAlpha "
                               "wants 1 - alpha: put InvertMask in between."),
                io.Image.Output("shadow", tooltip="All shadow maps multiplied (white = no shadow)."),
                io.Mask.Output("hole", tooltip="1 where the background was invented under objects: "
                               "feed it to an inpainting model to regenerate those parts."),
            ],
        )

    @classmethod
    def execute(cls, image, order, refine_masks, edge_radius, shadow_reach, shadow_threshold,
                shadow_channels, max_objects=4, masks=None, model=None) -> io.NodeOutput:
        img = image_to_bchw(image)
        m = None if masks is None else mask_to_b1hw(masks)
        settings = ClassicalSettings(refine=refine_masks, edge_radius=edge_radius, shadow_reach=shadow_reach,
                                     shadow_threshold=shadow_threshold,
                                     shadow_channels=3 if shadow_channels == "colour" else 1)
        if model is not None:
            img, m = img.to(model.device), None if m is None else m.to(model.device)
        stack = decompose(img, m, settings, order=order, progress=comfy_progress(), model=model,
                          max_objects=max_objects)
        if stack.layers:
            fg = torch.cat([torch.stack([l.rgba[b] for l in stack.layers]) for b in range(stack.batch)])
        else:
            fg = torch.zeros((0, 4) + stack.size)
        return io.NodeOutput(stack, bchw_to_image(stack.background), bchw_to_image(fg[:, :3]),
                             b1hw_to_mask(fg[:, 3:4]), bchw_to_image(stack.combined_shadow()),
                             b1hw_to_mask(stack.hole))
