"""The prompt segmenter: its start from the saliency network, its window, its examples and training."""

from __future__ import annotations

import json
import random

import pytest
import torch

pytest.importorskip("diffusers")

from liwi_core.saliency import U2NetP, load_saliency_model, saliency_map
from liwi_core.segmenter import (
    init_from_saliency,
    prompt_window,
    segment_prompt,
    segmenter_inputs,
)


def _disc(h, w, cy, cx, r):
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).float()[None, None]


def test_an_untrained_segmenter_is_the_saliency_networks_zoomed_look():
    image = torch.rand(1, 3, 120, 150, generator=torch.Generator().manual_seed(3))
    rough = _disc(120, 150, 60, 70, 25)
    seg = init_from_saliency()
    assert seg.config.in_channels == 4
    got = segment_prompt(seg, image, rough)
    y0, y1, x0, x1 = prompt_window(rough)
    assert (y0, y1, x0, x1) == (22, 99, 32, 109)  # the disc's box (rows 35-85, columns 45-95) grown by a quarter
    want = saliency_map(load_saliency_model(), image[..., y0:y1, x0:x1], normalize=False)
    assert torch.allclose(got[..., y0:y1, x0:x1], want, atol=1e-5)
    outside = torch.ones_like(got, dtype=torch.bool)
    outside[..., y0:y1, x0:x1] = False
    assert got[outside].abs().max() == 0


def test_the_prompt_channel_is_read_once_trained():
    seg = init_from_saliency()
    with torch.no_grad():
        seg.stage1.rebnconvin.conv_s1.weight[:, 3] = 0.5
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    a = segment_prompt(seg, image, _disc(64, 64, 32, 32, 12))
    b = segment_prompt(seg, image, _disc(64, 64, 32, 32, 12) * (torch.arange(64) < 32).float())
    assert not torch.allclose(a, b)
    x = segmenter_inputs(image, _disc(64, 64, 32, 32, 12), 32)
    assert x.shape == (1, 4, 32, 32) and x[:, 3].min() == -1 and x[:, 3].max() == 1


def test_an_example_is_one_object_in_its_window(tmp_path):
    from helpers import write_scene_dataset

    from liwi_core.dataset import iter_samples
    from liwi_core.train_segmenter import prompt_example

    data = write_scene_dataset(tmp_path / "data", 2, 64, 80, prefix="e")
    sample = next(iter_samples(data))
    for seed in range(6):
        inputs, alpha, kind = prompt_example(sample, random.Random(seed), 48, flip=True)
        assert inputs.shape == (4, 48, 48) and alpha.shape == (1, 48, 48)
        assert 0 <= float(alpha.min()) and float(alpha.max()) <= 1 and float(alpha.max()) > 0.5
        assert kind in ("exact", "eroded", "dilated", "blurred", "box", "scribble")
        # the margin keeps a frame of background around the object's box
        assert float(alpha[:, :, :2].max()) < 0.5 or float(alpha[:, :, -2:].max()) < 0.5


def test_fit_writes_a_loadable_segmenter_and_resumes(tmp_path):
    from helpers import write_scene_dataset

    from liwi_core.errors import LiWiError
    from liwi_core.segmenter import load_segmenter
    from liwi_core.train_segmenter import fit

    data = write_scene_dataset(tmp_path / "data", 3, 64, 80, prefix="s")
    config = {"size": 64, "batch_size": 2, "steps": 3, "lr": 1e-4, "warmup_steps": 1, "log_every": 1,
              "save_every": 1, "val_every": 100, "reload_every": 2}
    lines: list[str] = []
    fit(data, tmp_path / "run", {**config, "steps": 2}, log=lines.append)
    state = torch.load(tmp_path / "run" / "checkpoint-latest" / "training_state.pt", weights_only=True)
    assert state["step"] == 2
    val = json.loads(lines[1])
    assert val["step"] == 0 and 0 <= val["val"]["all"] <= 1
    fit(data, tmp_path / "run", config, log=lines.append)
    assert '"resume_step": 2' in "".join(lines)
    model = load_segmenter(tmp_path / "run" / "checkpoint-latest")
    assert isinstance(model, U2NetP) and model.config.in_channels == 4
    # a later stage starts from a segmenter, never from a 3-channel saliency network
    with pytest.raises(LiWiError, match="4 input channels"):
        fit(data, tmp_path / "other", {**config, "init_from": "liwi_core/weights/u2netp"})


def test_a_window_with_negative_margins_cuts_into_the_prompts_box():
    prompt = torch.zeros(1, 1, 100, 100)
    prompt[..., 20:60, 30:90] = 1
    assert prompt_window(prompt, [0.25, 0.25, 0.25, 0.25]) == (10, 70, 15, 100)  # clipped at the right
    assert prompt_window(prompt, [-0.25, 0.0, 0.0, -0.5]) == (30, 60, 30, 60)  # the frame cuts the object
    assert prompt_window(prompt, [-0.6, -0.6, 0.0, 0.0]) == (20, 60, 30, 90)  # nothing left: the box itself


def _photo_with_a_disc(seed=0):
    g = torch.Generator().manual_seed(seed)
    photo = 0.25 + 0.05 * torch.rand(1, 3, 160, 200, generator=g)
    disc = _disc(160, 200, 80, 90, 40)
    return photo * (1 - disc) + disc * torch.tensor([0.9, 0.5, 0.1]).view(1, 3, 1, 1)


