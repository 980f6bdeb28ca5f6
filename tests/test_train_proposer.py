"""Automatic mode's proposer: its truth, its start from the saliency network, training, and how
its two maps become one proposal per object."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from liwi_core.proposals import _parts_between_edges
from liwi_core.saliency import U2NetP, load_saliency_model, normalise
from liwi_core.train_proposer import init_from_saliency, proposal_targets


def _square(h, w, y0, y1, x0, x1):
    a = torch.zeros(1, h, w)
    a[:, y0:y1, x0:x1] = 1
    return a


def test_targets_mark_objects_and_the_rims_between_touching_ones():
    back = _square(40, 60, 5, 30, 5, 30)
    front = _square(40, 60, 15, 35, 25, 50)  # overlaps the back square's right side
    objects, edges = proposal_targets(torch.stack([back, front]))
    assert torch.equal(objects.bool(), (back[0] + front[0]) > 0)
    assert edges[20, 25] == 1  # the front square's rim, where it covers the back one
    assert edges[20, 24] == 1  # the back square's visible part ends there too
    assert edges[20, 15] == 0 and edges[25, 40] == 0  # insides
    assert edges[0, 0] == 0 and edges[38, 58] == 0  # outside every object
    cut = _square(40, 60, 0, 20, 0, 20)  # touches the frame: the frame is no rim
    _, rim = proposal_targets(cut[None])
    assert rim[0, 10] == 0 and rim[19, 10] == 1
    assert proposal_targets(torch.zeros(0, 1, 8, 8)).sum() == 0


def test_the_proposer_starts_as_the_saliency_network_and_sure_of_no_edges():
    saliency = load_saliency_model()
    proposer = init_from_saliency()
    assert proposer.config.out_channels == 2
    x = normalise(torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        reference = saliency(x, return_dict=False)[0]
        maps = proposer(x, return_dict=False)[0]
    assert torch.allclose(maps[:, :1], reference, atol=1e-5)
    assert float(maps[:, 1].max()) < 0.05


def test_two_touching_objects_come_apart_along_their_rim():
    objects = np.zeros((60, 90), bool)
    objects[10:50, 10:45] = True
    objects[15:45, 45:80] = True  # touches the first along x = 45
    edges = np.zeros((60, 90))
    edges[:, 43:47] = 0.9
    parts = _parts_between_edges(objects, edges, min_area=100)
    assert len(parts) == 2
    left, right = sorted(parts, key=lambda p: np.nonzero(p)[1].mean())
    assert left[30, 20] and right[30, 70] and not left[30, 70]
    assert (left | right).sum() == objects.sum()
    # no rim across it: one object
    assert len(_parts_between_edges(objects, np.zeros((60, 90)), min_area=100)) == 1


def test_fit_writes_a_loadable_proposer_and_resumes(tmp_path):
    from helpers import write_scene_dataset

    from liwi_core.proposals import find_objects
    from liwi_core.train_proposer import fit

    data = write_scene_dataset(tmp_path / "data", 3, 64, 80, prefix="p")
    config = {"size": 96, "batch_size": 2, "steps": 3, "lr": 1e-4, "warmup_steps": 1, "zoom": 0.5,
              "log_every": 1, "save_every": 1, "val_every": 100, "reload_every": 2}
    lines: list[str] = []
    fit(data, tmp_path / "run", {**config, "steps": 2}, log=lines.append)
    state = torch.load(tmp_path / "run" / "checkpoint-latest" / "training_state.pt", weights_only=True)
    assert state["step"] == 2
    assert json.loads(lines[1])["step"] == 0 and "objects_iou" in json.loads(lines[1])["val"]
    fit(data, tmp_path / "run", config, log=lines.append)
    assert '"resume_step": 2' in "".join(lines)
    model = load_saliency_model(tmp_path / "run" / "checkpoint-latest")
    assert isinstance(model, U2NetP) and model.config.out_channels == 2
    image = torch.rand(1, 3, 64, 80)
    found = find_objects(image, model=model)  # the two-map path runs end to end
    assert found.masks.shape[1:] == (1, 64, 80) and found.saliency.shape == (1, 1, 64, 80)


def test_a_missing_starting_checkpoint_is_a_one_line_error(tmp_path):
    from helpers import write_scene_dataset

    from liwi_core.errors import LiWiError
    from liwi_core.train_proposer import fit

    data = write_scene_dataset(tmp_path / "data", 1, 32, 32, prefix="m")
    with pytest.raises(LiWiError, match="init_from"):
        fit(data, tmp_path / "run", {"init_from": str(tmp_path / "nowhere"), "steps": 1, "batch_size": 1, "lr": 1e-4})


def test_the_teacher_marks_the_photos_own_objects_and_frees_their_rims():
    from liwi_core.train_proposer import TEACHER_EDGE_FREE, teacher_targets

    placed = _square(40, 60, 5, 30, 5, 30)
    targets = proposal_targets(placed[None])[None].repeat(2, 1, 1, 1)
    teacher = torch.zeros(2, 1, 40, 60)
    teacher[:, :, 10:30, 40:55] = 0.8  # an object of the photo itself, right of the placed one
    teacher[:, :, 10:20, 10:20] = 0.1  # the teacher doubts part of the placed object
    bare = torch.tensor([False, True])
    taught, weight = teacher_targets(targets, teacher, bare)
    assert taught[0, 0, 15, 15] == 1  # a placed object stays an object whatever the teacher says
    assert abs(float(taught[0, 0, 20, 45]) - 0.8) < 1e-6 and taught[0, 0, 35, 58] == 0
    assert torch.equal(taught[:, 1], targets[:, 1])  # the rims of placed objects are as they were
    assert weight[0, 0].min() == 1  # the objects channel is taught everywhere
    assert weight[0, 1, 20, 45] == 0 and 0.8 > TEACHER_EDGE_FREE  # no rim truth on the photo's object
    assert weight[0, 1, 5, 10] == 1 and weight[0, 1, 35, 58] == 1
    assert weight[1, 1].max() == 0  # a bare background teaches no rims at all


def test_fit_with_a_teacher_sees_bare_backgrounds_and_reports_the_taught_iou(tmp_path):
    from helpers import write_scene_dataset

    from liwi_core.train_proposer import _Scenes, fit

    data = write_scene_dataset(tmp_path / "data", 3, 64, 80, prefix="t")
    from liwi_core.dataset import sample_ids
    scenes = _Scenes(data, sample_ids(data), 48, augment=True, bare=1.0, background=True)
    image, targets, background, bare = scenes[0]
    assert bare and torch.equal(image, background) and targets.sum() == 0
    assert _Scenes(data, sample_ids(data), 48, augment=False)[0][2].numel() == 0  # no teacher, no background
    for looked_at in ("background", "composite"):
        config = {"size": 64, "batch_size": 2, "steps": 2, "lr": 1e-4, "warmup_steps": 1, "teacher": True,
                  "bare": 0.5, "teacher_input": looked_at, "log_every": 1, "save_every": 1, "val_every": 100,
                  "reload_every": 2}
        lines: list[str] = []
        fit(data, tmp_path / looked_at, config, log=lines.append)
        val = [v for v in (json.loads(line).get("val") for line in lines) if isinstance(v, dict)]
        assert val and all("taught_iou" in v and 0 <= v["taught_iou"] <= 1 for v in val)
