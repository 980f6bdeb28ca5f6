import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import write_scene_dataset
from liwi_core.engines import create
from liwi_core.dataset import iter_samples
from liwi_core.eval import AUTO_METRICS, HIGHER_IS_BETTER, METRICS, TABLE, evaluate, main, score_sample
from liwi_core.export import save_layers_dir
from liwi_core.metrics import alpha_soft_iou


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_scene_dataset(tmp_path_factory.mktemp("evalset"), 2, 48, 64, prefix="t")


@pytest.fixture(scope="module")
def truth_dir(dataset, tmp_path_factory):
    """The ground truth written as another tool's predictions (CLI folder format)."""
    out = tmp_path_factory.mktemp("truth")
    for s in iter_samples(dataset):
        save_layers_dir(s.stack, out / s.id)
    return out


def test_ground_truth_against_itself_is_perfect(dataset, truth_dir):
    r = evaluate(dataset, f"folder:{truth_dir}")
    m = r["means"]
    assert r["samples"] == 2 and not r["failed"]
    for k in range(6):
        assert m[f"dtw_cost@{k}"] == 0.0 and m[f"dtw_rgb_l1@{k}"] == 0.0 and m[f"dtw_alpha_iou@{k}"] == 1.0
    assert m["prompt_alpha_iou"] == 1.0 and m["prompt_rgb_l1"] == 0.0
    assert m["background_l1_hole"] == 0.0 and m["shadow_l1"] == 0.0
    assert m["recompose_psnr"] >= 45
    assert all(row["prompt_match"] == "prompt_index" for row in r["rows"])


def test_prompt_metrics_pair_by_position_without_prompt_index(dataset):
    sample = next(iter_samples(dataset))
    pred = replace(sample.stack, layers=[replace(l, prompt_index=None) for l in sample.stack.layers])
    row = score_sample(sample, pred)
    assert row["prompt_match"] == "position" and row["prompt_alpha_iou"] == 1.0
    assert len(row["dtw"]) == 6 and row["dtw"][0]["pairs"] == [(0, 0), (1, 1)]


def test_a_worse_prediction_scores_worse(dataset):
    sample = next(iter_samples(dataset))
    layer = sample.stack.layers[0]
    moved = replace(layer, rgba=torch.roll(layer.rgba, 4, dims=-1))
    row = score_sample(sample, replace(sample.stack, layers=[moved]))
    assert 0.3 < row["prompt_alpha_iou"] < 0.95 and row["dtw_alpha_iou@0"] < 1.0
    assert row["recompose_psnr"] < 40


def test_baseline_is_the_mask_the_image_and_telea():
    from helpers import scene
    image, _, alpha, _, rough = scene(48, 64)
    masks = torch.cat([rough, (alpha > 0.5).float()])  # front to back
    stack = create("baseline").decompose(image, masks, names=["a", "b"])
    assert [l.prompt_index for l in stack.layers] == [1, 0] and [l.name for l in stack.layers] == ["b", "a"]
    assert torch.equal(stack.layers[1].alpha, rough) and torch.equal(stack.layers[1].rgba[:, :3], image)
    assert all(torch.equal(l.shadow, torch.ones_like(l.shadow)) for l in stack.layers)
    assert torch.equal(stack.hole, rough)
    outside = (rough == 0).expand_as(image)
    assert (stack.background - image).abs()[outside].max() <= 0.5 / 255 + 1e-6  # only 8-bit rounding
    # the hole is filled from the surroundings, not left as the object's blue
    assert stack.background[0, 2][rough[0, 0] > 0].mean() < image[0, 2][rough[0, 0] > 0].mean() - 0.1
    assert (stack.composite() - image).abs().max() <= 0.5 / 255 + 1e-6


def test_classical_beats_baseline_on_alpha_and_is_lossless(dataset):
    classical = evaluate(dataset, "classical")["means"]
    baseline = evaluate(dataset, "baseline")["means"]
    assert classical["prompt_alpha_iou"] > baseline["prompt_alpha_iou"]
    assert classical["dtw_alpha_iou@0"] > baseline["dtw_alpha_iou@0"]
    assert classical["recompose_psnr"] >= 45
    # automatic: the classical engine decomposes the salient-object proposals, scored by the matching
    auto = evaluate(dataset, "classical", flavour="automatic")
    # the order metric only where two matched objects touch
    assert auto["samples"] and set(AUTO_METRICS) - {"auto_order_right"} <= set(auto["means"])
    assert "prompt_alpha_iou" not in auto["means"]


