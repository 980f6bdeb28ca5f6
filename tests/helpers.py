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
