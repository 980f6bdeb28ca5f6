"""Export formats: layers folder, PSD (read back with psd-tools), OpenRaster."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from liwi_core.errors import LiWiError
from liwi_core.export import (
    export_layers,
    load_layers_dir,
    load_stack,
    packbits_rows,
    read_ora,
    save_layers_dir,
    write_ora,
    write_psd,
)
from liwi_core.layers import Layer, LayerStack

Q = 1.0 / 255.0
TOL = Q + 1e-6
NAMES = ["mug", "Stuhl ä 椅子"]


def _blob(h, w, cy, cx, r):
    """Soft disc ``[1,1,H,W]``: 1 in the middle, falling to exactly 0 at radius ``r``."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    return (1.0 - ((yy - cy) ** 2 + (xx - cx) ** 2) / r ** 2).clamp(0, 1)[None, None]


def make_stack(h=37, w=53, seed=0) -> LayerStack:
    """Two objects with soft alphas; a grey (1-channel) and a coloured (3-channel) shadow."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda c: torch.rand(1, c, h, w, generator=g)  # noqa: E731
    a1 = _blob(h, w, 14, 18, 10) ** 0.5
    a2 = _blob(h, w, 22, 36, 12) ** 0.7
    s1 = 1.0 - 0.6 * _blob(h, w, 26, 20, 9)
    s2 = 1.0 - _blob(h, w, 30, 38, 11) * torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    return LayerStack(
        background=rand(3),
        layers=[
            Layer(rgba=torch.cat([rand(3), a1], 1), shadow=s1, name=NAMES[0], prompt_index=0),
            Layer(rgba=torch.cat([rand(3), a2], 1), shadow=s2, name=NAMES[1], prompt_index=None),
        ],
        hole=(a1 > 0.3).float(),
        canvas_alpha=None,
        channels=3,
        meta={"engine": "test", "settings": {"k": 3, "name": "x"}, "order": [0, 1]},
    )


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _u8(t: torch.Tensor) -> torch.Tensor:
    """Quantise like an 8-bit file does."""
    return torch.round(t.clamp(0, 1) * 255) / 255


def _assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL):
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = float((a - b).abs().max())
    assert diff <= tol, diff


def _assert_same_stack(got: LayerStack, ref: LayerStack, full_colour: bool):
    """Equal within 8-bit quantisation; colour compared everywhere or only where alpha > 0."""
    _assert_close(got.background, ref.background)
    assert [l.name for l in got.layers] == [l.name for l in ref.layers]
    assert [l.prompt_index for l in got.layers] == [l.prompt_index for l in ref.layers]
    for lg, lr in zip(got.layers, ref.layers):
        _assert_close(lg.alpha, lr.alpha)
        _assert_close(lg.shadow, lr.shadow)
        if full_colour:
            _assert_close(lg.rgba, lr.rgba)
        else:
            seen = _u8(lr.alpha) > 0
            _assert_close(lg.rgba[:, :3] * seen, lr.rgba[:, :3] * seen)
    assert got.channels == ref.channels
    assert got.meta["engine"] == ref.meta["engine"]
    assert got.meta["settings"] == ref.meta["settings"]
    assert _psnr(got.composite(), ref.composite()) >= 45.0


# --------------------------------------------------------------------------- layers folder


def test_folder_round_trip(tmp_path):
    stack = make_stack()
    written = save_layers_dir(stack, tmp_path / "out" / "deep", extra_meta={"source": "photo.jpg"})
    names = sorted(p.name for p in written)
    assert names == sorted(["background.png", "layer_00.png", "layer_01.png", "shadow_00.png",
                            "shadow_01.png", "shadow.png", "hole.png", "layers.json"])
    folder = tmp_path / "out" / "deep"
    assert Image.open(folder / "background.png").mode == "RGB"
    assert Image.open(folder / "layer_01.png").mode == "RGBA"
    assert Image.open(folder / "shadow_00.png").mode == "L"
    assert Image.open(folder / "shadow_01.png").mode == "RGB"
    assert Image.open(folder / "shadow.png").mode == "RGB"
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*"))
    doc = json.loads((folder / "layers.json").read_text(encoding="utf-8"))
    assert doc["size"] == {"width": 53, "height": 37}
    assert doc["order"] == "back_to_front" and "over" in doc["composite"]
    assert doc["engine"] == "test" and doc["settings"] == {"k": 3, "name": "x"}
    assert doc["meta"]["source"] == "photo.jpg"
    assert [(l["file"], l["shadow_file"], l["name"], l["blend"], l["shadow_blend"]) for l in doc["layers"]] == [
        ("layer_00.png", "shadow_00.png", NAMES[0], "normal", "multiply"),
        ("layer_01.png", "shadow_01.png", NAMES[1], "normal", "multiply"),
    ]

    back = load_layers_dir(folder)
    _assert_same_stack(back, stack, full_colour=True)
    assert back.layers[0].shadow.shape[1] == 1 and back.layers[1].shadow.shape[1] == 3
    _assert_close(back.hole, stack.hole)
    assert back.canvas_alpha is None
    assert back.meta["source"] == "photo.jpg"
    _assert_close(back.combined_shadow(), load_layers_dir(folder).combined_shadow(), 0)


def test_folder_keeps_canvas_alpha(tmp_path):
    stack = make_stack()
    stack.canvas_alpha = _blob(37, 53, 18, 26, 30)
    stack.channels = 4
    paths = save_layers_dir(stack, tmp_path)
    assert tmp_path / "alpha.png" in paths
    back = load_layers_dir(tmp_path)
    _assert_close(back.canvas_alpha, stack.canvas_alpha)
    assert back.channels == 4


def test_folder_errors_name_the_file(tmp_path):
    stack = make_stack()
    with pytest.raises(LiWiError, match="layers.json"):
        load_layers_dir(tmp_path)
    save_layers_dir(stack, tmp_path)
    manifest = tmp_path / "layers.json"
    good = manifest.read_text(encoding="utf-8")

    manifest.write_text("{not json", encoding="utf-8")
    with pytest.raises(LiWiError, match="layers.json"):
        load_layers_dir(tmp_path)

    doc = json.loads(good)
    doc["layers"][0]["file"] = "../escape.png"
    manifest.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(LiWiError, match="plain name"):
        load_layers_dir(tmp_path)

    manifest.write_text(good, encoding="utf-8")
    Image.new("RGBA", (10, 10)).save(tmp_path / "layer_01.png")
    with pytest.raises(LiWiError, match="layer_01.png") as err:
        load_layers_dir(tmp_path)
    assert "\n" not in str(err.value)

    (tmp_path / "layer_01.png").unlink()
    with pytest.raises(LiWiError, match="layer_01.png"):
        load_layers_dir(tmp_path)


def test_batch_of_two_is_refused(tmp_path):
    stack = make_stack()
    two = LayerStack(background=stack.background.repeat(2, 1, 1, 1))
    for fn in (lambda: save_layers_dir(two, tmp_path), lambda: write_psd(two, tmp_path / "a.psd"),
               lambda: write_ora(two, tmp_path / "a.ora")):
        with pytest.raises(LiWiError, match="select"):
            fn()


@pytest.mark.parametrize("writer", ["psd", "ora", "dir"])
def test_bad_paths(tmp_path, writer):
    stack = make_stack()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    write = {"psd": write_psd, "ora": write_ora, "dir": save_layers_dir}[writer]
    bad = [a_file / "sub" / f"x.{writer}", a_file / f"x.{writer}"]
    bad += [a_file] if writer == "dir" else [tmp_path]     # a file for a folder, a folder for a file
    for path in bad:
        with pytest.raises(LiWiError) as err:
            write(stack, path)
        assert "\n" not in str(err.value)
    if writer != "dir":
        target = tmp_path / "new" / "dirs" / f"x.{writer}"
        write(stack, target)
        assert target.is_file()


# --------------------------------------------------------------------------- shared layer list


def test_export_layers_order_and_crop():
    stack = make_stack()
    layers = list(export_layers(stack))
    assert [(e.name, e.blend, e.role) for e in layers] == [
        ("Background", "normal", "background"),
        (f"{NAMES[0]} shadow", "multiply", "shadow"), (NAMES[0], "normal", "object"),
        (f"{NAMES[1]} shadow", "multiply", "shadow"), (NAMES[1], "normal", "object"),
    ]
    assert layers[0].pixels.shape == (37, 53, 4)
    for e in layers[1:]:
        h, w = e.pixels.shape[:2]
        assert 0 < h < 37 and 0 < w < 53        # cropped to where the layer does something
        assert (e.pixels[0, :, 3] > 0).any() and (e.pixels[:, -1, 3] > 0).any()


# --------------------------------------------------------------------------- PackBits


def _unpack(data: bytes, size: int) -> bytes:
    out, i = bytearray(), 0
    while len(out) < size:
        n = data[i]
        if n < 128:
            out += data[i + 1:i + 2 + n]
            i += 2 + n
        elif n > 128:
            out += bytes([data[i + 1]]) * (257 - n)
            i += 2
        else:
            i += 1
    assert len(out) == size
    return bytes(out)


@pytest.mark.parametrize("width", [1, 2, 3, 127, 128, 129, 257, 600])
def test_packbits_rows_round_trip(width):
    rng = np.random.default_rng(width)
    rows = [rng.integers(0, 256, width), np.zeros(width), rng.integers(0, 2, width),
            np.repeat(rng.integers(0, 3, width // 4 + 1), 4)[:width]]
    a = np.stack(rows).astype(np.uint8)
    counts, data = packbits_rows(a)
    assert counts.sum() == len(data)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for y in range(a.shape[0]):
        assert _unpack(data[offsets[y]:offsets[y + 1]], width) == a[y].tobytes()
    if width >= 3:                                       # runs of 3+ become repeat packets
        assert counts[1] == 2 * math.ceil(width / 128)  # a constant row: 2 bytes per 128


# --------------------------------------------------------------------------- PSD


def _psd_pixels(layer, channels: int) -> np.ndarray:
    arr = np.asarray(layer.numpy(), dtype=np.float64)
    assert arr.shape[2] == channels, arr.shape
    return arr


def test_psd_layers_and_composite(tmp_path):
    psd_tools = pytest.importorskip("psd_tools")
    from psd_tools.constants import BlendMode

    stack = make_stack()
    path = write_psd(stack, tmp_path / "sub" / "stack.psd")
    psd = psd_tools.PSDImage.open(path)
    assert (psd.width, psd.height, psd.depth, psd.channels) == (53, 37, 8, 3)
    layers = list(psd)
    assert [l.name for l in layers] == ["Background", f"{NAMES[0]} shadow", NAMES[0],
                                        f"{NAMES[1]} shadow", NAMES[1]]
    assert [l.blend_mode for l in layers] == [BlendMode.NORMAL, BlendMode.MULTIPLY, BlendMode.NORMAL,
                                              BlendMode.MULTIPLY, BlendMode.NORMAL]
    assert all(l.visible and l.opacity == 255 for l in layers)

    hw = lambda t: t[0].permute(1, 2, 0).numpy().astype(np.float64)  # noqa: E731
    assert layers[0].bbox == (0, 0, 53, 37)
    np.testing.assert_allclose(_psd_pixels(layers[0], 4)[..., :3], hw(stack.background), atol=TOL)
    for i, layer in enumerate(stack.layers):
        shadow_l, object_l = layers[1 + 2 * i], layers[2 + 2 * i]
        # object: RGBA inside its box, nothing outside it
        left, top, right, bottom = object_l.bbox
        assert (right - left, bottom - top) != (53, 37)
        ref = hw(layer.rgba)
        np.testing.assert_allclose(_psd_pixels(object_l, 4), ref[top:bottom, left:right], atol=TOL)
        outside = ref[..., 3].copy()
        outside[top:bottom, left:right] = 0
        assert outside.max() < 0.5 * Q
        # shadow: multiply by the map inside its box, the map is 1 outside it
        left, top, right, bottom = shadow_l.bbox
        sh = hw(layer.shadow.expand(1, 3, -1, -1))
        got = _psd_pixels(shadow_l, 4)
        a = got[..., 3:]
        np.testing.assert_allclose(1 - a + a * got[..., :3], sh[top:bottom, left:right], atol=TOL)
        outside = sh.copy()
        outside[top:bottom, left:right] = 1
        assert outside.min() > 1 - 0.5 * Q

    ref = hw(stack.composite())
    merged = np.asarray(psd.topil().convert("RGB"), dtype=np.float64) / 255
    assert np.abs(merged - ref).max() <= TOL                       # stored merged image
    rendered = np.asarray(psd.composite(force=True).convert("RGB"), dtype=np.float64) / 255
    assert np.abs(rendered - ref).mean() <= 2 * Q                   # psd-tools' own renderer
    assert np.abs(rendered - ref).max() <= 4 * Q


def test_psd_empty_layers_and_long_names(tmp_path):
    psd_tools = pytest.importorskip("psd_tools")
    stack = make_stack()
    stack.layers[0].shadow = torch.ones_like(stack.layers[0].shadow)     # casts no shadow
    stack.layers[1].rgba = torch.zeros_like(stack.layers[1].rgba)        # shadow only
    stack.layers[1].name = "Ω" * 300
    psd = psd_tools.PSDImage.open(write_psd(stack, tmp_path / "e.psd"))
    layers = list(psd)
    assert len(layers) == 5
    assert layers[4].name == "Ω" * 300
    assert layers[1].bbox == (0, 0, 0, 0) and layers[4].bbox == (0, 0, 0, 0)
    rendered = np.asarray(psd.composite(force=True).convert("RGB"), dtype=np.float64) / 255
    ref = stack.composite()[0].permute(1, 2, 0).numpy()
    assert np.abs(rendered - ref).mean() <= 2 * Q


def test_psd_is_compressed(tmp_path):
    stack = make_stack(200, 300)
    stack.background = torch.full_like(stack.background, 0.5)
    path = write_psd(stack, tmp_path / "flat.psd")
    assert path.stat().st_size < 0.5 * 200 * 300 * 3 * 6   # raw would hold ~6 full RGB(A) planes+


# --------------------------------------------------------------------------- OpenRaster


def test_ora_structure(tmp_path):
    stack = make_stack()
    path = write_ora(stack, tmp_path / "stack.ora")
    raw = path.read_bytes()
    assert raw[30:38] == b"mimetype" and raw[38:54] == b"image/openraster"  # first, no extra field
    with zipfile.ZipFile(path) as z:
        first = z.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert z.read("mimetype") == b"image/openraster"
        names = set(z.namelist())
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png", "data/background.png",
                "data/layer_00.png", "data/shadow_01.png"} <= names
        root = ET.fromstring(z.read("stack.xml"))
        assert (root.get("w"), root.get("h")) == ("53", "37")
        layers = list(root.iter("layer"))
        assert [l.get("name") for l in layers] == [NAMES[1], f"{NAMES[1]} shadow", NAMES[0],
                                                  f"{NAMES[0]} shadow", "Background"]
        ops = [l.get("composite-op") for l in layers]
        assert ops == ["svg:src-over", "svg:multiply", "svg:src-over", "svg:multiply", "svg:src-over"]
        for l in layers:
            assert l.get("src") in names
        with Image.open(z.open("mergedimage.png")) as im:
            merged = np.asarray(im.convert("RGB"), dtype=np.float64) / 255
        with Image.open(z.open("Thumbnails/thumbnail.png")) as im:
            assert max(im.size) <= 256
    ref = stack.composite()[0].permute(1, 2, 0).numpy()
    assert np.abs(merged - ref).max() <= TOL


def test_ora_thumbnail_is_small(tmp_path):
    stack = make_stack(300, 520)
    with zipfile.ZipFile(write_ora(stack, tmp_path / "big.ora")) as z:
        with Image.open(z.open("Thumbnails/thumbnail.png")) as im:
            assert im.size == (256, 148)


def test_ora_round_trip(tmp_path):
    stack = make_stack()
    back = read_ora(write_ora(stack, tmp_path / "stack.ora"))
    _assert_same_stack(back, stack, full_colour=False)
    assert back.layers[0].shadow.shape[1] == 1 and back.layers[1].shadow.shape[1] == 3
    _assert_close(back.hole, stack.hole)


def test_ora_round_trip_without_our_manifest(tmp_path):
    """An ORA re-saved by another program (no liwi.json) still reads: shadows pair by position."""
    stack = make_stack()
    src = write_ora(stack, tmp_path / "stack.ora")
    dst = tmp_path / "plain.ora"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename != "liwi.json":
                zout.writestr(info, zin.read(info.filename))
    back = read_ora(dst)
    assert [l.name for l in back.layers] == NAMES
    assert [l.shadow.shape[1] for l in back.layers] == [1, 3]        # grey maps stay grey
    assert _psnr(back.composite(), stack.composite()) >= 45.0


def test_ora_empty_layers(tmp_path):
    stack = make_stack()
    stack.layers[0].shadow = torch.ones_like(stack.layers[0].shadow)
    stack.layers[1].rgba = torch.zeros_like(stack.layers[1].rgba)
    back = read_ora(write_ora(stack, tmp_path / "e.ora"))
    assert len(back.layers) == 2
    _assert_close(back.layers[0].shadow, stack.layers[0].shadow)
    assert float(back.layers[1].alpha.max()) == 0.0
    assert _psnr(back.composite(), stack.composite()) >= 45.0


def test_read_ora_errors(tmp_path):
    with pytest.raises(LiWiError, match="no such file"):
        read_ora(tmp_path / "missing.ora")
    junk = tmp_path / "junk.ora"
    junk.write_bytes(b"not a zip")
    with pytest.raises(LiWiError, match="junk.ora"):
        read_ora(junk)


# --------------------------------------------------------------------------- load_stack


@pytest.mark.parametrize("kind", ["folder", "ora", "ORA"])
def test_load_stack_reads_folder_and_ora(tmp_path, kind):
    """A layers folder and an .ora file (any case) give back the stack written, within 8-bit rounding."""
    stack = make_stack()
    stack.canvas_alpha = _blob(37, 53, 18, 26, 30)
    stack.channels = 4
    if kind == "folder":
        save_layers_dir(stack, tmp_path / "layers")
        back = load_stack(tmp_path / "layers")
    else:
        back = load_stack(write_ora(stack, tmp_path / f"stack.{kind}"))
    _assert_same_stack(back, stack, full_colour=kind == "folder")
    assert [l.shadow.shape[1] for l in back.layers] == [1, 3]
    _assert_close(back.hole, stack.hole)
    _assert_close(back.canvas_alpha, stack.canvas_alpha)
    assert back.channels == 4


def test_load_stack_folder_and_ora_agree(tmp_path):
    stack = make_stack()
    save_layers_dir(stack, tmp_path / "layers")
    from_dir = load_stack(str(tmp_path / "layers"))
    from_ora = load_stack(str(write_ora(stack, tmp_path / "stack.ora")))
    for a, b in zip(from_dir.layers, from_ora.layers):
        _assert_close(a.alpha, b.alpha, 0)
        _assert_close(a.shadow, b.shadow, 0)
    _assert_close(from_dir.background, from_ora.background, 0)
    _assert_close(from_dir.composite(), from_ora.composite(), TOL)


@pytest.mark.parametrize("name, match", [
    ("notes.txt", "layers folder"),          # exists, neither a folder nor an .ora
    ("missing", "no such file"),             # nothing there
    ("missing.ora", "no such file"),
    ("empty_folder", "layers.json"),         # a folder without a manifest
])
def test_load_stack_errors(tmp_path, name, match):
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(LiWiError, match=match) as info:
        load_stack(tmp_path / name)
    assert "\n" not in str(info.value) and name in str(info.value)
