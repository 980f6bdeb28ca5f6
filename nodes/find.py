"""LiWi Find Objects: a photo -> one rough mask per salient object, to inspect or edit before Decompose."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..liwi_core.proposals import ProposalSettings, find_objects
from .convert import b1hw_to_mask, image_to_bchw
from .options import settings_from_widgets, settings_inputs


class LiWiFindObjects(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LiWiFindObjects",
            display_name="LiWi Find Objects",
            category="LiWi",
            description="Find the objects of a photo with a pretrained salient-object network (U-2-Net small): "
                        "one rough mask per object, front-most first, ready for LiWi Decompose. Edit or drop "
                        "masks in between if you like. Says so when nothing stands out.",
            inputs=[
                io.Image.Input("image", tooltip="The photo. With a batch, each image gives its largest object "
                               "(one mask per image, as Decompose takes batches)."),
                *settings_inputs(ProposalSettings),
            ],
            outputs=[
                io.Mask.Output("masks", tooltip="One rough mask per object, 1 = object, front-most first. A single "
                               "empty mask when nothing was found. Into Decompose with its mask_kind set to found, "
                               "they give automatic mode's layers."),
                io.Mask.Output("saliency", tooltip="The network's saliency map, 1 = salient (to judge what it saw)."),
                io.Int.Output("count", tooltip="How many objects were found (0: nothing stands out)."),
                io.String.Output("message", tooltip="What was found, or why nothing was."),
            ],
        )

    @classmethod
    def execute(cls, image, **widgets) -> io.NodeOutput:
        settings = settings_from_widgets(ProposalSettings, widgets)
        images = image_to_bchw(image)
        found = [find_objects(images[b:b + 1], settings) for b in range(images.shape[0])]
        saliency = torch.cat([f.saliency for f in found])
        if images.shape[0] == 1:
            masks, count, message = found[0].masks, len(found[0].masks), found[0].message
        else:  # one object per image: each image's largest
            empty = torch.zeros_like(saliency[:1])
            masks = torch.cat([max(f.masks, key=lambda m: float(m.sum()))[None] if len(f.masks) else empty
                               for f in found])
            count = sum(1 for f in found if len(f.masks))
            message = "; ".join(f"image {b}: {f.message}" for b, f in enumerate(found))
        if not len(masks):
            masks = torch.zeros_like(saliency[:1])
        return io.NodeOutput(b1hw_to_mask(masks), b1hw_to_mask(saliency), count, message,
                             ui={"text": [message]})
