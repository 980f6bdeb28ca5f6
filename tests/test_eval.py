import json

import pytest

from helpers import write_scene_dataset
from liwi_core.eval import evaluate, main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_scene_dataset(tmp_path_factory.mktemp("evalset"), 2, 48, 64, prefix="t")


def test_ground_truth_against_itself_is_perfect(dataset, tmp_path):
    from liwi_core.dataset import iter_samples
    from liwi_core.export import save_layers_dir
    for s in iter_samples(dataset):
        save_layers_dir(s.stack, tmp_path / s.id)
    r = evaluate(dataset, f"folder:{tmp_path}")
    m = r["means"]
    assert r["samples"] == 2
    assert m["dtw_rgb_l1@0"] == 0.0 and m["dtw_alpha_iou@0"] == 1.0
    assert m["prompt_alpha_iou"] == 1.0 and m["background_l1_hole"] == 0.0 and m["shadow_l1"] == 0.0
    assert m["recompose_psnr"] >= 45


def test_classical_beats_baseline_on_alpha_and_is_lossless(dataset):
    classical = evaluate(dataset, "classical")["means"]
    baseline = evaluate(dataset, "baseline")["means"]
    assert classical["prompt_alpha_iou"] > baseline["prompt_alpha_iou"]
    assert classical["recompose_psnr"] >= 45
    auto = evaluate(dataset, "classical", flavour="automatic")
    assert auto["samples"] == 0 and "connect a MASK" in next(iter(auto["failed"].values()))


def test_cli_prints_table_and_json(dataset, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main([str(dataset), "--flavours", "prompted", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| classical | prompted | 2 |" in text and "| baseline | prompted | 2 |" in text
    results = json.loads(out.read_text())
    assert {r["engine"] for r in results} == {"classical", "baseline"}


def test_cli_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "no finished samples" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no finished samples" in capsys.readouterr().err
