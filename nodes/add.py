"""LiWi ADD Synthesize: photos (+ object masks) -> layered training samples."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..liwi_core.add.run import synthesize
from ..liwi_core.dataset import write_sample
from ..liwi_core.errors import LiWiError
from ..liwi_core.layers import LayerStack
from .convert import bchw_to_image, image_to_bchw, mask_to_b1hw
from .paths import output_path
from .types import Layers


class LiWiADDSynthesize(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LiWiADDSynthesize",
            display_name="LiWi ADD Synthesize",
            category="LiWi",
            description="Make layered training samples: objects cut from the masked photos are placed on the "
                        "cleaned photos with colour harmonisation and cast shadows; a curator rejects bad ones.",
            inputs=[
                io.Image.Input("images", tooltip="Source photos (a batch). All serve as backgrounds."),
                io.Mask.Input("masks", optional=True,
                              tooltip="One object mask per photo, 1 = object (same count as images). Masked "
                                      "objects are cut out and removed from their photo's background."),
                io.Int.Input("num_samples", default=4, min=1, max=256, tooltip="How many samples to make."),
                io.Int.Input("objects_per_sample", default=1, min=1, max=4,
                             tooltip="Objects (layers) in every sample."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Same seed, same samples."),
                io.Int.Input("size", default=512, min=64, max=2048, step=8,
                             tooltip="Longest side of the samples; photos must share an aspect ratio to batch."),
                io.String.Input("save_folder", default="",
                                tooltip="If set, samples are also written to this folder inside ComfyUI's "
                                        "output folder (the dataset format training reads). Absolute paths "
                                        "and '..' are refused."),
            ],
            outputs=[
                io.Image.Output("composites", tooltip="The flattened samples."),
                Layers.Output("layers", tooltip="Their ground-truth layer stacks (batched)."),
                io.Image.Output("preview", tooltip="Per sample: composite, background, layers over grey, shadows."),
            ],
        )

    @classmethod
    def execute(cls, images, num_samples, objects_per_sample, seed, size, save_folder="", masks=None) -> io.NodeOutput:
        # checked before any work, so a refused folder costs nothing and writes nothing
        root = output_path(save_folder, "save_folder") if save_folder else None
        photos = image_to_bchw(images)[:, :3]
        per_image = None
        if masks is not None:
            m = mask_to_b1hw(masks)
            if m.shape[0] != photos.shape[0]:
                raise LiWiError(f"{photos.shape[0]} images but {m.shape[0]} masks: give one mask per image")
            per_image = [[m[b:b + 1]] if float(m[b].max()) > 0.5 else [] for b in range(photos.shape[0])]
        samples = synthesize(photos, per_image, num_samples, seed, size, objects_per_sample)
        if not samples:
            raise LiWiError("the curator rejected every sample: try bigger objects, other photos or another seed")
        shapes = {tuple(s.composite.shape) for s in samples}
        if len(shapes) > 1:
            raise LiWiError("the samples differ in size (photos of different aspect ratios): give photos of one shape")
        if root is not None:
            for s in samples:
                write_sample(root, s, confined=True)
        stack = LayerStack.concat([s.stack for s in samples], shadow_channels=3)
        over_grey = stack.layers_over(torch.full_like(stack.background, 0.5))
        preview = torch.cat([stack.composite(), stack.background, over_grey, stack.combined_shadow()], dim=-1)
        return io.NodeOutput(bchw_to_image(stack.composite()), stack, bchw_to_image(preview))
