"""Synthetic scenes with known layers, shared by the tests."""

from __future__ import annotations

import torch

from liwi_core.metrics import alpha_soft_iou as soft_iou  # noqa: F401  (re-exported for the tests)
from liwi_core.metrics import recompose_psnr as psnr  # noqa: F401
from liwi_core.synthetic import scene  # noqa: F401


def write_scene_dataset(root, count: int, h: int, w: int, prefix: str = "s"):
    """``count`` synthetic scenes (see :func:`scene`) as a dataset with ground-truth layers and
    ``dilated`` / ``box`` prompt masks; returns ``root``."""
    from liwi_core import Layer, LayerStack
    from liwi_core.dataset import Sample, write_sample
    from liwi_core.filters import dilate

    for seed in range(count):
        _, bg, alpha, shadow, rough = scene(h, w, seed=seed)
        rgba = torch.cat([torch.tensor([0.1, 0.2, 0.8]).view(1, 3, 1, 1).expand(1, 3, h, w), alpha], 1)
        stack = LayerStack(background=bg, layers=[Layer(rgba, shadow, "disc", 0)], hole=(alpha > 0).float())
        prompts = [{"dilated": dilate((alpha > 0.5).float(), 3), "box": rough}]
        write_sample(root, Sample(f"{prefix}{seed}", stack.composite(), stack, prompts, {"seed": seed}))
    return root


def check_bundled_weights(folder, model, licence: str = "GNU General Public License, version 3",
                          trained=None) -> None:
    """A bundled checkpoint folder: its four files, a safetensors file (not a pickle), trained
    weights (``trained(model)``, default ``model.head.weight``, left its zero start), a model card
    naming its sources and the reserved photos, and its licence."""
    import json

    names = sorted(p.name for p in folder.iterdir())
    assert names == ["LICENSE", "MODEL_CARD.md", "config.json", "diffusion_pytorch_model.safetensors"]
    with open(folder / "diffusion_pytorch_model.safetensors", "rb") as fh:
        header = int.from_bytes(fh.read(8), "little")
        assert json.loads(fh.read(header))
    weight = trained(model) if trained is not None else model.head.weight
    assert float(weight.detach().abs().max()) > 0
    card = (folder / "MODEL_CARD.md").read_text()
    assert "tuxpaint-stamps-default" in card and "gcompris-qt-data" in card and "example_images" in card
    assert licence in (folder / "LICENSE").read_text()
