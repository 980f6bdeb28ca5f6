"""ADD runner, agents and dataset together: determinism, resumability, sharding, curation."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from liwi_core import Layer, LayerStack
from liwi_core.add.agents import curate
from liwi_core.add.run import AddConfig, main, run, scan_sources
from liwi_core.dataset import iter_samples, sample_ids
from liwi_core.metrics import recompose_psnr

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "example_images"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The example photos (with their masks in a separate folder) plus a few bad files."""
    root = tmp_path_factory.mktemp("photos")
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ["coffee", "chelsea", "astronaut", "rocket"]:
        shutil.copy(EX / f"{name}.png", images / f"{name}.png")
        shutil.copy(EX / f"{name}_mask.png", masks / f"{name}_mask.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    from PIL import Image
    Image.new("RGB", (20, 20)).save(images / "tiny.png")
    Image.new("L", (200, 200), 128).save(images / "grey.png")
    Image.new("RGB", (200, 100)).save(masks / "nobody_mask.png")
    good = (EX / "rocket.png").read_bytes()
    (images / "truncated.png").write_bytes(good[: len(good) // 2])
    frames = [Image.new("RGB", (100, 100), c) for c in ("red", "blue")]
    frames[0].save(images / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (1300, 1000), "green").save(images / "huge.png")
    Image.open(EX / "coffee.png").convert("CMYK").save(images / "cmyk.jpg")
    return images, masks


def _config(photos, out, num=6, **kw):
    images, masks = photos
    return AddConfig(images=str(images), masks=str(masks), out=str(out), num=num, seed=3, size=128, **kw)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "samples").rglob("*")) if p.is_file()}


def test_scan_skips_bad_files_with_reasons(photos):
    sources, skipped = scan_sources(str(photos[0]), str(photos[1]), max_pixels=1_000_000)
    assert sorted(s.id for s in sources) == ["astronaut", "chelsea", "cmyk", "coffee", "rocket"]
    assert [s.is_donor for s in sources if s.id == "cmyk"] == [False]  # converted, used as a background
    assert sorted(skipped["unreadable"]) == ["broken", "truncated"] and skipped["tiny"] == ["tiny"]
    assert skipped["animated"] == ["animated"] and skipped["huge"] == ["huge"]
    assert skipped["greyscale"] == ["grey"] and len(skipped["mask matches no photo"]) == 1


def test_masks_beside_their_photos():
    sources, skipped = scan_sources(str(EX), str(EX))
    assert {s.id: [Path(m).name for m in s.masks] for s in sources} == {
        n: [f"{n}_mask.png"] for n in ["astronaut", "chelsea", "coffee", "rocket"]}
    assert "mask matches no photo" not in skipped


def test_run_writes_samples_that_read_back_and_recompose(photos, tmp_path):
    composed = {}
    stats = run(_config(photos, tmp_path), progress=False, on_sample=lambda s: composed.__setitem__(s.id, s))
    assert stats["kept"] >= 4 and stats["kept"] + stats["dropped"] == 6
    assert stats["skipped_files"]["unreadable"] == 2
    # the cat fills its frame: cut off by the photo's edge, never pasted as an object
    assert stats["skipped_files"]["object cut off by its photo's edge (not used as foreground)"] >= 1
    assert not any("chelsea" in str(s.meta["tools"]["objects"]) for s in composed.values())
    for sample in iter_samples(tmp_path):
        original = composed[sample.id]
        assert float((sample.composite - original.composite).abs().max()) <= 1 / 255 + 1e-6
        assert len(sample.stack.layers) == len(original.stack.layers)
        for a, b in zip(sample.stack.layers, original.stack.layers):
            assert float((a.rgba - b.rgba).abs().max()) <= 1 / 255 + 1e-6
        # lossless from the files on disk
        assert recompose_psnr(sample.stack.composite(), sample.composite) >= 45
        assert set(sample.prompts[0]) == {"eroded", "dilated", "blurred", "box", "scribble"}
        assert sample.meta["curator"]["score"] > 0
    log = (tmp_path / "log" / "rank-000.jsonl").read_text().splitlines()
    assert len(log) >= 6 and all("reasons" in json.loads(line) for line in log)


