"""LiWi Find Objects: a photo -> one rough mask per salient object, to inspect or edit before Decompose."""

from __future__ import annotations

from dataclasses import replace

import torch
from comfy_api.latest import io

from ..liwi_core.errors import LiWiError
from ..liwi_core.proposals import FIND_OBJECTS_OPTIONS, ProposalSettings, find_objects
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
                        "masks in between if you like. Says so when nothing stands out. Where an object may "
                        "hold another in front of it (a helmet held before a suit) but it could not tell, it "
                        "offers the cut: see the offered output and the message, and take it with split.",
            inputs=[
                io.Image.Input("image", tooltip="The photo. With a batch, each image gives its largest object "
                               "(one mask per image, as Decompose takes batches)."),
                *settings_inputs(ProposalSettings, FIND_OBJECTS_OPTIONS),
            ],
            outputs=[
                io.Mask.Output("masks", tooltip="One rough mask per object, 1 = object, front-most first. A single "
                               "empty mask when nothing was found. Into Decompose with its mask_kind set to found, "
                               "they give automatic mode's layers."),
                io.Mask.Output("saliency", tooltip="The network's saliency map, 1 = salient (to judge what it saw)."),
                io.Int.Output("count", tooltip="How many objects were found (0: nothing stands out)."),
                io.String.Output("message", tooltip="What was found, or why nothing was, and the cuts offered."),
                io.Mask.Output("offered", tooltip="The pieces offered as cuts, 1 = piece, numbered from 1 in this "
                               "order for split (each a part of one found object that may be an object of its own). "
                               "A single empty mask when none was offered."),
            ],
        )

    @classmethod
    def execute(cls, image, **widgets) -> io.NodeOutput:
        settings = settings_from_widgets(ProposalSettings, widgets)
        images = image_to_bchw(image)
        if images.shape[0] > 1 and settings.split.strip():
            raise LiWiError("split takes cuts offered in one photo: give Find Objects one image, not a batch")
        settings = replace(settings, offer_cuts=images.shape[0] == 1)
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
        offered = found[0].offered if images.shape[0] == 1 and len(found[0].offered) else torch.zeros_like(saliency[:1])
        return io.NodeOutput(b1hw_to_mask(masks), b1hw_to_mask(saliency), count, message, b1hw_to_mask(offered),
                             ui={"text": [message]})
