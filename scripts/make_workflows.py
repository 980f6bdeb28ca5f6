"""Write the example workflows in workflows/ (ComfyUI's UI format, to drag into ComfyUI).

    python scripts/make_workflows.py

Widget values follow each node's input order (required, then optional), as the frontend
saves them; tests/test_workflows.py checks them against the node definitions.
"""

from __future__ import annotations

import json
from pathlib import Path

from liwi_core.engines import DEFAULT_ENGINE
from liwi_core.engines.refined import APPENDED_OPTIONS, LEADING_OPTIONS, RefinedSettings
from liwi_core.proposals import FIND_OBJECTS_OPTIONS, ProposalSettings
from liwi_core.options import widget_defaults

OUT = Path(__file__).resolve().parent.parent / "workflows"


class Graph:
    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def node(self, type_: str, pos, widgets=(), inputs=(), outputs=(), title=None) -> int:
        nid = len(self.nodes) + 1
        node = {
            "id": nid, "type": type_, "pos": list(pos), "size": [300, 120], "flags": {}, "order": nid - 1,
            "mode": 0, "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": type_}, "widgets_values": list(widgets),
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return nid

    def link(self, src: int, src_slot: int, dst: int, dst_name: str) -> None:
        lid = len(self.links) + 1
        src_node, dst_node = self.nodes[src - 1], self.nodes[dst - 1]
        type_ = src_node["outputs"][src_slot]["type"]
        slot = next(i for i, inp in enumerate(dst_node["inputs"]) if inp["name"] == dst_name)
        dst_node["inputs"][slot]["link"] = lid
        src_node["outputs"][src_slot]["links"].append(lid)
        self.links.append([lid, src, src_slot, dst, slot, type_])

    def note(self, text: str, pos) -> None:
        self.node("Note", pos, widgets=[text])

    def save(self, name: str) -> None:
        data = {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {}, "version": 0.4}
        OUT.mkdir(exist_ok=True)
        (OUT / name).write_text(json.dumps(data, indent=1) + "\n")


DECOMPOSE_OUT = [("layers", "LIWI_LAYERS"), ("background", "IMAGE"), ("foregrounds", "IMAGE"),
                 ("foreground_alphas", "MASK"), ("shadow", "IMAGE"), ("hole", "MASK"), ("message", "STRING")]
DECOMPOSE_WIDGETS = ["given", *widget_defaults(RefinedSettings, LEADING_OPTIONS),
                     *widget_defaults(ProposalSettings, ("max_objects",)), DEFAULT_ENGINE,
                     *widget_defaults(RefinedSettings, APPENDED_OPTIONS), "drawn"]