def test_killed_run_resumes_to_the_same_samples(photos, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    run(_config(photos, clean), progress=False)

    class Kill(Exception):
        pass

    made = []

    def die_after_two(sample):
        made.append(sample.id)
        if len(made) == 2:
            raise Kill()

    with pytest.raises(Kill):
        run(_config(photos, killed), progress=False, on_sample=die_after_two)
    assert len(sample_ids(killed)) == 2
    (killed / "samples" / ".tmp-half-written").mkdir()  # what a kill mid-write leaves
    stats = run(_config(photos, killed), progress=False)
    assert stats["already_done"] == 2
    assert _files(killed) == _files(clean)


def test_rank_split_has_no_duplicate_and_no_gap(photos, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run(_config(photos, one), progress=False)
    for r in range(2):
        run(_config(photos, two), rank=r, world_size=2, progress=False)
    assert _files(two) == _files(one)


def test_accelerate_launch_splits_the_work(photos, tmp_path):
    pytest.importorskip("accelerate")
    out = tmp_path / "acc"
    images, masks = photos
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # --multi_gpu is accelerate's torchrun-style launcher; with no GPU its processes run on the CPU
    # (--cpu with several processes wants an MPI set-up instead)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "liwi_core.add", "--images", str(images), "--masks", str(masks), "--out", str(out),
           "--num", "6", "--seed", "3", "--size", "128", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted((out / "log").glob("summary-rank-*.json"))]
    assert [s["rank"] for s in summaries] == [0, 1] and all(s["world_size"] == 2 for s in summaries)
    single = tmp_path / "single"
    run(_config(photos, single), progress=False)
    assert sample_ids(out) == sample_ids(single)  # no duplicate, no gap
    # same samples; the launched processes use one thread each, which can flip an 8-bit rounding
    split = {s.id: s for s in iter_samples(out)}
    for s in iter_samples(single):
        assert float((split[s.id].composite - s.composite).abs().max()) <= 2 / 255


def _stack_with(alpha, shadow=None):
    h, w = alpha.shape[-2:]
    rgba = torch.cat([torch.full((1, 3, h, w), 0.2), alpha], dim=1)
    shadow = torch.ones(1, 1, h, w) if shadow is None else shadow
    bg = torch.linspace(0.5, 0.9, w).view(1, 1, 1, w).expand(1, 3, h, w).contiguous()
    stack = LayerStack(background=bg, layers=[Layer(rgba, shadow)])
    return stack, stack.composite()


def _disc(h=96, w=96, cx=48, cy=48, r=20):
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return ((r - torch.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)) / 2 + 0.5).clamp(0, 1)[None, None]


def test_curator_keeps_a_good_sample_and_rejects_planted_bad_ones():
    good = curate(*_stack_with(_disc()), set())
    assert good.keep, good.reasons
    empty = curate(*_stack_with(torch.zeros(1, 1, 96, 96)), set())
    assert not empty.keep and any("empty" in r for r in empty.reasons)
    cut = curate(*_stack_with(_disc(cx=5)), set())
    assert not cut.keep and any("cut off" in r for r in cut.reasons)
    dark = curate(*_stack_with(_disc(), torch.full((1, 1, 96, 96), 0.5)), set())
    assert not dark.keep and any("shadow covers" in r for r in dark.reasons)
    block = torch.zeros(1, 1, 96, 96)
    block[..., 30:60, 30:60] = 1.0
    hard = curate(*_stack_with(block), set())
    assert not hard.keep and any("hard block" in r for r in hard.reasons)
    dup = curate(*_stack_with(_disc()), {good.key})
    assert not dup.keep and any("duplicate" in r for r in dup.reasons)


