"""End-to-end: the pack inside a real ComfyUI server, every workflows/*.json run on it.

Skipped unless ``LIWI_COMFYUI_DIR`` points to a ComfyUI checkout (the folder
with main.py). ``LIWI_COMFYUI_PYTHON`` is the python that has ComfyUI's
requirements (default: the python running pytest). The server runs on the CPU,
listens on 127.0.0.1 only, and writes only under pytest's tmp folder.

With ``LIWI_UPDATE_FIXTURES=1`` the object_info of the core nodes the
workflows use is written to tests/fixtures/comfy_core_object_info/<ComfyUI version>.json,
for the offline workflow check (which checks against every version there). Without it,
the fixture of the server's version is compared with the server.

    LIWI_COMFYUI_DIR=.comfyui LIWI_COMFYUI_PYTHON=.comfy-venv/bin/python \\
        .venv/bin/python -m pytest -q tests/test_e2e_comfyui.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import comfy_e2e as ce

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-LiWi"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
FIXTURES = REPO / "tests" / "fixtures" / "comfy_core_object_info"

#: Core nodes whose schema the offline check needs, besides those in workflows/.
CORE_NODES = [
    "LoadImage", "SaveImage", "PreviewImage", "JoinImageWithAlpha", "SplitImageWithAlpha",
    "VAEEncodeForInpaint", "InpaintModelConditioning", "ImageCompositeMasked",
    "MaskToImage", "ImageToMask", "CheckpointLoaderSimple", "KSampler",
    "CLIPTextEncode", "VAEDecode",
]

COMFY_DIR = os.environ.get("LIWI_COMFYUI_DIR")
# the server starts in COMFY_DIR, so a relative path (as in the docstring) is taken from here
COMFY_PYTHON = os.path.abspath(os.environ.get("LIWI_COMFYUI_PYTHON") or sys.executable)
PROMPT_TIMEOUT = float(os.environ.get("LIWI_E2E_PROMPT_TIMEOUT", "600"))

pytestmark = pytest.mark.skipif(
    not COMFY_DIR or not (Path(COMFY_DIR) / "main.py").is_file(),
    reason="end-to-end test: set LIWI_COMFYUI_DIR to a ComfyUI checkout (and "
    "LIWI_COMFYUI_PYTHON to a python with its requirements) to run it",
)

SIGNATURES = {
    ".psd": b"8BPS",
    ".png": b"\x89PNG\r\n\x1a\n",
    ".ora": b"PK\x03\x04",
    ".jpg": b"\xff\xd8\xff",
    ".jpeg": b"\xff\xd8\xff",
    ".webp": b"RIFF",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui")
    custom_nodes = ce.make_custom_nodes_dir(REPO, base / "custom_nodes", PACK_NAME)
    input_dir = base / "input"
    input_dir.mkdir()
    for img in sorted((REPO / "example_images").glob("*")):
        if img.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            shutil.copy2(img, input_dir / img.name)
    # the automatic-mode workflow loads the pack's bundled checkpoint; an empty liwi path
    # checks that registering the folder does not hide it
    model_dir = base / "models_liwi"
    model_dir.mkdir()
    with ce.start_server(
        COMFY_DIR, COMFY_PYTHON, custom_nodes, base / "output", input_dir,
        pack_name=PACK_NAME, work_dir=base / "work", model_paths={"liwi": model_dir},
    ) as srv:
        srv.all_object_info = srv.object_info()
        yield srv


def test_pack_imported(server):
    log = server.log_path.read_text(errors="replace")
    assert ce.import_failures(log, PACK_NAME) == []
    assert f"{PACK_NAME}" in log, "the pack's folder was not even tried (custom_nodes path not picked up?)"
    liwi = sorted(k for k in server.all_object_info if k.startswith("LiWi"))
    assert liwi, f"no LiWi* node types in /object_info; log tail:\n{server.log_tail()}"
    used = set().union(*(ce.node_types_used(json.loads(p.read_text())) for p in WORKFLOWS)) if WORKFLOWS else set()
    missing = sorted(t for t in used if t.startswith("LiWi") and t not in server.all_object_info)
    assert not missing, f"workflows use LiWi node types the server doesn't have: {missing}; it has {liwi}"


def _comfyui_identity(server) -> dict:
    ident: dict = {"version": None, "commit": os.environ.get("LIWI_COMFYUI_COMMIT")}
    status, stats = ce.http_json("GET", f"{server.base_url}/system_stats")
    if status == 200:
        system = stats.get("system", {})
        ident["version"] = system.get("comfyui_version")
        ident["pytorch_version"] = system.get("pytorch_version")
    if not ident["commit"] and (Path(COMFY_DIR) / ".git").exists():  # else git would name an enclosing repo
        try:
            ident["commit"] = subprocess.run(
                ["git", "-C", str(COMFY_DIR), "rev-parse", "HEAD"],
                capture_output=True, text=True, check=True,
            ).stdout.strip() or None
        except (OSError, subprocess.CalledProcessError):
            pass
    try:
        out = subprocess.run(
            [COMFY_PYTHON, "-c", "import importlib.metadata as m; print(m.version('comfyui-frontend-package'))"],
            capture_output=True, text=True, timeout=60,
        )
        ident["frontend_version"] = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        ident["frontend_version"] = None
    return ident


def _core_types(server) -> list[str]:
    """CORE_NODES, then the core node types the workflows use that this server has (a newer
    ComfyUI's nodes are absent on an older one; their workflows are skipped there)."""
    types = list(CORE_NODES)
    for p in WORKFLOWS:
        for t in sorted(ce.node_types_used(json.loads(p.read_text()))):
            if (not t.startswith("LiWi") and t not in ce.FRONTEND_ONLY_TYPES and t not in types
                    and t in server.all_object_info):
                types.append(t)
    return types


def _shape(node_def: dict) -> dict:
    """What the offline check relies on: input names, order, types; outputs."""
    inputs = node_def.get("input") or {}
    return {
        "required": [(n, ce.spec_type(s)) for n, s in (inputs.get("required") or {}).items()],
        "optional": [(n, ce.spec_type(s)) for n, s in (inputs.get("optional") or {}).items()],
        "input_order": node_def.get("input_order"),
        "output": ce.output_types(node_def),
        "output_node": node_def.get("output_node"),
    }


def test_core_object_info_fixture(server):
    types = _core_types(server)
    missing = [t for t in types if t not in server.all_object_info]
    assert not missing, f"core node types not on this server: {missing}"
    identity = _comfyui_identity(server)
    fixture_path = FIXTURES / f"{identity['version']}.json"
    if os.environ.get("LIWI_UPDATE_FIXTURES") == "1":
        data = {"_comfyui": identity}
        data["_comfyui"]["note"] = (
            "GET /object_info of a real ComfyUI server (CPU, no models), for the "
            "node types our workflows use; file COMBO options list the input "
            "folder of that run (example_images/) and no model files."
        )
        for t in types:
            data[t] = server.all_object_info[t]
        fixture_path.parent.mkdir(parents=True, exist_ok=True)
        fixture_path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        return
    if not fixture_path.is_file():
        pytest.skip(f"no fixture for ComfyUI {identity['version']} ({fixture_path.name}); "
                    "LIWI_UPDATE_FIXTURES=1 writes it")
    fixture = json.loads(fixture_path.read_text())
    absent = [t for t in types if t not in fixture]
    assert not absent, f"{fixture_path.name} lacks {absent}; regenerate it with LIWI_UPDATE_FIXTURES=1"
    changed = [t for t in types if _shape(fixture[t]) != _shape(server.all_object_info[t])]
    assert not changed, (
        f"these core nodes differ between {fixture_path.name} (ComfyUI "
        f"{fixture.get('_comfyui', {}).get('version')}) and the server: {changed}; "
        "regenerate it with LIWI_UPDATE_FIXTURES=1"
    )


def _file_path(server, item: dict) -> Path:
    root = {"output": server.output_dir, "temp": server.temp_dir, "input": server.input_dir}[item.get("type", "output")]
    return root / (item.get("subfolder") or "") / item["filename"]


@pytest.mark.parametrize("workflow_path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_runs(server, workflow_path):
    workflow = json.loads(workflow_path.read_text())
    oi = server.all_object_info
    absent = sorted(t for t in ce.node_types_used(workflow) - set(oi) - ce.FRONTEND_ONLY_TYPES if not t.startswith("LiWi"))
    if absent:
        pytest.skip(f"needs core nodes this ComfyUI lacks: {absent}")
    problems = ce.workflow_problems(workflow, oi)
    missing_models = [p for p in problems if p.kind == "missing_file"]
    assert [str(p) for p in problems if p.kind != "missing_file"] == []
    if missing_models:
        pytest.skip("needs model files this server doesn't have: " + "; ".join(map(str, missing_models)))

    prompt = ce.ui_to_api(workflow, oi)
    before = _snapshot(server.output_dir)
    entry = ce.post_and_wait(server.base_url, prompt, timeout=PROMPT_TIMEOUT)

    output_nodes = [nid for nid, n in prompt.items() if oi[n["class_type"]].get("output_node")]
    assert output_nodes, "the prompt has no output node"
    silent = [f"{nid} ({prompt[nid]['class_type']})" for nid in output_nodes if nid not in (entry.get("outputs") or {})]
    assert not silent, f"output nodes reported nothing in /history outputs: {silent}"

    files = ce.output_files(entry)
    assert files, f"no files in /history outputs: {json.dumps(entry.get('outputs'))[:2000]}"
    for item in files:
        path = _file_path(server, item)
        where = f"node {item['node_id']} ({prompt[item['node_id']]['class_type']}) {item['key']}: {path}"
        assert path.is_file(), f"reported file missing: {where}"
        _check_file(path, where)

    # Files written but not reported (e.g. a PSD beside a reported preview) are checked too.
    new_files = sorted(_snapshot(server.output_dir) - before)
    assert new_files, "the workflow wrote nothing into the output folder"
    for rel in new_files:
        _check_file(server.output_dir / rel, f"written file {rel}")


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _check_file(path: Path, where: str) -> None:
    data = path.read_bytes()
    assert data, f"file is empty: {where}"
    suffix = path.suffix.lower()
    sig = SIGNATURES.get(suffix)
    if sig:
        assert data.startswith(sig), f"{where} does not start with {sig!r}: {data[:8]!r}"
    if suffix == ".json":
        json.loads(data)


def test_core_join_node_wiring_gives_the_layer_alpha(server):
    """Decompose's foreground_alphas (1 = object) -> InvertMask -> JoinImageWithAlpha (alpha = 1 - mask)
    must give the object's own alpha, as saved in the PSD+PNG folder."""
    import numpy as np
    from PIL import Image

    workflow = json.loads((REPO / "workflows" / "decompose_to_psd.json").read_text())
    for node in workflow["nodes"]:
        if node["type"] in ("SaveImage", "LiWiSaveLayers"):
            node["widgets_values"][0] = node["widgets_values"][0].replace("LiWi/", "LiWi/wiring_")
    entry = ce.post_and_wait(server.base_url, ce.ui_to_api(workflow, server.all_object_info), timeout=PROMPT_TIMEOUT)
    files = [_file_path(server, item) for item in ce.output_files(entry)]
    cutout = next(p for p in files if "wiring_coffee_cutout" in p.name)
    layer_dirs = sorted(p for p in (server.output_dir / "LiWi").glob("wiring_coffee_*") if p.is_dir())
    assert layer_dirs, "Save Layers wrote no PNG folder"
    cut_alpha = np.asarray(Image.open(cutout).convert("RGBA"), np.float32)[..., 3]
    layer_alpha = np.asarray(Image.open(layer_dirs[-1] / "layer_00.png").convert("RGBA"), np.float32)[..., 3]
    assert np.abs(cut_alpha - layer_alpha).max() <= 1.0
    assert cut_alpha.mean() > 20  # the object is opaque, not inverted


def test_find_objects_takes_the_offered_cut_through_the_server(server):
    """The find_objects workflow with its split widget set to 1: Find Objects parts the astronaut's
    helmet from her (its message says the cut was taken) and Decompose makes two layers of them."""
    workflow = json.loads((REPO / "workflows" / "find_objects.json").read_text())
    for node in workflow["nodes"]:
        if node["type"] == "LiWiFindObjects":
            node["widgets_values"][-1] = "1"
            find_id = str(node["id"])
        if node["type"] in ("SaveImage", "LiWiSaveLayers"):
            node["widgets_values"][0] = node["widgets_values"][0].replace("LiWi/", "LiWi/split_")
    entry = ce.post_and_wait(server.base_url, ce.ui_to_api(workflow, server.all_object_info), timeout=PROMPT_TIMEOUT)
    message = entry["outputs"][find_id]["text"][0]
    assert message.startswith("found 2 object(s)") and "(1: 23% of object 1, taken)" in message
    layer_dirs = sorted(p for p in (server.output_dir / "LiWi").glob("split_found*") if p.is_dir())
    assert layer_dirs and len(json.loads((layer_dirs[-1] / "layers.json").read_text())["layers"]) == 2


@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_add_save_folder_cannot_leave_the_output_folder(server, tmp_path, where):
    """The traversal prompt of the security issue: it must fail with the one-line error and
    write nothing, neither outside nor inside the output folder."""
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = str(outside / "ds") if where == "absolute" else "../escaped_ds"
    escaped = server.output_dir.parent / "escaped_ds"
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "coffee.png"}},
        "2": {"class_type": "LoadImageMask", "inputs": {"image": "coffee_mask.png", "channel": "red"}},
        "3": {"class_type": "LiWiADDSynthesize",
              "inputs": {"images": ["1", 0], "masks": ["2", 0], "num_samples": 1, "objects_per_sample": 1,
                         "seed": 0, "size": 128, "save_folder": folder}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 2]}},
    }
    before = _snapshot(server.output_dir)
    with pytest.raises(ce.PromptError, match="save_folder: .*(absolute path|'\\.\\.' segment)") as info:
        ce.post_and_wait(server.base_url, prompt, timeout=PROMPT_TIMEOUT)
    assert "LiWiError" in str(info.value)
    assert list(outside.rglob("*")) == [] and not escaped.exists()
    assert _snapshot(server.output_dir) == before