def test_cli_classical_with_baseline_prints_table_and_json(dataset, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main([str(dataset), "--engine", "classical", "--compare-baseline", "--flavours", "prompted",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    print(text)
    classical_row = next(line for line in text.splitlines() if line.startswith("| classical | prompted | 2 |"))
    assert "x)" in classical_row  # ratios to the baseline
    assert "| baseline | prompted | 2 |" in text and "5 edits" in text
    results = json.loads(out.read_text())
    assert [r["engine"] for r in results] == ["classical", "baseline"]
    for r in results:
        assert set(METRICS) - set(AUTO_METRICS) <= set(r["means"]) and r["samples"] == 2
        assert not set(AUTO_METRICS) & set(r["means"])  # automatic flavour only
        assert r["peak_rss_mb"] > 0 and "peak_extra_mb" in r
        row = r["rows"][0]
        assert {"id", "seconds", "dtw", "prompt_match"} <= set(row)
        assert [d["edits"] for d in row["dtw"]] == list(range(6))
        assert {"cost", "rgb_l1", "alpha_iou", "pairs"} <= set(row["dtw"][0])
    assert results[0]["means"]["recompose_psnr"] >= 45


def test_cli_single_engines_folder_and_limit(dataset, truth_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths must survive the per-engine processes
    (tmp_path / "preds").symlink_to(truth_dir)
    out = tmp_path / "f.json"
    assert main([str(dataset), "--engine", "folder", "--pred-dir", "preds", "--flavours", "prompted",
                 "--limit", "1", "--json", str(out)]) == 0
    (r,) = json.loads(out.read_text())
    assert r["engine"].startswith("folder:") and r["samples"] == 1 and r["means"]["dtw_alpha_iou@0"] == 1.0
    assert main([str(dataset), "--engine", "baseline", "--flavours", "prompted", "--prompt", "box"]) == 0
    text = capsys.readouterr().out
    assert "| baseline | prompted | 2 |" in text and "x)" not in text and "| classical" not in text


def test_cli_errors(dataset, tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no finished samples" in capsys.readouterr().err
    assert main([]) == 2
    assert "give a DATASET" in capsys.readouterr().err
    assert main([str(dataset), "--engine", "folder"]) == 2
    assert "--pred-dir" in capsys.readouterr().err
    assert main([str(dataset), "--engine", "folder", "--pred-dir", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(dataset), "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err
    assert main([str(dataset), "--engine", "baseline", "--flavours", "prompted", "--prompt", "scribble"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no 'scribble' prompt" in err and "liwi: error: liwi" not in err


def test_prompts_go_front_to_back_and_pair_with_their_layers(tmp_path):
    """Two objects: the engine gets the masks front to back and each layer is scored against
    the ground-truth layer its prompt came from (a mix-up would give an IoU near 0)."""
    from liwi_core import Layer, LayerStack
    from liwi_core.dataset import Sample, write_sample
    from liwi_core.filters import dilate

    h, w = 48, 64
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    bg = torch.stack([0.5 + 0.3 * xx / w, 0.6 + 0 * xx, 0.3 + 0.2 * yy / h])[None]
    layers, prompts = [], []
    for k, (cx, colour) in enumerate([(18.0, [0.9, 0.1, 0.1]), (44.0, [0.1, 0.1, 0.9])]):
        alpha = ((9 - ((xx - cx) ** 2 + (yy - 24) ** 2).sqrt()) / 2 + 0.5).clamp(0, 1)[None, None]
        rgba = torch.cat([torch.tensor(colour).view(1, 3, 1, 1).expand(1, 3, h, w), alpha], 1)
        layers.append(Layer(rgba, torch.ones(1, 1, h, w), f"disc{k}", k))
        prompts.append({"dilated": dilate((alpha > 0.5).float(), 2)})
    hole = (sum(l.alpha for l in layers) > 0).float()
    stack = LayerStack(background=bg, layers=layers, hole=hole)
    write_sample(tmp_path, Sample("two", stack.composite(), stack, prompts, {}))
    for engine in ("classical", "baseline"):
        r = evaluate(tmp_path, engine, flavour="prompted")
        assert r["rows"][0]["prompt_alpha_iou"] > 0.6, engine
        assert r["means"]["dtw_alpha_iou@0"] > 0.6, engine


# --------------------------------------------------------------------------- automatic flavour: object matching


def _disc(cx, cy, r, h=48, w=64):
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return ((r - ((xx - cx) ** 2 + (yy - cy) ** 2).sqrt()) / 2 + 0.5).clamp(0, 1)[None, None]


def _stack_of(alphas, bg):
    from liwi_core import Layer, LayerStack

    h, w = bg.shape[-2:]
    colour = torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, h, w)
    layers = [Layer(torch.cat([colour, a], 1), torch.ones(1, 1, h, w), f"o{k}", None) for k, a in enumerate(alphas)]
    return LayerStack(background=bg, layers=layers)


def test_automatic_scores_match_objects_one_to_one():
    from liwi_core.dataset import Sample

    bg = torch.full((1, 3, 48, 64), 0.5)
    x, y, z = _disc(14, 24, 9), _disc(48, 24, 9), _disc(32, 8, 5)
    gt = _stack_of([x, y], bg)
    sample = Sample("auto", gt.composite(), gt, [], {})

    def auto(alphas):
        row = score_sample(sample, _stack_of(alphas, bg), prompted=False)
        assert "prompt_alpha_iou" not in row and row["prompt_match"] is None
        return row["auto_matched_iou"], row["auto_missed"], row["auto_spurious"]

    assert auto([y, x]) == (1.0, 0.0, 0.0)  # order does not matter
    assert auto([x]) == (0.5, 1.0, 0.0)  # y missed: it scores 0
    assert auto([x, z, y]) == (1.0, 0.0, 1.0)  # z spurious
    assert auto([x, y, torch.zeros_like(x)]) == (1.0, 0.0, 0.0)  # an empty layer is not spurious
    near = torch.roll(x, 2, dims=-1)
    iou, missed, spurious = auto([near, x])  # two predictions for x: the better wins, the other is spurious
    assert (iou, missed, spurious) == (0.5, 1.0, 1.0)
    iou, missed, spurious = auto([near, y])
    assert abs(iou - (alpha_soft_iou(near, x) + 1.0) / 2) < 1e-6 and 0.5 < iou < 1.0 and missed == spurious == 0
    assert auto([torch.roll(x, 12, dims=-1)]) == (0.0, 2.0, 1.0)  # too far off to count
    row = score_sample(sample, _stack_of([y], bg), prompted=False)
    assert row["auto_pairs"] == [(0, 1, 1.0)]
    assert not set(AUTO_METRICS) & set(score_sample(sample, _stack_of([x, y], bg)))  # prompted: none


def test_auto_metrics_in_table_and_direction():
    assert set(AUTO_METRICS) <= set(TABLE) and set(AUTO_METRICS) <= set(METRICS)
    assert "auto_matched_iou" in HIGHER_IS_BETTER
    assert not {"auto_missed", "auto_spurious"} & HIGHER_IS_BETTER


def test_cli_automatic_flavour_shows_the_matching_columns(dataset, truth_dir, tmp_path, capsys):
    r = evaluate(dataset, f"folder:{truth_dir}", flavour="automatic")
    assert r["samples"] == 2 and r["prompt"] is None
    assert r["means"]["auto_matched_iou"] == 1.0 and r["means"]["auto_missed"] == r["means"]["auto_spurious"] == 0
    assert "prompt_alpha_iou" not in r["means"]
    out = tmp_path / "a.json"
    assert main([str(dataset), "--engine", "folder", "--pred-dir", str(truth_dir), "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| engine |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert {"auto_matched_iou", "auto_missed", "auto_spurious", "prompt_alpha_iou"} <= set(cols)
    rows = {f: [c.strip() for c in next(line for line in lines if f"| {f} |" in line).strip("|").split("|")]
            for f in ("prompted", "automatic")}
    auto, prompted = rows["automatic"], rows["prompted"]
    i, j = cols.index("auto_matched_iou"), cols.index("prompt_alpha_iou")
    assert auto[i:i + 3] == ["1.0000", "0.00", "0.00"] and auto[j] == "n/a"
    assert prompted[i:i + 3] == ["n/a"] * 3 and prompted[j] == "1.0000"
    results = json.loads(out.read_text())
    assert results[1]["rows"][0]["auto_pairs"] == [[0, 0, 1.0]]


# --------------------------------------------------------------------------- the held-out benchmark's scenes


def _tiny_sources(root):
    """Three held-out and one training cut-out (RGBA PNGs with soft alpha), two background photos."""
    from PIL import Image
    from liwi_core.heldout import is_heldout

    objects, backgrounds = root / "objects", root / "backgrounds"
    objects.mkdir()
    backgrounds.mkdir()
    held = [n for n in (f"thing_{k}x.png" for k in range(200)) if is_heldout(n)][:3]
    train = next(n for n in (f"thing_{k}x.png" for k in range(200)) if not is_heldout(n))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:30]
    for k, name in enumerate(held + [train]):
        alpha = np.clip((12 - np.hypot((xx - 15) / (0.6 + 0.2 * k), yy - 20)) / 2 + 0.5, 0, 1)
        rgb = np.stack([np.full_like(alpha, 0.2 + 0.2 * k), 0.5 + 0.3 * yy / 40, 0.8 - 0.2 * xx / 30], -1)
        Image.fromarray((np.dstack([rgb, alpha]) * 255 + 0.5).astype(np.uint8), "RGBA").save(objects / name)
    for k in range(2):
        photo = (rng.random((50 + 10 * k, 70, 3)) * 0.3 + 0.35 + 0.1 * k) * 255
        Image.fromarray(photo.astype(np.uint8), "RGB").save(backgrounds / f"photo{k}.png")
    Image.fromarray(np.full((60, 60), 128, np.uint8), "L").save(backgrounds / "grey.png")
    return objects, sorted(backgrounds.iterdir()), held, train


SCENES = {"num": 10, "two_objects": 4, "seed": 5, "size": 64}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from liwi_core.benchmark_scenes import build_heldout

    root = tmp_path_factory.mktemp("scenes")
    objects, backgrounds, held, train = _tiny_sources(root)
    out = build_heldout(root / "set", objects, backgrounds, SCENES)
    return out, objects, backgrounds, held, train


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_heldout_scenes_are_deterministic_and_skip_finished(scenes, tmp_path):
    from liwi_core.benchmark_scenes import build_heldout

    out, objects, backgrounds, _, _ = scenes
    again = build_heldout(tmp_path / "again", objects, backgrounds, SCENES)
    first, second = _files(out / "samples"), _files(again / "samples")
    assert len(first) > 10 * 8 and first == second
    # a finished sample is skipped, a missing one rebuilt identically
    (again / "samples" / "hv2-0003" / "sample.json").unlink()
    stamp = (again / "samples" / "hv2-0004" / "composite.png").stat().st_mtime_ns
    build_heldout(again, objects, backgrounds, SCENES)
    assert _files(again / "samples") == first
    assert (again / "samples" / "hv2-0004" / "composite.png").stat().st_mtime_ns == stamp
    with pytest.raises(Exception, match="other sources or settings"):
        build_heldout(again, objects, backgrounds, {**SCENES, "seed": 6})


def test_heldout_scenes_recompose_exactly_and_use_true_alpha(scenes):
    from PIL import Image

    out, objects, _, held, train = scenes
    samples = list(iter_samples(out))
    assert len(samples) == 10
    used = set()
    for s in samples:
        assert (s.stack.composite() - s.composite).abs().max() <= 0.5 / 255 + 1e-6  # only the composite's rounding
        assert torch.equal(s.stack.hole, (sum(l.alpha for l in s.stack.layers) > 0).float().clamp(max=1))
        assert len(s.stack.layers) == len(s.meta["objects"]) == len(s.meta["prompt_kinds"])
        used.update(s.meta["objects"])
        for layer in s.stack.layers:
            strength = layer.shadow_strength
            assert float(strength.max()) > 0.1  # every object casts a shadow
            assert float(strength.max()) <= 0.95
        # the alpha is the cut-out's own: same soft values (resized), not a matte
        alpha = s.stack.layers[-1].alpha
        assert float(((alpha > 0.05) & (alpha < 0.95)).float().sum()) > 5
    assert used == set(held) and train not in used  # only the held-out cut-outs
    ones = [s for s in samples if len(s.stack.layers) == 1]
    assert len(ones) == 6


def test_heldout_scenes_prompt_kinds_are_spread(scenes):
    from collections import Counter
    from liwi_core.benchmark_scenes import SCENE_PROMPT_KINDS, _slots

    out = scenes[0]
    kinds = Counter(k for s in iter_samples(out) for k in s.meta["prompt_kinds"])
    assert set(kinds) == set(SCENE_PROMPT_KINDS) and max(kinds.values()) - min(kinds.values()) <= 1
    full = Counter(k for _, ks in _slots({"num": 40, "two_objects": 12}) for k in ks)
    assert sum(full.values()) == 52 and max(full.values()) - min(full.values()) <= 1
    assert sum(n == 2 for n, _ in _slots({"num": 40, "two_objects": 12})) == 12
    for s in iter_samples(out):  # every kind is written, the own one is a real rough prompt
        for layer, prompts in zip(s.stack.layers, s.prompts):
            assert set(prompts) == set(SCENE_PROMPT_KINDS)
            exact = (layer.alpha > 0.5).float()
            assert torch.equal(prompts["exact"], exact)
            assert prompts["dilated"].sum() > exact.sum() > prompts["eroded"].sum() > 0
            box = prompts["box"][0, 0]
            rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
            assert bool((box >= exact[0, 0]).all()) and box.sum() == len(rows) * len(cols)  # a rectangle around it
            assert not torch.equal(prompts["blob"], exact) and prompts["blob"].sum() > 0


def test_heldout_scenes_use_no_engine_and_no_add_shadow(tmp_path, monkeypatch):
    """Building imports no engine, ADD, matting or shadow module (a fresh process), and calls
    none (here, with them booby-trapped)."""
    import subprocess
    import sys
    import liwi_core.engines
    import liwi_core.shadow
    from liwi_core.benchmark_scenes import build_heldout

    objects, backgrounds, _, _ = _tiny_sources(tmp_path)

    def trap(*a, **k):
        raise AssertionError("the benchmark must not use an engine or ADD's shadows")

    monkeypatch.setattr(liwi_core.engines, "create", trap)
    monkeypatch.setattr(liwi_core.shadow, "synthesize_cast_shadow", trap)
    monkeypatch.setattr(liwi_core.shadow, "estimate_shadow", trap)
    build_heldout(tmp_path / "a", objects, backgrounds, {**SCENES, "num": 3})
    code = ("import sys; from pathlib import Path; from liwi_core.benchmark_scenes import build_heldout; "
            f"build_heldout(Path({str(tmp_path / 'b')!r}), Path({str(objects)!r}), "
            f"[Path(p) for p in {[str(b) for b in backgrounds]!r}], {dict(SCENES, num=2)!r}); "
            "bad = [m for m in sys.modules if m.startswith(('liwi_core.engines', 'liwi_core.add', "
            "'liwi_core.matting', 'liwi_core.shadow', 'liwi_core.proposals', 'liwi_core.baseline'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_benchmark_own_prompts_per_kind_and_missing_objects(scenes, tmp_path, capsys):
    from liwi_core.eval import _kind_table

    out = scenes[0]
    r = evaluate(out, "baseline", prompt="own")
    assert r["samples"] == 10 and r["prompt"] == "own"
    by_kind = r["by_prompt_kind"]
    assert set(by_kind) == {"exact", "dilated", "eroded", "blob", "box"}
    assert sum(v["layers"] for v in by_kind.values()) == 14
    assert by_kind["exact"]["prompt_alpha_iou"] > by_kind["box"]["prompt_alpha_iou"]
    assert all(row["prompt_kinds"] for row in r["rows"])
    assert "| baseline |" in _kind_table([r])
    fixed = evaluate(out, "baseline", prompt="box")
    assert set(fixed["by_prompt_kind"]) == {"box"} and _kind_table([fixed]) == ""
    # the ADD-style test set records no kinds: a one-line error
    assert main([str(out.parent / "nope"), "--prompt", "own"]) == 2
    capsys.readouterr()
    assert main(["--benchmark", str(tmp_path / "b"), "--objects", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "prepare_debian_data.py" in err and "none" in err


def test_own_prompt_needs_recorded_kinds(dataset, capsys):
    assert main([str(dataset), "--engine", "baseline", "--flavours", "prompted", "--prompt", "own"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no prompt kind per layer" in err


def test_tuning_scenes_use_only_training_cut_outs(scenes, tmp_path):
    """The tuning set (``split: training``) draws the training cut-outs, never a held-out one,
    and names its samples apart from the held-out set's."""
    import json

    from liwi_core.benchmark_scenes import build_heldout

    _, objects, backgrounds, held, train = scenes
    out = build_heldout(tmp_path / "dev", objects, backgrounds, {**SCENES, "num": 4, "split": "training"})
    used = set()
    for sample in sorted((out / "samples").iterdir()):
        assert sample.name.startswith("dev-")
        used |= set(json.loads((sample / "sample.json").read_text())["objects"])
    assert used == {train} and not used & set(held)


def test_photo_tuning_scenes_use_the_training_cutouts_on_the_tuning_photos(scenes, tmp_path):
    from liwi_core.benchmark_scenes import DEV_PHOTO_SCENES, build_dev_photos
    from liwi_core.errors import LiWiError

    _, objects, backgrounds, held, train = scenes
    with pytest.raises(LiWiError, match="--tuning"):
        build_dev_photos(tmp_path / "none", objects, tmp_path / "no-photos")
    assert DEV_PHOTO_SCENES["split"] == "training"
    cfg = {**DEV_PHOTO_SCENES, "num": 3, "size": 64}
    out = build_dev_photos(tmp_path / "dev-photos", objects, backgrounds[0].parent, cfg=cfg)
    config = json.loads((out / "config.json").read_text())
    assert config["objects"] == [train] and not set(config["objects"]) & set(held)
    assert config["backgrounds"] == [p.name for p in backgrounds]
    assert len(list((out / "samples").iterdir())) == 3


def test_subject_tuning_scenes_are_the_photo_recipe_on_photos_with_their_own_subject(scenes, tmp_path):
    from liwi_core.benchmark_scenes import DEV_PHOTO_SCENES, DEV_SUBJECT_SCENES, build_dev_subjects
    from liwi_core.errors import LiWiError

    _, objects, backgrounds, held, train = scenes
    with pytest.raises(LiWiError, match="--photos"):
        build_dev_subjects(tmp_path / "none", objects, tmp_path / "no-photos")
    assert DEV_SUBJECT_SCENES["split"] == "training" and DEV_SUBJECT_SCENES["seed"] != DEV_PHOTO_SCENES["seed"]
    out = build_dev_subjects(tmp_path / "dev-subjects", objects, backgrounds[0].parent)
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == DEV_SUBJECT_SCENES["seed"] and config["objects"] == [train]
    assert len(list((out / "samples").iterdir())) == DEV_SUBJECT_SCENES["num"]


def test_soft_tuning_scenes_are_the_photo_scenes_out_of_focus(scenes, tmp_path):
    """``defocus`` puts every object out of focus and changes nothing else: same objects, places,
    backgrounds and prompt kinds; the alpha gains a soft edge; the stack still recomposes."""
    from liwi_core.benchmark_scenes import DEV_PHOTO_SCENES, DEV_SOFT_SCENES, build_dev_photos

    _, objects, backgrounds, _, _ = scenes
    assert {k: v for k, v in DEV_SOFT_SCENES.items() if k != "defocus"} == DEV_PHOTO_SCENES
    sharp_cfg = {**DEV_PHOTO_SCENES, "num": 2, "size": 96}
    sharp = build_dev_photos(tmp_path / "sharp", objects, backgrounds[0].parent, cfg=sharp_cfg)
    soft = build_dev_photos(tmp_path / "soft", objects, backgrounds[0].parent,
                            cfg={**sharp_cfg, "defocus": DEV_SOFT_SCENES["defocus"]})
    for a, b in zip(iter_samples(sharp), iter_samples(soft), strict=True):
        assert a.id == b.id
        for key in ("objects", "background", "boxes", "prompt_kinds"):
            assert a.meta[key] == b.meta[key]
        torch.testing.assert_close(a.stack.background, b.stack.background)
        for la, lb in zip(a.stack.layers, b.stack.layers, strict=True):
            assert _partial(lb.alpha) > 1.5 * _partial(la.alpha)
        assert (b.stack.composite() - b.composite).abs().max() < 1 / 255


def _partial(alpha: torch.Tensor) -> int:
    """Pixels of a soft edge: alpha strictly between 0.02 and 0.98."""
    return int(((alpha > 0.02) & (alpha < 0.98)).sum())


def test_the_background_photos_own_object_is_found_not_made_up(tmp_path):
    """A scene's photo may hold its own subject, which the truth keeps in the background: a layer
    on it is spurious by the truth but not made up (``auto_photo_objects``, ``auto_false_layers``)."""
    from PIL import Image

    from liwi_core.benchmark_scenes import photo_object_mask
    from liwi_core.dataset import Sample

    # the mask is cropped as the scene cropped its photo: resized to "scaled", cut at "crop"
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 20:40] = 255
    Image.fromarray(mask, "L").save(tmp_path / "photo_mask.png")
    record = {"file": "photo.jpg", "scaled": [100, 80], "crop": [30, 10]}
    got = photo_object_mask(record, 32, folders=[tmp_path])
    assert got.shape == (1, 1, 32, 32) and set(got.unique().tolist()) == {0.0, 1.0}
    want = torch.zeros(1, 1, 32, 32)
    want[..., 10:32, 10:32] = 1  # rows 20-60 and columns 40-80 of the 80x100 copy, cut at (30, 10)
    assert torch.equal(got, want)
    assert photo_object_mask({**record, "file": "other.png"}, 32, folders=[tmp_path]) is None
    assert photo_object_mask(None, 32) is None and photo_object_mask({"file": "photo.jpg"}, 32, [tmp_path]) is None

    # a scene over the bundled astronaut photo (example_images/astronaut_mask.png), at 64 px
    background = {"file": "astronaut.png", "scaled": [64, 64], "crop": [0, 0]}
    astronaut = photo_object_mask(background, 64)
    assert 0.3 < float(astronaut.mean()) < 0.6
    bg = torch.full((1, 3, 64, 64), 0.5)
    pasted = _disc(12, 52, 8, 64, 64)
    gt = _stack_of([pasted], bg)
    sample = Sample("astro", gt.composite(), gt, [], {"background": background})
    elsewhere = _disc(56, 8, 5, 64, 64) * (1 - astronaut)

    def counts(alphas):
        row = score_sample(sample, _stack_of(alphas, bg), prompted=False)
        return row["auto_spurious"], row["auto_photo_objects"], row["auto_false_layers"]

    assert counts([pasted, astronaut * (1 - pasted)]) == (1.0, 1.0, 0.0)
    assert counts([pasted, elsewhere]) == (1.0, 0.0, 1.0)
    assert counts([pasted, astronaut * (1 - pasted), elsewhere]) == (2.0, 1.0, 1.0)
    assert counts([pasted]) == (0.0, 0.0, 0.0)
    # the pasted object and the astronaut in one layer: missed and counted as merged (the layer
    # lies on the astronaut, so it is her layer too, not made up)
    row = score_sample(sample, _stack_of([torch.maximum(pasted, astronaut)], bg), prompted=False)
    assert (row["auto_missed"], row["auto_merged"], row["auto_false_layers"]) == (1.0, 1.0, 0.0)
    row = score_sample(sample, _stack_of([elsewhere], bg), prompted=False)
    assert (row["auto_missed"], row["auto_merged"]) == (1.0, 0.0)
    # a scene whose photo has no mask: every spurious layer is made up
    plain = Sample("plain", gt.composite(), gt, [], {"background": {**background, "file": "brick.png"}})
    row = score_sample(plain, _stack_of([pasted, astronaut * (1 - pasted)], bg), prompted=False)
    assert (row["auto_photo_objects"], row["auto_false_layers"]) == (0.0, 1.0)
