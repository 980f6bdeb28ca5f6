
import pytest
import torch

from liwi_core import Layer, LayerStack, LiWiError
from liwi_core.dataset import Sample, iter_samples, pack_shards, sample_ids, write_sample


def _sample(i: int) -> Sample:
    g = torch.Generator().manual_seed(i)
    h, w = 23, 31
    rgba = torch.rand(1, 4, h, w, generator=g)
    shadow = torch.rand(1, 1, h, w, generator=g) * 0.5 + 0.5
    stack = LayerStack(background=torch.rand(1, 3, h, w, generator=g), layers=[Layer(rgba, shadow, "obj", 0)],
                       hole=(rgba[:, 3:] > 0.5).float())
    prompts = [{"box": (torch.rand(1, 1, h, w, generator=g) > 0.5).float(), "blurred": rgba[:, 3:]}]
    return Sample(id=f"s{i:04d}", composite=stack.composite(), stack=stack, prompts=prompts, meta={"seed": i})


def _close(a, b):
    return float((a - b).abs().max()) <= 1 / 255 + 1e-6


def test_folder_roundtrip(tmp_path):
    s = _sample(1)
    write_sample(tmp_path, s)
    (back,) = list(iter_samples(tmp_path))
    assert back.id == s.id and back.meta["seed"] == 1
    assert _close(back.composite, s.composite)
    assert _close(back.stack.layers[0].rgba, s.stack.layers[0].rgba)
    assert _close(back.stack.layers[0].shadow, s.stack.layers[0].shadow)
    assert _close(back.prompts[0]["blurred"], s.prompts[0]["blurred"])
    assert set(back.prompts[0]) == {"box", "blurred"}


def test_unfinished_samples_are_invisible(tmp_path):
    write_sample(tmp_path, _sample(1))
    (tmp_path / "samples" / ".tmp-s0002-abcd").mkdir()
    (tmp_path / "samples" / "s0003").mkdir()  # no sample.json: half written by an old tool
    assert sample_ids(tmp_path) == ["s0001"]


def test_shards_and_ranks(tmp_path):
    for i in range(7):
        write_sample(tmp_path, _sample(i))
    pack_shards(tmp_path, shard_size=3, remove_folders=True)
    assert len(list((tmp_path / "shards").glob("*.tar"))) == 3
    assert not any((tmp_path / "samples").iterdir())
    all_ids = [s.id for s in iter_samples(tmp_path)]
    assert sorted(all_ids) == [f"s{i:04d}" for i in range(7)]
    split = [s.id for r in range(2) for s in iter_samples(tmp_path, rank=r, world_size=2)]
    assert sorted(split) == sorted(all_ids)
    # a shard sample reads back as written
    back = next(s for s in iter_samples(tmp_path) if s.id == "s0004")
    assert _close(back.stack.background, _sample(4).stack.background)


def test_empty_and_corrupt_datasets(tmp_path):
    with pytest.raises(LiWiError, match="no finished samples"):
        list(iter_samples(tmp_path))
    folder = write_sample(tmp_path, _sample(1))
    (folder / "layers.json").write_text("{not json")
    with pytest.raises(LiWiError, match="corrupt"):
        list(iter_samples(tmp_path))


def test_pack_checks_its_folder_and_size_and_removes_folders_packed_before(tmp_path):
    from liwi_core.cli import main

    with pytest.raises(LiWiError, match="not a dataset folder"):
        pack_shards(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
    assert main(["dataset", "info", str(tmp_path / "nowhere")]) == 2
    for i in range(3):
        write_sample(tmp_path, _sample(i))
    with pytest.raises(LiWiError, match="at least 1"):
        pack_shards(tmp_path, shard_size=0)
    pack_shards(tmp_path, shard_size=2)  # packed, folders kept
    pack_shards(tmp_path, remove_folders=True)  # nothing new to pack: the packed folders go now
    assert not any((tmp_path / "samples").iterdir())
    assert sorted(s.id for s in iter_samples(tmp_path)) == ["s0000", "s0001", "s0002"]
    (tmp_path / "index.json").write_text('{"shards": [{"file": "shards/shard-000000.tar"}]}')
    with pytest.raises(LiWiError, match="list of"):
        sample_ids(tmp_path)


def test_a_half_written_copy_of_a_sample_goes_once_it_is_written_whole(tmp_path):
    stale = tmp_path / "samples" / ".tmp-s0001-deadbeef"
    stale.mkdir(parents=True)
    (stale / "background.png").write_bytes(b"half")
    write_sample(tmp_path, _sample(1))
    assert not stale.exists() and sample_ids(tmp_path) == ["s0001"]
