"""The shipped default checkpoint: it is there, small, safetensors only, loads, and decomposes."""

from pathlib import Path

import pytest
import torch

from helpers import psnr, scene, soft_iou
from liwi_core.decompose import decompose
from liwi_core.imageio import load_image, load_mask

pytest.importorskip("diffusers")
from liwi_core.engines.learned import DEFAULT_CHECKPOINT, PICKLE_SUFFIXES, load_model  # noqa: E402

EX = Path(__file__).resolve().parent.parent / "example_images"


@pytest.fixture(scope="module")
def model():
    return load_model()  # no path: the bundled default


def test_checkpoint_ships_small_with_a_model_card():
    files = {p.name: p.stat().st_size for p in DEFAULT_CHECKPOINT.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.safetensors", "MODEL_CARD.md"} <= set(files)
    assert sum(files.values()) <= 30 * 2**20
    assert not [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    card = (DEFAULT_CHECKPOINT / "MODEL_CARD.md").read_text()
    for needed in ("classical", "alpha", "background", "steps", "licence"):
        assert needed in card.lower()


def test_default_decomposes_an_example_losslessly_and_follows_the_mask(model):
    image = load_image(EX / "coffee.png")[:, :3]
    mask = load_mask(EX / "coffee_mask.png")
    stack = decompose(image, mask, model=model)
    assert stack.meta["engine"] == "learned" and len(stack.layers) == 1
    assert psnr(stack.composite(), image) >= 45
    alpha = stack.layers[0].alpha
    assert soft_iou(alpha, mask) > 0.7  # the cup and saucer, not the table
    assert float((alpha * (1 - mask)).sum() / alpha.sum()) < 0.1  # little alpha outside the rough mask


def test_automatic_mode_finds_the_one_clear_object(model):
    image, _, alpha, _, _ = scene(256, 320)
    stack = decompose(image, None, model=model, max_objects=2)
    assert stack.layers, "automatic mode found nothing"
    best = max(soft_iou(layer.alpha, alpha) for layer in stack.layers)
    assert best > 0.6
    assert psnr(stack.composite(), image) >= 45


def test_automatic_mode_gives_a_foreground_on_the_example_photos(model):
    """A usable foreground: the first layer found overlaps the photo's main object."""
    for name in ("coffee", "astronaut"):
        image = load_image(EX / f"{name}.png")[:, :3]
        mask = load_mask(EX / f"{name}_mask.png")
        stack = decompose(image, None, model=model, max_objects=1)
        assert len(stack.layers) == 1, name
        alpha = stack.layers[0].alpha
        inside = float((alpha * mask).sum() / alpha.sum().clamp_min(1e-6))
        assert inside > 0.6 and float(alpha.mean()) > 0.02, (name, inside, float(alpha.mean()))
        assert psnr(stack.composite(), image) >= 45
