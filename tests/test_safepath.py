"""confined_path and the confined dataset writer: nothing a remote user types may lead out of the root."""

import os

import pytest
import torch

from liwi_core.dataset import Sample, write_sample
from liwi_core.errors import LiWiError
from liwi_core.layers import Layer, LayerStack
from liwi_core.safepath import confined_path


@pytest.mark.parametrize("value, reason", [
    ("/etc/x", "absolute"), ("\\\\server\\share", "absolute"), ("\\x", "absolute"), ("C:x", "drive"),
    ("c:\\x", "drive"), ("..", "'..'"), ("../x", "'..'"), ("a/../../x", "'..'"), ("a/../b", "'..'"),
    ("a\\..\\..\\x", "'..'"), ("a\x00b", "NUL"),
])
def test_refused(tmp_path, value, reason):
    with pytest.raises(LiWiError, match=f"^save_folder: .*{reason}") as info:
        confined_path(tmp_path, value, "save_folder", "the output folder")
    assert "\n" not in str(info.value) and str(tmp_path) not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_symlink_leading_out_is_refused_and_inside_is_kept(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "in").symlink_to(root / "real", target_is_directory=True)
    with pytest.raises(LiWiError, match="link"):
        confined_path(root, "out/new/deeper", "save_folder")
    assert confined_path(root, "in/new", "save_folder") == root / "in" / "new"


@pytest.mark.parametrize("value", ["", "ds", "a/b/c", "name with spaces", "x..y"])
def test_plain_relative_paths_are_kept(tmp_path, value):
    assert confined_path(tmp_path, value, "save_folder") == tmp_path / value


def _sample(sample_id: str) -> Sample:
    rgba = torch.zeros(1, 4, 8, 8)
    rgba[:, :, 2:6, 2:6] = 1
    stack = LayerStack(background=torch.full((1, 3, 8, 8), 0.5), layers=[Layer(rgba=rgba, shadow=torch.ones(1, 1, 8, 8))],
                       hole=torch.zeros(1, 1, 8, 8))
    return Sample(id=sample_id, composite=stack.composite(), stack=stack)


def test_confined_writer_refuses_a_samples_link_leading_out(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "samples").symlink_to(outside, target_is_directory=True)
    with pytest.raises(LiWiError, match="link"):
        write_sample(root, _sample("s0"), confined=True)
    assert list(outside.iterdir()) == []
    # the command line (not confined) follows the user's link
    assert (write_sample(root, _sample("s0")) / "sample.json").is_file()
    assert (outside / "s0" / "sample.json").is_file()


@pytest.mark.parametrize("bad_id", ["../s", "a/b", "..", "", "a\\b"])
def test_sample_ids_are_plain_names(tmp_path, bad_id):
    with pytest.raises(LiWiError, match="plain name"):
        write_sample(tmp_path, _sample(bad_id))
    assert not os.listdir(tmp_path)
