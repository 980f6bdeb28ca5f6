"""Inputs users get wrong, each given a clear one-line error or a documented result."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from liwi_core import LiWiError
from liwi_core.cli import main
from liwi_core.decompose import decompose
from liwi_core.engines import create
from liwi_core.export import save_layers_dir
from liwi_core.imageio import load_image, load_mask, save_image, shown_size
from liwi_core.layers import LayerEdit, edit_stack, parse_edit


def _scene(h=48, w=64):
    image = torch.full((1, 3, h, w), 0.6)
    image[..., 10:30, 20:40] = torch.tensor([0.8, 0.2, 0.1]).view(1, 3, 1, 1)
    mask = torch.zeros(1, 1, h, w)
    mask[..., 10:30, 20:40] = 1.0
    return image, mask


def _save(t, path, mode=None):
    arr = (t[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(path)


def test_a_dark_16_bit_file_stays_dark(tmp_path):
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "dark.png")
    assert float(load_image(tmp_path / "dark.png").max()) == pytest.approx(200 / 65535)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((12, 16, 3), np.uint8)
    arr[0, :] = 255  # the stored top row
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    im.save(tmp_path / "turned.jpg", exif=exif, quality=100)
    image = load_image(tmp_path / "turned.jpg")
    assert tuple(image.shape[-2:]) == (16, 12)
    assert float(image[0, :, :, -1].mean()) > 0.9 > float(image[0, :, :, 0].mean())  # top row now on the right
    assert shown_size(tmp_path / "turned.jpg") == (16, 12)  # the header alone says the same


def test_a_folder_is_named_as_one_and_a_flat_tensor_is_not_saved(tmp_path):
    with pytest.raises(LiWiError, match="it is a folder"):
        load_image(tmp_path)
    with pytest.raises(LiWiError, match="must be"):
        save_image(torch.rand(4, 4), tmp_path / "x.png")


def test_a_0_1_label_mask_reads_as_a_mask(tmp_path):
    Image.fromarray(np.pad(np.ones((4, 4), np.uint8), 2)).save(tmp_path / "labels.png")
    with pytest.warns(UserWarning, match="0/1 label mask"):
        mask = load_mask(tmp_path / "labels.png")
    assert float(mask.max()) == 1.0 and float(mask.sum()) == 16


@pytest.mark.parametrize("bad, message", [
    (lambda img: img * 255, "values go up to 204"),
    (lambda img: (img * 255).to(torch.uint8), "the image is uint8"),
    (lambda img: img[0].permute(1, 2, 0).numpy(), "must be a torch tensor"),
])
def test_images_on_another_scale_or_type_are_refused(bad, message):
    image, mask = _scene()
    with pytest.raises(LiWiError, match=message):
        decompose(bad(image), mask, create("baseline"))


def test_masks_as_a_list_or_integers_and_an_image_that_requires_grad():
    image, mask = _scene()
    engine = create("baseline")
    want = decompose(image, mask, engine).layers[0].alpha
    for masks in ([mask[0, 0]], [mask[0]], (mask * 255).to(torch.uint8)):
        assert torch.equal(decompose(image, masks, engine).layers[0].alpha, want)
    assert torch.equal(decompose(image.clone().requires_grad_(True), mask, engine).layers[0].alpha, want)
    with pytest.warns(UserWarning, match="mask 2 of 2 is empty"):
        decompose(image, [mask, torch.zeros_like(mask)], engine)


def test_masks_of_different_sizes_on_the_command_line(tmp_path):
    image, mask = _scene()
    _save(image, tmp_path / "photo.png")
    _save(mask, tmp_path / "full.png")
    _save(mask[..., ::2, ::2].contiguous(), tmp_path / "half.png")
    out = tmp_path / "layers"
    with pytest.warns(UserWarning, match="mask 32x24 resized"):
        assert main(["decompose", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "full.png"),
                     "--mask", str(tmp_path / "half.png"), "--out", str(out), "--engine", "baseline"]) == 0
    assert len(json.loads((out / "layers.json").read_text())["layers"]) == 2


def test_a_reused_folder_loses_the_layers_of_the_earlier_run_only(tmp_path):
    image, mask = _scene()
    engine = create("baseline")
    out = tmp_path / "layers"
    save_layers_dir(decompose(image, torch.cat([mask, mask]), engine), out)
    (out / "notes.txt").write_text("mine")
    save_layers_dir(decompose(image, mask, engine), out)
    assert not (out / "layer_01.png").exists() and not (out / "shadow_01.png").exists()
    assert (out / "layer_00.png").is_file() and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["background.png", "layer_00.png"])
def test_an_input_is_never_overwritten(tmp_path, capsys, name):
    image, mask = _scene()
    _save(image, tmp_path / name)
    _save(mask, tmp_path / "mask.png")
    before = (tmp_path / name).read_bytes()
    assert main(["decompose", str(tmp_path / name), "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path),
                 "--engine", "baseline"]) == 2
    assert "in the output folder" in capsys.readouterr().err
    assert (tmp_path / name).read_bytes() == before


def test_outputs_are_checked_before_the_work(tmp_path, capsys):
    image, mask = _scene()
    _save(image, tmp_path / "photo.png")
    _save(mask, tmp_path / "mask.png")
    (tmp_path / "a.psd").mkdir()
    args = ["decompose", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"), "--engine", "baseline"]
    assert main(args + ["--out", str(tmp_path / "layers"), "--psd", str(tmp_path / "a.psd")]) == 2
    assert "it is a folder" in capsys.readouterr().err and not (tmp_path / "layers").exists()
    assert main(args + ["--out", " "]) == 2
    assert "--out is empty" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("0:dx=nan", "finite"), ("0:dy=inf", "finite"), ("0:scale=0", "scale must be between"),
    ("0:scale=-1", "scale must be between"), ("0:scale=nan", "scale must be between"),
    ("0:scale=1e-300", "scale must be between"), ("0:opacity=nan", "opacity"),
])
def test_edits_out_of_range_are_one_line_errors(text, message):
    image, mask = _scene()
    stack = decompose(image, mask, create("baseline"))
    with pytest.raises(LiWiError, match=message):
        edit_stack(stack, dict([parse_edit(text)]))
    assert torch.isfinite(edit_stack(stack, {0: LayerEdit(dx=3.5, scale=0.5, opacity=0.3)}).composite()).all()


def test_eval_checks_its_json_target_and_flavours_before_the_work(tmp_path, capsys):
    from helpers import write_scene_dataset

    data = write_scene_dataset(tmp_path / "data", 1, 48, 64, prefix="e")
    args = ["eval", str(data), "--engines", "baseline"]
    assert main(args + ["--json", str(tmp_path)]) == 2
    assert "it is a folder" in capsys.readouterr().err
    assert main(args + ["--flavours", ","]) == 2
    assert "--flavours is empty" in capsys.readouterr().err


def test_eval_names_a_sample_it_cannot_score(tmp_path, capsys):
    from helpers import write_scene_dataset

    data = write_scene_dataset(tmp_path / "data", 1, 48, 64, prefix="e")
    Image.new("RGBA", (32, 24)).save(data / "samples" / "e0" / "layer_00.png")
    assert main(["eval", str(data), "--engines", "baseline"]) == 2
    err = capsys.readouterr().err
    assert "sample e0 left out" in err and "no sample could be scored" in err
