"""The qwen-layered engine end to end on a tiny, randomly initialised Qwen-Image-Layered pipeline.

Nothing is downloaded: the transformer, VAE, Qwen2.5-VL text encoder and a byte-level
tokenizer are built from small configs, saved with ``save_pretrained`` and loaded back by
the engine. Random weights give noise layers; the test checks the plumbing (the pipeline's
output reaches :func:`liwi_core.bridge.layers_from_images`, the stack is written and
recomposes to the photo), not the layers' quality.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from liwi_core.cli import main
from liwi_core.engines import create
from liwi_core.errors import LiWiError
from liwi_core.export import load_layers_dir
from liwi_core.imageio import load_image
from liwi_core.metrics import recompose_psnr


def _tiny_pipeline_folder(folder):
    """A tiny QwenImageLayeredPipeline saved to ``folder`` (no processor: the test gives a prompt)."""
    pytest.importorskip("transformers", reason="Qwen-Image-Layered's text encoder needs transformers")
    layered = pytest.importorskip("diffusers.pipelines.qwenimage.pipeline_qwenimage_layered",
                                  reason="this diffusers has no QwenImageLayeredPipeline")
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

    torch.manual_seed(0)
    z_dim = 8  # not 4: the pipeline takes a 4-channel input as latents when z_dim is 4
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=4 * z_dim, out_channels=z_dim, num_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
        use_additional_t_cond=True, use_layer3d_rope=True)
    # five levels: 16x smaller latents keep the 640 px working size cheap
    vae = AutoencoderKLQwenImage(
        base_dim=8, z_dim=z_dim, dim_mult=[1, 1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, False, False, False], input_channels=4,
        latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)
    # a byte-level BPE without merges: one token per byte, plus the chat template's markers
    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    vocab_size = 272
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": vocab_size,
                     "bos_token_id": None, "eos_token_id": len(vocab), "pad_token_id": len(vocab),
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": 16},
        vocab_size=vocab_size, vision_start_token_id=262, vision_end_token_id=263, vision_token_id=264,
        image_token_id=265, video_token_id=266)
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    pipe = layered.QwenImageLayeredPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        processor=None, transformer=transformer)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    return _tiny_pipeline_folder(tmp_path_factory.mktemp("qwen-layered"))


def _photo(path, h=48, w=64):
    rng = np.random.default_rng(0)
    arr = np.full((h, w, 3), (70, 120, 190), np.uint8)
    arr[12:36, 20:44] = (220, 60, 40)  # an object
    arr = np.clip(arr.astype(int) + rng.integers(-8, 9, arr.shape), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_decompose_with_a_tiny_pipeline_recomposes_the_photo(tiny_pipeline, tmp_path):
    photo = _photo(tmp_path / "photo.png")
    out = tmp_path / "layers"
    code = main(["decompose", str(photo), "--engine", "qwen-layered", "--qwen-checkpoint", str(tiny_pipeline),
                 "--out", str(out), "--layers", "2", "--steps", "2", "--cfg", "1", "--prompt", "a red square"])
    assert code in (0, None)
    manifest = json.loads((out / "layers.json").read_text())
    assert "qwen-layered" in json.dumps(manifest)
    slots = manifest["meta"]["slots"][0]  # the bridge's decisions, per image
    assert slots["generated_size"] == [552, 736]  # 736x544 stretched back to the photo's 4:3
    assert slots["messages"]
    stack = load_layers_dir(out)
    image = load_image(photo)
    assert tuple(stack.background.shape[-2:]) == tuple(image.shape[-2:])
    assert recompose_psnr(stack.composite(), image[:, :3]) >= 45.0


def test_the_engine_refuses_masks_and_missing_folders_in_one_line(tmp_path):
    with pytest.raises(LiWiError, match="does not exist") as info:
        create("qwen-layered", qwen_checkpoint=str(tmp_path / "nope"))
    assert "\n" not in str(info.value)
    with pytest.raises(LiWiError, match="needs a pipeline folder"):
        create("qwen-layered")
    engine = create("qwen-layered", qwen_checkpoint=str(tmp_path))  # the weights load on first use
    image = torch.rand(1, 3, 16, 16)
    with pytest.raises(LiWiError, match="takes no masks") as info:
        engine.peel(image, [torch.ones(1, 1, 16, 16)], ["a"], [0])
    assert "\n" not in str(info.value)
    with pytest.raises(LiWiError, match="not a diffusers pipeline folder"):
        engine.peel(image, None, None, None)
