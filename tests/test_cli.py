import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import psnr
from liwi_core.engines import DEFAULT_ENGINE
from liwi_core.cli import main
from liwi_core.imageio import load_image

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "example_images"


def test_decompose_recompose_export_roundtrip(tmp_path):
    out = tmp_path / "layers"
    assert main(["decompose", str(EX / "coffee.png"), "--mask", str(EX / "coffee_mask.png"),
                 "--out", str(out), "--psd", str(tmp_path / "a.psd")]) == 0
    for name in ["background.png", "layer_00.png", "shadow_00.png", "shadow.png", "layers.json"]:
        assert (out / name).is_file(), name
    meta = json.loads((out / "layers.json").read_text())
    assert meta["engine"] == DEFAULT_ENGINE and meta["layers"][0]["name"] == "coffee_mask"
    assert main(["recompose", str(out), "--out", str(tmp_path / "re.png")]) == 0
    assert psnr(load_image(tmp_path / "re.png"), load_image(EX / "coffee.png")) >= 45
    assert main(["recompose", str(out), "--out", str(tmp_path / "moved.png"), "--edit", "0:dx=-100"]) == 0
    assert psnr(load_image(tmp_path / "moved.png"), load_image(EX / "coffee.png")) < 40
    assert main(["export", str(out), "--ora", str(tmp_path / "a.ora")]) == 0
    assert (tmp_path / "a.psd").read_bytes()[:4] == b"8BPS"


