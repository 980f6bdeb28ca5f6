"""LiWi Decompose: image + one mask per object -> layer stack and plain outputs."""

from __future__ import annotations

from comfy_api.latest import io

from ..liwi_core.decompose import MASK_KINDS, ORDERS, decompose
from ..liwi_core.engines import DEFAULT_ENGINE, create
from ..liwi_core.engines.learned import LearnedSettings
from ..liwi_core.engines.refined import APPENDED_OPTIONS, LEADING_OPTIONS, RefinedSettings
from ..liwi_core.proposals import ProposalSettings
from .convert import b1hw_to_mask, bchw_to_image, comfy_progress, image_to_bchw, mask_to_b1hw
from .options import settings_from_widgets, settings_inputs
from .panel import panel_ui
from .types import Layers, Model

#: automatic mode's widget here; Find Objects shows them all
FIND_WIDGETS = ("max_objects",)
#: engines Decompose runs without a model input; the refined engine's widgets are the classical ones
ENGINES = ("refined", "classical")


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
                              tooltip="One mask per object, 1 = object (mask editor, SAM, LoadImageMask and "
                                      "LiWi Find Objects convention). Rough is fine: a box, a loose outline. "
                                      "Front-most first. Without masks the objects are found automatically."),
                Model.Input("model", optional=True,
                            tooltip="Learned model from LiWi Load Model. Without it the engine chosen below runs."),
                io.Combo.Input("order", options=list(ORDERS), default="given",
                               tooltip="given: first mask is the front-most object. bottom: the object reaching "
                                       "lowest in the frame is in front."),
                *settings_inputs(RefinedSettings, LEADING_OPTIONS, prefix_tooltip="Refined and classical engines (no model): "),
                *settings_inputs(ProposalSettings, FIND_WIDGETS, prefix_tooltip="No mask (automatic mode): "),
                # last, so workflows saved before it keep their widget values in place
                io.Combo.Input("engine", options=list(ENGINES), default=DEFAULT_ENGINE,
                               tooltip="Without a model: refined = the classical engine's layers corrected by the "
                                       "bundled refiner network (liwi-refiner); classical = no network at all."),
                *settings_inputs(RefinedSettings, APPENDED_OPTIONS, prefix_tooltip="Refined and classical engines (no model): "),
                io.Combo.Input("mask_kind", options=list(MASK_KINDS), default="drawn",
                               tooltip="What the masks are. drawn: painted, a box, or from SAM or background "
                                       "removal; a brush off the object's edges by an even margin is moved onto "
                                       "them. found: from LiWi Find Objects, edited or not; decomposed as automatic "
                                       "mode decomposes its own, so unedited masks give its layers."),
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
                io.String.Output("message", tooltip="How many layers came out; without masks, what automatic mode "
                                 "found in each image, or why nothing was found."),
            ],
        )

    @classmethod
    def execute(cls, image, order, masks=None, model=None, engine=DEFAULT_ENGINE, mask_kind="drawn",
                **widgets) -> io.NodeOutput:
        img = image_to_bchw(image)
        m = None if masks is None else mask_to_b1hw(masks)
        if model is not None:
            chosen = create("learned", model=model, settings=settings_from_widgets(LearnedSettings, widgets))
            img, m = img.to(chosen.device), None if m is None else m.to(chosen.device)
        else:
            settings = settings_from_widgets(RefinedSettings, widgets)
            chosen = create("refined", settings=settings) if engine == "refined" else create(
                "classical", settings=settings.classical())
        stack = decompose(img, m, chosen, order=order, progress=comfy_progress(),
                          find=settings_from_widgets(ProposalSettings, widgets), mask_kind=mask_kind)
        fg = stack.layer_images()
        message = f"{len(stack.layers)} layer(s)"
        if stack.meta.get("found"):
            message += "; " + "; ".join(stack.meta["found"])
        return io.NodeOutput(stack, bchw_to_image(stack.background), bchw_to_image(fg[:, :3]),
                             b1hw_to_mask(fg[:, 3:4]), bchw_to_image(stack.combined_shadow()),
                             b1hw_to_mask(stack.hole), message,
                             ui={"text": [message], **panel_ui(stack, source="decompose")})
