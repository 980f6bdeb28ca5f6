"""The shipped default checkpoint: it is there, small, safetensors only, loads, and decomposes."""

from pathlib import Path

import pytest

from helpers import psnr, scene, soft_iou
from liwi_core.decompose import decompose
from liwi_core.engines import create
from liwi_core.proposals import ProposalSettings
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
    # (an untrained model of the same config scores IoU 0.40 here, with half its alpha outside the mask)
    image = load_image(EX / "astronaut.png")[:, :3]
    mask = load_mask(EX / "astronaut_mask.png")
    stack = decompose(image, mask, create("learned", model=model))
    assert stack.meta["engine"] == "learned" and len(stack.layers) == 1
    assert psnr(stack.composite(), image) >= 45
    alpha = stack.layers[0].alpha
    assert soft_iou(alpha, mask) > 0.85  # the person, not the flag or the helmet
    assert float((alpha * (1 - mask)).sum() / alpha.sum()) < 0.05  # little alpha outside the rough mask


def test_automatic_mode_finds_the_one_clear_object(model):
    # (an untrained model of the same config: IoU 0.16)
    image, _, alpha, _, _ = scene(256, 320)
    stack = decompose(image, None, create("learned", model=model), find=ProposalSettings(max_objects=2))
    assert stack.layers, "automatic mode found nothing"
    assert soft_iou(stack.layers[-1].alpha, alpha) > 0.7  # the front-most layer found is the disc
    assert psnr(stack.composite(), image) >= 45


def test_every_bundled_weights_folder_is_packaged():
    """A pip install carries each folder under liwi_core/weights (the default engine needs them)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    packaged = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["liwi_core"])
    folders = {f"weights/{p.name}/*" for p in (root / "liwi_core" / "weights").iterdir() if p.is_dir()}
    assert folders <= packaged
