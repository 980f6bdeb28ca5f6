"""Offline tests of tests/comfy_e2e.py: UI -> API conversion and the workflow check.

The node schemas are the real ComfyUI object_info in
tests/fixtures/comfy_core_object_info/0.3.64.json (see test_e2e_comfyui.py), plus a
few made-up node types defined here for cases no core node covers.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import comfy_e2e as ce

# the conversion reproduces frontend 1.27.10, the one ComfyUI 0.3.64 pins
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "comfy_core_object_info" / "0.3.64.json"


@pytest.fixture(scope="module")
def core():
    return json.loads(FIXTURE.read_text())


@pytest.fixture
def oi(core):
    info = copy.deepcopy(core)
    # Made-up types for what the core fixture lacks.
    info["TestIntSource"] = {
        "input": {"required": {}}, "input_order": {"required": []},
        "output": ["INT"], "output_name": ["INT"], "output_node": False, "name": "TestIntSource",
    }
    info["TestAnything"] = {
        "input": {"required": {"value": ["*"]}, "optional": {"seed": ["INT", {"default": 3, "control_after_generate": False}]}},
        "input_order": {"required": ["value"], "optional": ["seed"]},
        "output": [], "output_name": [], "output_node": True, "name": "TestAnything",
    }
    info["TestCombos"] = {
        "input": {"required": {
            "mode": [["a", "b"], {"control_after_generate": True}],
            "count": ["INT", {"default": 1, "min": 1, "max": 8, "forceInput": True}],
            "noise_seed": ["INT", {"default": 0}],
            "tags": ["COMBO", {"options": ["x", "y"], "multi_select": True}],
        }},
        "input_order": {"required": ["mode", "count", "noise_seed", "tags"]},
        "output": ["IMAGE"], "output_name": ["IMAGE"], "output_node": False, "name": "TestCombos",
    }
    return info


# ---------------------------------------------------------------- builders


def node(id, type, widgets_values=None, inputs=(), outputs=(), mode=0, title=None):
    n = {
        "id": id, "type": type, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": id,
        "mode": mode, "properties": {},
        "inputs": [dict(name=i[0], type=i[1], link=i[2], **({"widget": {"name": i[0]}} if len(i) > 3 and i[3] else {}))
                   for i in inputs],
        "outputs": [dict(name=o[0], type=o[1], links=list(o[2])) for o in outputs],
    }
    if widgets_values is not None:
        n["widgets_values"] = widgets_values
    if title:
        n["title"] = title
    return n


def workflow(nodes, links):
    return {
        "last_node_id": max((n["id"] for n in nodes), default=0),
        "last_link_id": max((link[0] for link in links), default=0),
        "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }


def load_save(image="astronaut.png"):
    """LoadImage -> SaveImage, one link."""
    return workflow(
        [
            node(1, "LoadImage", [image, "image"], outputs=[("IMAGE", "IMAGE", [1]), ("MASK", "MASK", [])]),
            node(2, "SaveImage", ["liwi/test"], inputs=[("images", "IMAGE", 1)]),
        ],
        [[1, 1, 0, 2, 0, "IMAGE"]],
    )


def kinds(problems):
    return sorted({p.kind for p in problems})


# ---------------------------------------------------------------- widgets


def test_fixture_records_comfyui(core):
    assert core["_comfyui"]["version"]
    assert core["_comfyui"]["commit"]


def test_widget_layout_of_core_nodes(oi):
    assert [w.name for w in ce.node_widgets(oi["LoadImage"])] == ["image", "upload"]
    ks = ce.node_widgets(oi["KSampler"])
    assert [w.name for w in ks] == [
        "seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"]
    assert [w.serialize for w in ks][:2] == [True, False]
    assert [w.name for w in ce.node_widgets(oi["SaveImage"])] == ["filename_prefix"]
    assert [w.name for w in ce.node_widgets(oi["ImageCompositeMasked"])] == ["x", "y", "resize_source"]


def test_widget_layout_control_and_force_input(oi):
    names = [w.name for w in ce.node_widgets(oi["TestCombos"])]
    # COMBO with control_after_generate: control + filter list; forceInput: no widget;
    # INT named noise_seed: control by convention.
    assert names == ["mode", "control_after_generate", "control_filter_list",
                     "noise_seed", "control_after_generate", "tags"]
    # control_after_generate: False wins over the seed-name convention
    assert [w.name for w in ce.node_widgets(oi["TestAnything"])] == ["seed"]


# ---------------------------------------------------------------- ui_to_api


def test_load_save_round_trip(oi):
    wf = load_save()
    assert ce.check_workflow(wf, oi) == []
    assert ce.ui_to_api(wf, oi) == {
        "1": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "liwi/test", "images": ["1", 0]}},
    }


def test_ksampler_seed_control_value_is_skipped(oi):
    wf = workflow([node(5, "KSampler", [42, "randomize", 20, 7.5, "euler", "normal", 0.8],
                        inputs=[("model", "MODEL", None), ("positive", "CONDITIONING", None),
                                ("negative", "CONDITIONING", None), ("latent_image", "LATENT", None)],
                        outputs=[("LATENT", "LATENT", [])])], [])
    api = ce.ui_to_api(wf, oi)
    assert api["5"]["inputs"] == {"seed": 42, "steps": 20, "cfg": 7.5, "sampler_name": "euler",
                                  "scheduler": "normal", "denoise": 0.8}


def test_frontend_only_nodes_are_dropped(oi):
    wf = load_save()
    wf["nodes"].append(node(9, "Note", ["a note"]))
    wf["nodes"].append(node(10, "MarkdownNote", ["# md"]))
    assert ce.check_workflow(wf, oi) == []
    assert set(ce.ui_to_api(wf, oi)) == {"1", "2"}


def test_reroute_is_resolved_through(oi):
    wf = workflow(
        [
            node(1, "LoadImage", ["coffee.png", "image"], outputs=[("IMAGE", "IMAGE", [1]), ("MASK", "MASK", [])]),
            node(3, "Reroute", None, inputs=[("", "*", 1)], outputs=[("", "IMAGE", [2])]),
            node(2, "SaveImage", ["x"], inputs=[("images", "IMAGE", 2)]),
        ],
        [[1, 1, 0, 3, 0, "*"], [2, 3, 0, 2, 0, "IMAGE"]],
    )
    assert ce.check_workflow(wf, oi) == []
    api = ce.ui_to_api(wf, oi)
    assert "3" not in api
    assert api["2"]["inputs"]["images"] == ["1", 0]


def test_bypassed_node_passes_its_matching_input_through(oi):
    wf = workflow(
        [
            node(1, "LoadImage", ["coffee.png", "image"], outputs=[("IMAGE", "IMAGE", []), ("MASK", "MASK", [1])]),
            node(2, "InvertMask", None, inputs=[("mask", "MASK", 1)], outputs=[("MASK", "MASK", [2])], mode=4),
            node(3, "MaskToImage", None, inputs=[("mask", "MASK", 2)], outputs=[("IMAGE", "IMAGE", [3])]),
            node(4, "PreviewImage", [], inputs=[("images", "IMAGE", 3)]),
        ],
        [[1, 1, 1, 2, 0, "MASK"], [2, 2, 0, 3, 0, "MASK"], [3, 3, 0, 4, 0, "IMAGE"]],
    )
    assert ce.check_workflow(wf, oi) == []
    api = ce.ui_to_api(wf, oi)
    assert "2" not in api
    assert api["3"]["inputs"]["mask"] == ["1", 1]


def test_muted_node_is_dropped_with_its_links(oi):
    wf = workflow(
        [
            node(1, "LoadImage", ["coffee.png", "image"], outputs=[("IMAGE", "IMAGE", []), ("MASK", "MASK", [1])]),
            node(2, "InvertMask", None, inputs=[("mask", "MASK", 1)], outputs=[("MASK", "MASK", [2])], mode=2),
            node(3, "MaskToImage", None, inputs=[("mask", "MASK", 2)], outputs=[("IMAGE", "IMAGE", [3])]),
            node(4, "PreviewImage", [], inputs=[("images", "IMAGE", 3)]),
        ],
        [[1, 1, 1, 2, 0, "MASK"], [2, 2, 0, 3, 0, "MASK"], [3, 3, 0, 4, 0, "IMAGE"]],
    )
    api = ce.ui_to_api(wf, oi)
    assert "2" not in api and api["3"]["inputs"] == {}
    problems = ce.workflow_problems(wf, oi)
    assert any("muted" in str(p) for p in problems)


def test_primitive_node_value_replaces_the_widget(oi):
    wf = load_save()
    wf["nodes"][1]["inputs"].append({"name": "filename_prefix", "type": "STRING", "link": 2,
                                     "widget": {"name": "filename_prefix"}})
    wf["nodes"].append(node(7, "PrimitiveNode", ["from/primitive"],
                            outputs=[("STRING", "STRING", [2])]))
    wf["links"].append([2, 7, 0, 2, 1, "STRING"])
    assert ce.check_workflow(wf, oi) == []
    api = ce.ui_to_api(wf, oi)
    assert "7" not in api
    assert api["2"]["inputs"]["filename_prefix"] == "from/primitive"


def test_widget_converted_to_socket_takes_the_link(oi):
    wf = workflow(
        [
            node(1, "LoadImage", ["coffee.png", "image"], outputs=[("IMAGE", "IMAGE", [1, 2]), ("MASK", "MASK", [])]),
            node(2, "TestIntSource", None, outputs=[("INT", "INT", [3])]),
            node(3, "ImageCompositeMasked", [0, 0, False],
                 inputs=[("destination", "IMAGE", 1), ("source", "IMAGE", 2), ("mask", "MASK", None),
                         ("x", "INT", 3, True)],
                 outputs=[("IMAGE", "IMAGE", [4])]),
            node(4, "SaveImage", ["x"], inputs=[("images", "IMAGE", 4)]),
        ],
        [[1, 1, 0, 3, 0, "IMAGE"], [2, 1, 0, 3, 1, "IMAGE"], [3, 2, 0, 3, 3, "INT"], [4, 3, 0, 4, 0, "IMAGE"]],
    )
    assert ce.check_workflow(wf, oi) == []
    inputs = ce.ui_to_api(wf, oi)["3"]["inputs"]
    assert inputs["x"] == ["2", 0]
    assert inputs["y"] == 0 and inputs["resize_source"] is False
    assert "mask" not in inputs


def test_star_input_and_list_values(oi):
    wf = workflow(
        [
            node(1, "LoadImage", ["coffee.png", "image"], outputs=[("IMAGE", "IMAGE", []), ("MASK", "MASK", [1])]),
            node(2, "TestAnything", [5], inputs=[("value", "*", 1)]),
            node(3, "TestCombos", ["b", "fixed", "", 7, "randomize", ["x", "y"]],
                 inputs=[("count", "INT", None)], outputs=[("IMAGE", "IMAGE", [])]),
        ],
        [[1, 1, 1, 2, 0, "MASK"]],
    )
    problems = ce.workflow_problems(wf, oi)
    assert [p.kind for p in problems] == ["missing_input"]  # TestCombos.count (forceInput) not linked
    api = ce.ui_to_api(wf, oi)
    assert api["2"]["inputs"] == {"seed": 5, "value": ["1", 1]}
    assert api["3"]["inputs"] == {"mode": "b", "noise_seed": 7, "tags": {"__value__": ["x", "y"]}}


def test_subgraphs_are_refused(oi):
    wf = load_save()
    wf["definitions"] = {"subgraphs": [{"id": "abc", "nodes": [], "links": []}]}
    with pytest.raises(ce.WorkflowError):
        ce.ui_to_api(wf, oi)
    assert "unsupported" in kinds(ce.workflow_problems(wf, oi))


# ---------------------------------------------------------------- check_workflow


def test_missing_node_type(oi):
    wf = load_save()
    wf["nodes"].append(node(3, "LiWiDoesNotExist", [1], inputs=[("image", "IMAGE", None)]))
    problems = ce.check_workflow(wf, oi)
    assert len(problems) == 1 and "LiWiDoesNotExist" in problems[0]


def test_wrong_link_type(oi):
    wf = load_save()
    wf["nodes"][0]["outputs"] = [{"name": "IMAGE", "type": "IMAGE", "links": []},
                                 {"name": "MASK", "type": "MASK", "links": [1]}]
    wf["links"] = [[1, 1, 1, 2, 0, "MASK"]]  # MASK output into SaveImage.images (IMAGE)
    problems = ce.workflow_problems(wf, oi)
    assert kinds(problems) == ["type_mismatch"]
    assert "MASK" in str(problems[0]) and "images" in str(problems[0])


def test_declared_link_type_differs_from_output(oi):
    wf = load_save()
    wf["links"][0][5] = "LATENT"
    assert kinds(ce.workflow_problems(wf, oi)) == ["type_mismatch"]


def test_link_inconsistencies(oi):
    wf = load_save()
    wf["nodes"][1]["inputs"][0]["link"] = 99  # input refers to an unknown link; link 1 is orphaned
    problems = ce.workflow_problems(wf, oi)
    assert kinds(problems) == ["bad_link", "missing_input"]
    assert any("link 99" in str(p) for p in problems) and any("link 1:" in str(p) for p in problems)

    wf = load_save()
    wf["links"][0][2] = 5  # origin slot that LoadImage doesn't have
    wf["nodes"][0]["outputs"][0]["links"] = []
    assert "bad_link" in kinds(ce.workflow_problems(wf, oi))

    wf = load_save()
    wf["links"][0][4] = 3  # target slot disagrees with the node's input list
    assert kinds(ce.workflow_problems(wf, oi)) == ["bad_link"]


def test_required_input_not_linked(oi):
    wf = load_save()
    wf["nodes"][1]["inputs"][0]["link"] = None
    wf["nodes"][0]["outputs"][0]["links"] = []
    wf["links"] = []
    problems = ce.workflow_problems(wf, oi)
    assert kinds(problems) == ["missing_input"]
    assert "'images'" in str(problems[0])


def test_widget_count_mismatch(oi):
    wf = load_save()
    wf["nodes"][0]["widgets_values"] = ["astronaut.png"]  # the upload button's "image" is saved too
    assert kinds(ce.workflow_problems(wf, oi)) == ["widget_count"]
    wf = load_save()
    wf["nodes"][1]["widgets_values"] = ["a", "b"]
    assert kinds(ce.workflow_problems(wf, oi)) == ["widget_count"]


def test_ksampler_without_control_value_is_a_count_mismatch(oi):
    wf = workflow([node(5, "KSampler", [42, 20, 7.5, "euler", "normal", 0.8]),
                   node(6, "PreviewImage", [])], [])
    problems = ce.workflow_problems(wf, oi)
    assert "widget_count" in kinds(problems)


def test_combo_values_and_ranges(oi):
    wf = load_save(image="not_there.png")
    problems = ce.workflow_problems(wf, oi)
    assert kinds(problems) == ["bad_value"]
    assert ce.check_workflow(wf, oi, check_file_combos=False) == []

    wf = workflow([node(1, "CheckpointLoaderSimple", ["sd15.safetensors"],
                        outputs=[("MODEL", "MODEL", []), ("CLIP", "CLIP", []), ("VAE", "VAE", [])]),
                   node(2, "PreviewImage", [])], [])
    assert "missing_file" in kinds(ce.workflow_problems(wf, oi))

    wf = workflow([node(5, "KSampler", [42, "fixed", 0, 7.5, "no_such_sampler", "normal", 0.8]),
                   node(6, "PreviewImage", [])], [])
    msgs = ce.check_workflow(wf, oi)
    assert any("'steps'" in m and "min" in m for m in msgs)
    assert any("no_such_sampler" in m for m in msgs)


def test_no_output_node(oi):
    wf = load_save()
    wf["nodes"][1]["mode"] = 2
    assert "no_output" in kinds(ce.workflow_problems(wf, oi))


def test_is_valid_connection():
    assert ce.is_valid_connection("IMAGE", "IMAGE")
    assert ce.is_valid_connection("*", "MASK")
    assert ce.is_valid_connection("IMAGE,MASK", "mask")
    assert not ce.is_valid_connection("IMAGE", "MASK")


def test_import_failures_reads_the_log():
    log = (
        "Error while calling comfy_entrypoint in /tmp/x/ComfyUI-LiWi: boom\n"
        "   0.0 seconds: /tmp/x/other\n"
        "   0.0 seconds (IMPORT FAILED): /tmp/x/ComfyUI-LiWi\n"
    )
    assert len(ce.import_failures(log, "ComfyUI-LiWi")) == 2
    assert ce.import_failures(log.replace("ComfyUI-LiWi", "x"), "ComfyUI-LiWi") == []


def test_output_files_collects_every_reported_file():
    entry = {"outputs": {
        "4": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]},
        "7": {"psd": [{"filename": "b.psd", "subfolder": "liwi", "type": "output"}], "text": ["hi"]},
    }}
    files = ce.output_files(entry)
    assert sorted(f["filename"] for f in files) == ["a.png", "b.psd"]