def test_cli_errors(tmp_path, capsys):
    assert main(["--images", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no usable photos" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory):
    """Ready cut-outs: a soft-edged disc, plus files that are not cut-outs."""
    from PIL import Image

    root = tmp_path_factory.mktemp("cutouts")
    yy, xx = torch.meshgrid(torch.arange(90.0), torch.arange(70.0), indexing="ij")
    alpha = ((30 - ((yy - 45) ** 2 + (xx - 35) ** 2).sqrt()) / 2).clamp(0, 1)
    rgba = torch.stack([0.9 * torch.ones_like(alpha), 0.3 + 0.2 * xx / 70, 0.1 * torch.ones_like(alpha), alpha])
    Image.fromarray((rgba.permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8"), "RGBA").save(root / "disc.png")
    Image.new("RGB", (80, 80), "red").save(root / "opaque.png")  # no transparency
    Image.new("RGBA", (80, 80), (0, 0, 0, 0)).save(root / "empty.png")
    Image.new("LA", (80, 80), (128, 255)).save(root / "grey.png")
    return root


def test_ready_cutouts_become_objects_with_their_own_alpha(photos, cutouts, tmp_path):
    backgrounds = tmp_path / "bg"
    backgrounds.mkdir()
    shutil.copy(EX / "rocket.png", backgrounds / "rocket.png")
    stats = run(AddConfig(images=str(backgrounds), objects=str(cutouts), out=str(tmp_path / "out"), num=4, seed=1,
                          size=128, max_objects=1), progress=False)
    assert stats["kept"] >= 3
    assert stats["skipped_files"] == {"cut-out without transparency": 1, "cut-out alpha all transparent or all opaque": 1,
                                      "greyscale": 1}
    for sample in iter_samples(tmp_path / "out"):
        assert sample.meta["background"] == "rocket" and sample.meta["tools"]["objects"] == [["objects/disc", 0]]
        alpha = sample.stack.layers[0].alpha
        soft = ((alpha > 0.05) & (alpha < 0.95)).float().sum() / (alpha > 0.05).float().sum()
        assert 0.02 < float(soft) < 0.5  # the disc's soft rim survived (not a binary mask, not a blur)
        assert recompose_psnr(sample.stack.composite(), sample.composite) > 45


def test_cutouts_alone_need_a_background(cutouts, tmp_path):
    assert main(["--images", str(cutouts), "--out", str(tmp_path / "o"), "--num", "1", "--quiet"]) == 2


def test_dark_objects_are_darkened_copies_and_leave_the_rest_of_the_sample_alone(photos, cutouts, tmp_path,
                                                                                 monkeypatch):
    """Some objects are made dark (a black helmet beside another object: a shadow model must not
    take it for a shadow); the choice draws from its own stream, so placement, shadows and prompts
    are those of the same seed without it."""
    import liwi_core.add.run as add_run

    backgrounds = tmp_path / "bg"
    backgrounds.mkdir()
    shutil.copy(EX / "rocket.png", backgrounds / "rocket.png")
    stacks = {}
    for share in (0.0, 1.0):
        monkeypatch.setattr(add_run, "DARK_OBJECTS", share)
        out = tmp_path / f"out{share}"
        run(AddConfig(images=str(backgrounds), objects=str(cutouts), out=str(out), num=3, seed=2, size=128,
                      max_objects=1), progress=False)
        stacks[share] = {s.id: s.stack for s in iter_samples(out)}
    assert stacks[0.0].keys() == stacks[1.0].keys() and stacks[0.0]
    for sid, plain in stacks[0.0].items():
        dark = stacks[1.0][sid]
        for a, b in zip(plain.layers, dark.layers):
            assert torch.equal(a.alpha, b.alpha) and torch.equal(a.shadow, b.shadow)
            inside = a.alpha > 0.5
            ratio = float(b.rgba[:, :3][inside.expand(1, 3, -1, -1)].mean() / a.rgba[:, :3][inside.expand(1, 3, -1, -1)].mean())
            assert 0.04 < ratio < 0.26


def test_a_sample_without_objects_is_not_kept():
    stack, _ = _stack_with(_disc())
    bare = LayerStack(background=stack.background, layers=[])
    verdict = curate(bare, bare.composite(), set())
    assert not verdict.keep and "no object layer" in verdict.reasons


def test_cutouts_never_become_backgrounds(cutouts, tmp_path, capsys):
    (tmp_path / "none").mkdir()
    assert main(["--images", str(tmp_path / "none"), "--objects", str(cutouts), "--out", str(tmp_path / "o"),
                 "--num", "2", "--size", "64", "--quiet"]) == 2
    assert "no usable background photo" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--max-objects", "0"], "max_objects must be"), (["--max-objects", "-1"], "max_objects must be"),
    (["--num", "-3"], "num must be"), (["--size", "0"], "size must be"), (["--attempts", "0"], "attempts must be"),
])
def test_add_flags_out_of_range(photos, tmp_path, capsys, flags, message):
    images, _ = photos
    assert main(["--images", str(images), "--out", str(tmp_path / "o"), *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_add_config_is_checked_and_flags_win(photos, tmp_path, capsys):
    images, masks = photos
    for doc, message in (('{"num": "abc"}', "num must be"), ('{"bogus": 1}', "unknown option 'bogus'"),
                         ("[1]", "must be a JSON object")):
        (tmp_path / "c.json").write_text(doc)
        assert main(["--images", str(images), "--out", str(tmp_path / "o"), "--config", str(tmp_path / "c.json")]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main(["--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "afile"), "--num", "1"]) == 2
    assert "it is a file" in capsys.readouterr().err
    (tmp_path / "c.json").write_text('{"num": 5, "size": 96, "seed": 7}')
    assert main(["--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "o"), "--config",
                 str(tmp_path / "c.json"), "--num", "1", "--seed", "0", "--quiet"]) == 0
    written = json.loads((tmp_path / "o" / "config.json").read_text())
    assert (written["num"], written["size"], written["seed"]) == (1, 96, 0)  # a flag wins, even at its default


def test_a_folder_holds_samples_of_one_size(photos, tmp_path, capsys):
    images, masks = photos
    common = ["--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "o"), "--num", "1", "--quiet"]
    assert main(common + ["--size", "96"]) == 0
    assert main(common + ["--size", "128"]) == 2
    assert "holds samples made with size 96" in capsys.readouterr().err


def test_masks_that_cannot_serve_are_skipped_and_counted(tmp_path):
    from PIL import Image

    from liwi_core.add.agents import Source
    from liwi_core.add.run import _review_masks

    Image.new("RGB", (80, 60), "white").save(tmp_path / "p.png")
    good = np.zeros((60, 80), np.uint8)
    good[20:40, 30:50] = 255
    Image.fromarray(good).save(tmp_path / "p_mask1.png")
    Image.fromarray(good[::2, ::2]).save(tmp_path / "p_mask2.png")  # another size
    Image.new("L", (80, 60), 0).save(tmp_path / "p_mask3.png")  # empty
    (tmp_path / "p_mask4.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    source = Source("p", str(tmp_path / "p.png"), [str(tmp_path / f"p_mask{k}.png") for k in (1, 2, 3, 4)])
    skipped: dict[str, list[str]] = {}
    _review_masks([source], 0.35, skipped)
    assert source.masks == [str(tmp_path / "p_mask1.png")] and source.donor_masks == [0]
    assert {k: len(v) for k, v in skipped.items()} == {"mask not the size of its photo": 1, "empty mask": 1,
                                                       "unreadable mask": 1}


def test_in_memory_add_without_a_usable_mask_is_a_clear_error():
    from liwi_core.add.run import synthesize
    from liwi_core.errors import LiWiError

    with pytest.raises(LiWiError, match="at least one object mask"):
        synthesize(torch.rand(0, 3, 64, 64), None, num=1)
    with pytest.raises(LiWiError, match="at least one object mask"):
        synthesize(torch.rand(1, 3, 64, 64), None, num=1)