def load_pair(g: Graph, name: str, y: int = 0) -> tuple[int, int]:
    image = g.node("LoadImage", (0, y), widgets=[f"{name}.png", "image"],
                   outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")])
    mask = g.node("LoadImageMask", (0, y + 380), widgets=[f"{name}_mask.png", "red", "image"],
                  outputs=[("MASK", "MASK")], title="Load object mask (white = object)")
    return image, mask


def decompose(g: Graph, image: int, mask: int, pos=(360, 100), mask_kind: str = "drawn") -> int:
    node = g.node("LiWiDecompose", pos, widgets=[*DECOMPOSE_WIDGETS[:-1], mask_kind],
                  inputs=[("image", "IMAGE"), ("masks", "MASK")], outputs=DECOMPOSE_OUT)
    g.link(image, 0, node, "image")
    g.link(mask, 0, node, "masks")
    return node


def save_layers(g: Graph, source: int, prefix: str, pos, fmt: str = "psd+png") -> int:
    """LiWi Save Layers fed by output 0 (the stack) of ``source``."""
    node = g.node("LiWiSaveLayers", pos, widgets=[prefix, fmt], inputs=[("layers", "LIWI_LAYERS")])
    g.link(source, 0, node, "layers")
    return node


def decompose_to_psd() -> None:
    g = Graph()
    image, mask = load_pair(g, "coffee")
    dec = decompose(g, image, mask)
    save_layers(g, dec, "LiWi/coffee", (760, 0))
    # the object as an RGBA cut-out through the core nodes: JoinImageWithAlpha wants 1 - alpha
    inv = g.node("InvertMask", (760, 300), inputs=[("mask", "MASK")], outputs=[("MASK", "MASK")])
    g.link(dec, 3, inv, "mask")
    join = g.node("JoinImageWithAlpha", (1000, 300), inputs=[("image", "IMAGE"), ("alpha", "MASK")],
                  outputs=[("IMAGE", "IMAGE")])
    g.link(dec, 2, join, "image")
    g.link(inv, 0, join, "alpha")
    cut = g.node("SaveImage", (1250, 300), widgets=["LiWi/coffee_cutout"], inputs=[("images", "IMAGE")])
    g.link(join, 0, cut, "images")
    bg = g.node("SaveImage", (1000, 600), widgets=["LiWi/coffee_background"], inputs=[("images", "IMAGE")])
    g.link(dec, 1, bg, "images")
    g.note("Copy example_images/coffee.png and coffee_mask.png into ComfyUI/input. The PSD opens in "
           "Photoshop, Krita or GIMP: each object over its shadow (a Multiply layer) over the clean background.",
           (0, 760))
    g.save("decompose_to_psd.json")


def move_object() -> None:
    g = Graph()
    image, mask = load_pair(g, "coffee")
    dec = decompose(g, image, mask)
    rec = g.node("LiWiRecomposeLayers", (760, 100), widgets=[0, True, -140.0, 0.0, 1.0, 1.0, ""],
                 inputs=[("layers", "LIWI_LAYERS")],
                 outputs=[("image", "IMAGE"), ("layers", "LIWI_LAYERS"), ("canvas_alpha", "MASK")])
    g.link(dec, 0, rec, "layers")
    save = g.node("SaveImage", (1120, 100), widgets=["LiWi/coffee_moved"], inputs=[("images", "IMAGE")])
    g.link(rec, 0, save, "images")
    g.note("Layer 0 (the cup) moves 140 px left and takes its shadow along; the background under it was "
           "filled by the default (refined) engine.", (0, 760))
    g.save("move_object_with_shadow.json")


def inpaint_background() -> None:
    g = Graph()
    image, mask = load_pair(g, "coffee")
    dec = decompose(g, image, mask)
    ckpt = g.node("CheckpointLoaderSimple", (360, 600), widgets=["512-inpainting-ema.safetensors"],
                  outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")])
    pos = g.node("CLIPTextEncode", (760, 500), widgets=["an empty wooden table, photo, natural light"],
                 inputs=[("clip", "CLIP")], outputs=[("CONDITIONING", "CONDITIONING")])
    neg = g.node("CLIPTextEncode", (760, 700), widgets=["cup, saucer, object, blurry"],
                 inputs=[("clip", "CLIP")], outputs=[("CONDITIONING", "CONDITIONING")])
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    enc = g.node("VAEEncodeForInpaint", (760, 100), widgets=[8],
                 inputs=[("pixels", "IMAGE"), ("vae", "VAE"), ("mask", "MASK")], outputs=[("LATENT", "LATENT")])
    g.link(dec, 1, enc, "pixels")
    g.link(ckpt, 2, enc, "vae")
    g.link(dec, 5, enc, "mask")
    ks = g.node("KSampler", (1120, 100), widgets=[42, "fixed", 25, 7.0, "euler", "normal", 1.0],
                inputs=[("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                        ("latent_image", "LATENT")], outputs=[("LATENT", "LATENT")])
    g.link(ckpt, 0, ks, "model")
    g.link(pos, 0, ks, "positive")
    g.link(neg, 0, ks, "negative")
    g.link(enc, 0, ks, "latent_image")
    vd = g.node("VAEDecode", (1480, 100), inputs=[("samples", "LATENT"), ("vae", "VAE")], outputs=[("IMAGE", "IMAGE")])
    g.link(ks, 0, vd, "samples")
    g.link(ckpt, 2, vd, "vae")
    fill = g.node("LiWiFillBackground", (1760, 100), widgets=[6, True],
                  inputs=[("layers", "LIWI_LAYERS"), ("fill", "IMAGE")],
                  outputs=[("layers", "LIWI_LAYERS"), ("background", "IMAGE")])
    g.link(dec, 0, fill, "layers")
    g.link(vd, 0, fill, "fill")
    save_layers(g, fill, "LiWi/coffee_filled", (2100, 100))
    save = g.node("SaveImage", (2100, 400), widgets=["LiWi/coffee_new_background"], inputs=[("images", "IMAGE")])
    g.link(fill, 1, save, "images")
    g.note("The hole mask (1 = background invented under the object) goes to the core inpainting nodes; Fill "
           "Background puts the generated fill into the stack's hole (colour-matched, feathered, exact elsewhere). "
           "Needs an inpainting checkpoint in models/checkpoints (e.g. SD 2 512-inpainting-ema.safetensors).",
           (0, 760))
    g.save("inpaint_background.json")


def add_synthesize() -> None:
    g = Graph()
    image, mask = load_pair(g, "coffee")
    add = g.node("LiWiADDSynthesize", (360, 100), widgets=[4, 1, 0, "fixed", 384, "LiWi/add_dataset"],
                 inputs=[("images", "IMAGE"), ("masks", "MASK")],
                 outputs=[("composites", "IMAGE"), ("layers", "LIWI_LAYERS"), ("preview", "IMAGE")])
    g.link(image, 0, add, "images")
    g.link(mask, 0, add, "masks")
    prev = g.node("SaveImage", (760, 100), widgets=["LiWi/add_preview"], inputs=[("images", "IMAGE")])
    g.link(add, 2, prev, "images")
    g.note("ADD: the cup is cut out, its photo cleaned, and new layered samples are composed with "
           "harmonised colour and cast shadows; the curator rejects bad ones. Samples are also written "
           "to output/LiWi/add_dataset in the training dataset format. Add more photos to the batch for variety.",
           (0, 760))
    g.save("add_synthesize.json")


def automatic_mode() -> None:
    g = Graph()
    image = g.node("LoadImage", (0, 0), widgets=["coffee.png", "image"], outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")])
    model = g.node("LiWiLoadModel", (0, 380), widgets=["liwi-default (bundled)"], outputs=[("model", "LIWI_MODEL")])
    dec = g.node("LiWiDecompose", (360, 100), widgets=DECOMPOSE_WIDGETS,
                 inputs=[("image", "IMAGE"), ("masks", "MASK"), ("model", "LIWI_MODEL")], outputs=DECOMPOSE_OUT)
    g.link(image, 0, dec, "image")
    g.link(model, 0, dec, "model")
    save_layers(g, dec, "LiWi/automatic", (760, 100))
    g.note("Automatic mode: no mask, the learned model finds the objects (up to max_objects). The bundled default "
           "checkpoint ships with the pack; your own (config.json + .safetensors, from training/train.py) go in "
           "models/liwi/<name>.", (0, 760))
    g.save("automatic_mode.json")


def find_objects() -> None:
    g = Graph()
    image = g.node("LoadImage", (0, 0), widgets=["astronaut.png", "image"], outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")])
    find = g.node("LiWiFindObjects", (360, 0), widgets=widget_defaults(ProposalSettings, FIND_OBJECTS_OPTIONS),
                  inputs=[("image", "IMAGE")], outputs=[("masks", "MASK"), ("saliency", "MASK"), ("count", "INT"),
                                                         ("message", "STRING"), ("offered", "MASK")])
    g.link(image, 0, find, "image")
    dec = decompose(g, image, find, pos=(760, 0), mask_kind="found")
    save_layers(g, dec, "LiWi/found", (1160, 0))
    preview = g.node("MaskToImage", (360, 320), inputs=[("mask", "MASK")], outputs=[("IMAGE", "IMAGE")])
    g.link(find, 1, preview, "mask")
    sal = g.node("SaveImage", (360, 420), widgets=["LiWi/found_saliency"], inputs=[("images", "IMAGE")])
    g.link(preview, 0, sal, "images")
    pieces = g.node("MaskToImage", (1160, 420), inputs=[("mask", "MASK")], outputs=[("IMAGE", "IMAGE")],
                    title="offered cuts (white = piece)")
    g.link(find, 4, pieces, "mask")
    shown = g.node("PreviewImage", (1160, 520), inputs=[("images", "IMAGE")])
    g.link(pieces, 0, shown, "images")
    g.note("Find Objects proposes one rough mask per salient object (front-most first). Edit or drop masks before "
           "Decompose if you like (e.g. with mask nodes); Decompose's mask_kind 'found' decomposes them as "
           "automatic mode does its own, so unedited masks give the layers that Decompose with no mask at all "
           "gives (it runs the same search inside). When nothing stands out, Find Objects says so in its message. "
           "Where an object may hold another in front of it (here the helmet she holds), it offers the cut: its "
           "message numbers the offered pieces (its offered output shows them) and split takes them (type 1 and "
           "queue again).",
           (0, 760))
    g.save("find_objects.json")


def remove_background() -> None:
    """ComfyUI 0.29's own background removal (BiRefNet) as the object mask."""
    g = Graph()
    image = g.node("LoadImage", (0, 0), widgets=["coffee.png", "image"], outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")])
    model = g.node("LoadBackgroundRemovalModel", (0, 380), widgets=["birefnet.safetensors"],
                   outputs=[("bg_model", "BACKGROUND_REMOVAL")])
    remove = g.node("RemoveBackground", (360, 300), inputs=[("bg_removal_model", "BACKGROUND_REMOVAL"), ("image", "IMAGE")],
                    outputs=[("mask", "MASK")])
    g.link(model, 0, remove, "bg_removal_model")
    g.link(image, 0, remove, "image")
    dec = decompose(g, image, remove, pos=(720, 100))
    save_layers(g, dec, "LiWi/removed", (1100, 100))
    g.note("ComfyUI 0.29's RemoveBackground gives the foreground probability (1 = object), the convention LiWi "
           "Decompose takes: no InvertMask. Needs models/background_removal/birefnet.safetensors "
           "(Comfy-Org/BiRefNet). RemoveBackground finds one foreground; Decompose adds the exact alpha, the "
           "shadow and the clean background.", (0, 760))
    g.save("remove_background_decompose.json")


def qwen_layered() -> None:
    """Core's Qwen-Image-Layered graph, flat, with the template's settings, into exact layers."""
    g = Graph()
    image = g.node("LoadImage", (0, 0), widgets=["coffee.png", "image"], outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")])
    scale = g.node("ImageScaleToMaxDimension", (0, 380), widgets=["lanczos", 640], inputs=[("image", "IMAGE")],
                   outputs=[("IMAGE", "IMAGE")])
    g.link(image, 0, scale, "image")
    unet = g.node("UNETLoader", (0, 560), widgets=["qwen_image_layered_bf16.safetensors", "default"],
                  outputs=[("MODEL", "MODEL")])
    clip = g.node("CLIPLoader", (0, 700), widgets=["qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_image", "default"],
                  outputs=[("CLIP", "CLIP")])
    vae = g.node("VAELoader", (0, 840), widgets=["qwen_image_layered_vae.safetensors"], outputs=[("VAE", "VAE")])
    shift = g.node("ModelSamplingAuraFlow", (360, 560), widgets=[1], inputs=[("model", "MODEL")],
                   outputs=[("MODEL", "MODEL")])
    g.link(unet, 0, shift, "model")
    pos = g.node("CLIPTextEncode", (360, 0), widgets=[""], inputs=[("clip", "CLIP")],
                 outputs=[("CONDITIONING", "CONDITIONING")])
    neg = g.node("CLIPTextEncode", (360, 200), widgets=[""], inputs=[("clip", "CLIP")],
                 outputs=[("CONDITIONING", "CONDITIONING")])
    g.link(clip, 0, pos, "clip")
    g.link(clip, 0, neg, "clip")
    enc = g.node("VAEEncode", (360, 380), inputs=[("pixels", "IMAGE"), ("vae", "VAE")], outputs=[("LATENT", "LATENT")])
    g.link(scale, 0, enc, "pixels")
    g.link(vae, 0, enc, "vae")
    ref_pos = g.node("ReferenceLatent", (720, 0), inputs=[("conditioning", "CONDITIONING"), ("latent", "LATENT")],
                     outputs=[("CONDITIONING", "CONDITIONING")])
    ref_neg = g.node("ReferenceLatent", (720, 200), inputs=[("conditioning", "CONDITIONING"), ("latent", "LATENT")],
                     outputs=[("CONDITIONING", "CONDITIONING")])
    g.link(pos, 0, ref_pos, "conditioning")
    g.link(enc, 0, ref_pos, "latent")
    g.link(neg, 0, ref_neg, "conditioning")
    g.link(enc, 0, ref_neg, "latent")
    size = g.node("GetImageSize", (360, 700), inputs=[("image", "IMAGE")],
                  outputs=[("width", "INT"), ("height", "INT"), ("batch_size", "INT")])
    g.link(scale, 0, size, "image")
    empty = g.node("EmptyQwenImageLayeredLatentImage", (720, 400), widgets=[640, 640, 2, 1],
                   inputs=[("width", "INT"), ("height", "INT")], outputs=[("LATENT", "LATENT")])
    g.link(size, 0, empty, "width")
    g.link(size, 1, empty, "height")
    ks = g.node("KSampler", (1080, 100), widgets=[0, "fixed", 20, 2.5, "euler", "simple", 1.0],
                inputs=[("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                        ("latent_image", "LATENT")], outputs=[("LATENT", "LATENT")])
    g.link(shift, 0, ks, "model")
    g.link(ref_pos, 0, ks, "positive")
    g.link(ref_neg, 0, ks, "negative")
    g.link(empty, 0, ks, "latent_image")
    cut = g.node("LatentCutToBatch", (1440, 100), widgets=["t", 1], inputs=[("samples", "LATENT")],
                 outputs=[("LATENT", "LATENT")])
    g.link(ks, 0, cut, "samples")
    decode = g.node("VAEDecode", (1440, 300), inputs=[("samples", "LATENT"), ("vae", "VAE")],
                    outputs=[("IMAGE", "IMAGE")])
    g.link(cut, 0, decode, "samples")
    g.link(vae, 0, decode, "vae")
    bridge = g.node("LiWiLayersFromImages", (1800, 100), widgets=[True],
                    inputs=[("image", "IMAGE"), ("layer_images", "IMAGE"), ("layer_masks", "MASK")],
                    outputs=[("layers", "LIWI_LAYERS"), ("message", "STRING")])
    g.link(image, 0, bridge, "image")
    g.link(decode, 0, bridge, "layer_images")
    save_layers(g, bridge, "LiWi/qwen_layers", (2160, 100), "psd")
    g.note("Core's Qwen-Image-Layered graph (ComfyUI 0.29; the template's settings: 640 px, 2 layers, 20 steps, "
           "CFG 2.5) made flat, then LiWi Layers From Images: the layers come back at the photo's own size, exact "
           "to its pixels, with shadows. Needs models/diffusion_models/qwen_image_layered_bf16.safetensors, "
           "models/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors and "
           "models/vae/qwen_image_layered_vae.safetensors.", (0, 1000))
    g.save("qwen_layered_to_psd.json")


if __name__ == "__main__":
    remove_background()
    qwen_layered()
    find_objects()
    automatic_mode()
    add_synthesize()
    decompose_to_psd()
    move_object()
    inpaint_background()
    print(f"wrote workflows to {OUT}")