@pytest.mark.parametrize("args, message", [
    (["decompose", "nope.png", "--mask", "m.png", "--out", "o"], "no such file"),
    (["decompose", str(EX / "coffee.png"), "--mask", str(EX / "coffee_mask.png"), "--out", "o", "--threshold",
      "0.3"], "--threshold is for automatic mode: leave out --mask"),
    (["recompose", "missing_dir", "--out", "x.png"], "cannot read layers from 'missing_dir': no such file"),
    (["recompose", str(EX), "--out", "x.png"], "layers.json"),
    (["export", "missing_dir"], "--psd FILE, --ora FILE or --png DIR"),
    (["decompose", str(EX / "coffee.png"), "--mask", str(EX / "coffee_mask.png"), "--out", "o", "--radius", "3"],
     "--radius is an option of the baseline engine; add --engine baseline"),
    (["decompose", str(EX / "coffee.png"), "--mask", str(EX / "coffee_mask.png"), "--out", "o",
      "--shadow-reach", "9"], "shadow_reach must be between 0.0 and 4.0"),
    (["decompose", str(EX / "coffee.png"), "--out", "o", "--mask-kind", "found"],
     "--mask-kind found says what the --mask files are: give them, or leave both out for automatic mode"),
    (["decompose", str(EX / "coffee.png"), "--mask", str(EX / "coffee_mask.png"), "--out", "o", "--split", "1"],
     "--split is for automatic mode: leave out --mask"),
    (["decompose", str(EX / "coffee.png"), "--out", "o", "--split", "2"], "split 2: only 0 cut(s) offered"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_automatic_mode_says_the_cuts_it_offers_and_split_takes_them(tmp_path, capsys):
    assert main(["decompose", str(EX / "astronaut.png"), "--out", str(tmp_path / "a"), "--offer-cuts"]) == 0
    err = capsys.readouterr().err
    assert "found 1 object(s); 1 cut(s) offered" in err
    assert main(["decompose", str(EX / "astronaut.png"), "--out", str(tmp_path / "b"), "--split", "1"]) == 0
    assert "found 2 object(s)" in capsys.readouterr().err
    assert len(json.loads((tmp_path / "b" / "layers.json").read_text())["layers"]) == 2


def test_unreadable_image_file(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert main(["decompose", str(bad), "--mask", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_psd_to_a_directory_is_an_error(tmp_path, capsys):
    out = tmp_path / "layers"
    main(["decompose", str(EX / "rocket.png"), "--mask", str(EX / "rocket_mask.png"), "--out", str(out)])
    assert main(["export", str(out), "--psd", str(tmp_path)]) == 2
    assert "liwi: error:" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "liwi_core", "decompose", "missing.png", "--mask", "x",
                        "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("liwi: error:")


def test_greyscale_and_rgba_inputs(tmp_path):
    from liwi_core.imageio import save_image
    grey = torch.rand(1, 1, 40, 50)
    rgba = torch.rand(1, 4, 40, 50)
    mask = torch.zeros(1, 1, 40, 50)
    mask[..., 10:30, 10:30] = 1
    save_image(mask, tmp_path / "m.png")
    for name, img in [("g", grey), ("r", rgba)]:
        save_image(img, tmp_path / f"{name}.png")
        assert main(["decompose", str(tmp_path / f"{name}.png"), "--mask", str(tmp_path / "m.png"),
                     "--out", str(tmp_path / name)]) == 0
        assert main(["recompose", str(tmp_path / name), "--out", str(tmp_path / f"{name}_re.png")]) == 0
        src, back = load_image(tmp_path / f"{name}.png"), load_image(tmp_path / f"{name}_re.png")
        assert back.shape == src.shape
        assert psnr(back, src) >= 45


def test_learned_engine_from_the_cli(tmp_path, capsys):
    pytest.importorskip("diffusers")
    from liwi_core.model import LiWiNet
    LiWiNet(base_channels=8, depth=2, working_size=64).save_pretrained(str(tmp_path / "ck"), safe_serialization=True)
    assert main(["decompose", str(EX / "rocket.png"), "--engine", "learned", "--checkpoint", str(tmp_path / "ck"),
                 "--max-objects", "2", "--out", str(tmp_path / "auto")]) == 0
    assert json.loads((tmp_path / "auto" / "layers.json").read_text())["engine"] == "learned"
    (tmp_path / "model.ckpt").write_bytes(b"pickle")
    assert main(["decompose", str(EX / "rocket.png"), "--engine", "learned", "--checkpoint",
                 str(tmp_path / "model.ckpt"), "--out", str(tmp_path / "y")]) == 2
    assert "pickle" in capsys.readouterr().err


def test_truncated_image_is_one_line_without_unclosed_file_warning(tmp_path):
    """The half-read file is closed: no ResourceWarning after the error (seen with -W always)."""
    good = (EX / "coffee.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    out = subprocess.run([sys.executable, "-W", "always", "-m", "liwi_core", "decompose", str(tmp_path / "cut.png"),
                          "--mask", str(EX / "coffee_mask.png"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("liwi: error: cannot read image") and "cut.png" in lines[0], lines


def test_engine_flags_come_from_the_settings_declaration():
    from liwi_core.cli import build_parser
    from liwi_core.engines import settings_type
    from liwi_core.options import option_specs

    help_text = build_parser()._subparsers._group_actions[0].choices["decompose"].format_help()
    for name in ("classical", "learned", "baseline"):
        for f, meta in option_specs(settings_type(name)):
            assert (meta["cli"] or "--" + f.name.replace("_", "-")) in help_text, (name, f.name)


def test_recompose_and_export_read_an_ora(tmp_path):
    assert main(["decompose", str(EX / "rocket.png"), "--mask", str(EX / "rocket_mask.png"), "--out",
                 str(tmp_path / "layers"), "--ora", str(tmp_path / "r.ora"), "--no-refine"]) == 0
    assert main(["recompose", str(tmp_path / "r.ora"), "--out", str(tmp_path / "from_ora.png")]) == 0
    assert main(["recompose", str(tmp_path / "layers"), "--out", str(tmp_path / "from_dir.png")]) == 0
    a = np.asarray(Image.open(tmp_path / "from_ora.png"), np.float32)
    b = np.asarray(Image.open(tmp_path / "from_dir.png"), np.float32)
    assert np.abs(a - b).max() <= 2
    assert main(["export", str(tmp_path / "r.ora"), "--png", str(tmp_path / "back"), "--psd", str(tmp_path / "r.psd")]) == 0
    assert (tmp_path / "back" / "layers.json").is_file() and (tmp_path / "r.psd").read_bytes()[:4] == b"8BPS"


def test_edit_of_a_missing_layer_is_one_line(tmp_path, capsys):
    assert main(["decompose", str(EX / "rocket.png"), "--mask", str(EX / "rocket_mask.png"), "--out",
                 str(tmp_path / "layers"), "--no-refine"]) == 0
    capsys.readouterr()
    assert main(["recompose", str(tmp_path / "layers"), "--out", str(tmp_path / "x.png"), "--edit", "5:dx=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["liwi: error: layer_index 5 out of range: the stack has 1 layers"]
