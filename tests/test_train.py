"""The learned model: training, checkpoints, resume, ablation switches, loading errors."""

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from helpers import scene, write_scene_dataset  # noqa: E402
from liwi_core import LiWiError  # noqa: E402
from liwi_core.decompose import decompose  # noqa: E402
from liwi_core.engines import create
from liwi_core.proposals import ProposalSettings  # noqa: E402
from liwi_core.engines.learned import load_model  # noqa: E402
from liwi_core.metrics import recompose_psnr  # noqa: E402
from liwi_core.model import LiWiNet  # noqa: E402
from liwi_core import train as trainer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

TINY = json.loads((ROOT / "training" / "configs" / "tiny.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_scene_dataset(tmp_path_factory.mktemp("train_data"), 3, 64, 80, prefix="d")


def _config(data, out, **kw):
    return trainer.TrainConfig(**{**TINY, "data": str(data), "out": str(out), **kw})


def test_loss_falls(data, tmp_path):
    result = trainer.train(_config(data, tmp_path, steps=40), log=lambda *_: None)
    losses = [h["loss"] for h in result["history"]]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_resume_is_exact(data, tmp_path):
    straight = trainer.train(_config(data, tmp_path / "a", steps=6, checkpoint_every=3), log=lambda *_: None)
    trainer.train(_config(data, tmp_path / "b", steps=6, checkpoint_every=3), log=lambda *_: None, stop_at=3)
    resumed = trainer.train(_config(data, tmp_path / "b", steps=6, checkpoint_every=3), resume=True,
                            log=lambda *_: None)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"][3:]]
    for (name, a), (_, b) in zip(straight["model"].state_dict().items(), resumed["model"].state_dict().items()):
        assert torch.equal(a, b), name
    # and the checkpoint on disk is the model: save and load give identical weights
    loaded = load_model(tmp_path / "b" / "checkpoint-latest")
    for (name, a), (_, b) in zip(loaded.state_dict().items(), resumed["model"].state_dict().items()):
        assert torch.equal(a, b), name


def test_each_switch_turns_its_term_off(data):
    cfg = trainer.TrainConfig(**TINY)
    g = torch.Generator().manual_seed(0)
    batch = trainer.SampleBank(str(data)).batch(cfg, g)
    model = LiWiNet(base_channels=8, depth=2, working_size=64)
    out = model(batch["image"], batch["prompt"])
    full = trainer.loss_terms(out, batch, cfg.loss_weights)
    assert set(full) == set(trainer.LOSSES) and all(float(v.detach()) > 0 for v in full.values())
    for name in trainer.LOSSES:
        terms = trainer.loss_terms(out, batch, {**cfg.loss_weights, name: 0.0})
        assert name not in terms and set(terms) == set(trainer.LOSSES) - {name}
    clean = trainer.TrainConfig(**{**TINY, "degrade": False, "p_automatic": 0.0})
    b2 = trainer.SampleBank(str(data)).batch(clean, torch.Generator().manual_seed(1))
    assert torch.equal(b2["prompt"], (b2["alpha"] > 0.5).float())


def test_empty_or_missing_data_fails_before_any_step(tmp_path):
    with pytest.raises(LiWiError, match="does not exist"):
        trainer.train(_config(tmp_path / "none", tmp_path / "o"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LiWiError, match="no finished samples"):
        trainer.train(_config(tmp_path / "empty", tmp_path / "o"))
    assert not (tmp_path / "o" / "checkpoint-latest").exists()


def test_learned_engine_is_lossless_and_runs_automatic(data, tmp_path):
    result = trainer.train(_config(data, tmp_path, steps=3), log=lambda *_: None)
    model = load_model(tmp_path / "checkpoint-latest")
    image, _, _, _, rough = scene(90, 70, seed=5)
    stack = decompose(image, rough, create("learned", model=model))
    assert stack.meta["engine"] == "learned" and recompose_psnr(stack.composite(), image) >= 45
    auto = decompose(image, None, create("learned", model=model), find=ProposalSettings(max_objects=2))
    assert recompose_psnr(auto.composite(), image) >= 45 and len(auto.layers) <= 2


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(LiWiError, match="pickle"):
        load_model(tmp_path / "model.pt")
    with pytest.raises(LiWiError, match="config.json is missing"):
        load_model(tmp_path)
    model = LiWiNet(base_channels=8, depth=2, working_size=64)
    model.save_pretrained(str(tmp_path / "ok"), safe_serialization=True)
    weights = next((tmp_path / "ok").glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(LiWiError, match="cannot load checkpoint"):
        load_model(tmp_path / "ok")
    model.save_pretrained(str(tmp_path / "other"), safe_serialization=True)
    cfg = json.loads((tmp_path / "other" / "config.json").read_text())
    (tmp_path / "other" / "config.json").write_text(json.dumps({**cfg, "_class_name": "UNet2DModel"}))
    with pytest.raises(LiWiError, match="not a LiWiNet"):
        load_model(tmp_path / "other")
    model.save_pretrained(str(tmp_path / "mismatch"), safe_serialization=True)
    (tmp_path / "mismatch" / "config.json").write_text(json.dumps({**cfg, "base_channels": 16}))
    with pytest.raises(LiWiError, match="cannot load checkpoint"):
        load_model(tmp_path / "mismatch")


def test_prefill_model_starts_from_the_fill_and_warm_start_keeps_what_fits(tmp_path):
    from liwi_core.model import LiWiNet, fill_outside

    old = LiWiNet(base_channels=8, depth=2, working_size=64).eval()
    old.save_pretrained(str(tmp_path / "old"), safe_serialization=True)
    new = LiWiNet(base_channels=8, depth=2, working_size=64, prefill=True).eval()
    trainer.warm_start(new, str(tmp_path / "old"))
    image, _, _, _, rough = scene(48, 64)
    with torch.no_grad():
        before, after = old(image, rough), new(image, rough)
    assert torch.allclose(before["alpha"], after["alpha"], atol=1e-6)  # the new input starts with no effect
    assert torch.allclose(after["background"], fill_outside(image, rough))  # the background starts as the fill
    hole = rough > 0.5
    assert float((fill_outside(image, rough) - image).abs()[hole.expand(-1, 3, -1, -1)].mean()) > 0.05
    assert torch.equal(fill_outside(image, torch.zeros_like(rough)), image)  # automatic mode: nothing to fill
    assert torch.equal(fill_outside(image, torch.ones_like(rough)), image)   # nothing known: left as it is


def test_alpha_loss_weighs_the_band_the_prompt_gets_wrong():
    alpha = torch.zeros(1, 1, 100, 100)
    alpha[..., 30:70, 30:70] = 1.0
    prompt = torch.zeros_like(alpha)
    prompt[..., 28:72, 28:72] = 1.0  # dilated by 2 px
    batch = {"alpha": alpha, "prompt": prompt}
    copied = trainer.loss_terms({"alpha": prompt}, batch, {"alpha": 1.0})["alpha"]
    plain = (prompt - alpha).abs().mean()
    assert copied > 3 * plain  # copying the prompt is not nearly free
    assert float(trainer.loss_terms({"alpha": alpha}, batch, {"alpha": 1.0})["alpha"]) == 0.0


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, "steps must be"), ({"batch_size": 0}, "batch_size must be"), ({"crop": -8}, "crop must be"),
    ({"checkpoint_every": 0}, "checkpoint_every must be"), ({"lr": 0.0}, "lr must be"),
    ({"loss_weights": {name: 0.0 for name in trainer.LOSSES}}, "every loss term is off"),
    ({"loss_weights": {"alpha": 1.0, "shadows": 1.0}}, "unknown loss 'shadows'"),
])
def test_settings_that_cannot_train_fail_before_anything_is_written(data, tmp_path, change, message):
    with pytest.raises(LiWiError, match=message):
        trainer.train(_config(data, tmp_path / "run", **change), log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_a_run_folder_is_never_replaced_and_its_log_has_each_step_once(data, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LiWiError, match="is a file"):
        trainer.train(_config(data, tmp_path / "file"), log=lambda *_: None)
    out = tmp_path / "run"
    trainer.train(_config(data, out, steps=6, checkpoint_every=2), log=lambda *_: None, stop_at=3)
    saved = (out / "checkpoint-latest" / "trainer_state.json").read_text()
    # killed after step 3, its checkpoint at step 2: a rerun without --resume would start over on it
    with pytest.raises(LiWiError, match="already holds a checkpoint"):
        trainer.train(_config(data, out, steps=6, checkpoint_every=2), log=lambda *_: None)
    assert (out / "checkpoint-latest" / "trainer_state.json").read_text() == saved
    trainer.train(_config(data, out, steps=6, checkpoint_every=2), resume=True, log=lambda *_: None)
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