def test_teacher_examples_on_a_photo_follow_the_saliency_networks_object(tmp_path):
    from liwi_core.train_segmenter import make_teacher_examples, teacher_example

    teacher = load_saliency_model()
    for seed in range(4):
        example = teacher_example(_photo_with_a_disc(), teacher, random.Random(seed), 64)
        assert example is not None
        image, prompt, target, kind = example
        assert image.dtype == torch.uint8 and image.shape == (3, 64, 64) and target.shape == prompt.shape == (1, 64, 64)
        assert kind in ("exact", "dilated", "eroded", "blurred", "box")
        # the truth is the disc: bright where the disc's orange is, dark on the grey ground
        orange = (image[0].float() > 200) & (image[2].float() < 60)
        assert target[0][orange].float().mean() > 200 and target[0][~orange].float().mean() < 80
    flat = torch.full((1, 3, 96, 96), 0.5)
    assert teacher_example(flat, teacher, random.Random(0), 64) is None  # nothing salient: no example
    photos = tmp_path / "photos"
    photos.mkdir()
    from liwi_core.imageio import save_image

    save_image(_photo_with_a_disc(), photos / "disc.png")
    assert make_teacher_examples(photos, tmp_path / "taught", per_photo=2, size=64) == 2
    assert make_teacher_examples(photos, tmp_path / "taught", per_photo=2, size=64) == 2  # a rerun keeps them


def test_fit_mixes_teacher_examples_and_reports_them(tmp_path):
    from helpers import write_scene_dataset

    from liwi_core.imageio import save_image
    from liwi_core.train_segmenter import fit, make_teacher_examples

    data = write_scene_dataset(tmp_path / "data", 3, 64, 80, prefix="s")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b", "c", "d", "e", "f"):
        save_image(_photo_with_a_disc(ord(name)), photos / f"{name}.png")
    taught = tmp_path / "taught"
    make_teacher_examples(photos, taught, per_photo=1, size=64)
    config = {"size": 64, "batch_size": 2, "steps": 2, "lr": 1e-4, "warmup_steps": 1, "log_every": 1,
              "save_every": 1, "val_every": 100, "reload_every": 2, "teacher_examples": str(taught),
              "teacher_share": 0.5, "margin": [-0.2, 0.4]}
    lines: list[str] = []
    fit(data, tmp_path / "run", config, log=lines.append)
    vals = [json.loads(line)["val"] for line in lines if '"val": {' in line]
    assert vals and all(0 <= v["all"] <= 1 for v in vals)


def test_the_engines_guide_is_where_both_networks_see_the_object():
    from liwi_core.engines.classical import prompt_saliency

    seg = init_from_saliency()
    with torch.no_grad():  # a segmenter that has learnt to trust the prompt a little
        seg.stage1.rebnconvin.conv_s1.weight[:, 3] = 0.2
    image = torch.rand(1, 3, 96, 120, generator=torch.Generator().manual_seed(5))
    rough = _disc(96, 120, 48, 60, 20)
    plain = prompt_saliency(image, rough)
    both = prompt_saliency(image, rough, segmenter=seg)
    alone = segment_prompt(seg, image, rough)
    assert torch.equal(both, torch.minimum(plain, alone))
    assert not torch.equal(both, plain) and not torch.equal(both, alone)


def test_the_bundled_segmenter_loads_and_has_its_card_and_licence():
    from helpers import check_bundled_weights

    from liwi_core.segmenter import DEFAULT_SEGMENTER, load_segmenter, shared_segmenter

    model = load_segmenter()
    assert model is not None and model.config.in_channels == 4 and shared_segmenter() is not None
    check_bundled_weights(DEFAULT_SEGMENTER, model, trained=lambda m: m.stage1.rebnconvin.conv_s1.weight[:, 3])
    assert "Apache License" in (DEFAULT_SEGMENTER / "LICENSE").read_text()


def test_the_command_line_fits_and_teaches_and_says_what_is_wrong(tmp_path, capsys):
    from helpers import write_scene_dataset

    from liwi_core.imageio import save_image
    from liwi_core.train_segmenter import main

    data = write_scene_dataset(tmp_path / "data", 2, 64, 80, prefix="c")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"size": 64, "batch_size": 2, "steps": 1, "lr": 1e-4, "val_every": 100}))
    assert main(["fit", "--data", str(data), "--out", str(tmp_path / "run"), "--config", str(config)]) == 0
    assert (tmp_path / "run" / "checkpoint-latest" / "config.json").is_file()
    assert (tmp_path / "run" / "log.jsonl").is_file()
    config.write_text(json.dumps({"steps": 1, "batch_size": 1, "lr": 1e-4, "init_from": str(tmp_path / "nowhere")}))
    assert main(["fit", "--data", str(data), "--out", str(tmp_path / "other"), "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith("error: init_from")
    photos = tmp_path / "photos"
    photos.mkdir()
    save_image(_photo_with_a_disc(), photos / "disc.png")
    assert main(["teach", "--photos", str(photos), "--out", str(tmp_path / "taught"), "--per-photo", "2"]) == 0
    assert len(list((tmp_path / "taught").glob("*.pt"))) == 2
