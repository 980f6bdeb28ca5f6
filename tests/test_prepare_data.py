"""Training data preparation (training/prepare_debian_data.py): Qt resource bundles and licences."""

import importlib.util
import struct
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("prepare_debian_data", ROOT / "training" / "prepare_debian_data.py")
prepare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare)


def _bundle(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A format-2 Qt resource bundle: one folder ``res`` holding ``files`` (name -> (content, zlib))."""
    names, name_at = b"", {}
    for name in ["res", *files]:
        name_at[name] = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
    data, data_at = b"", {}
    for name, (content, packed) in files.items():
        body = struct.pack(">I", len(content)) + zlib.compress(content) if packed else content
        data_at[name] = len(data)
        data += struct.pack(">I", len(body)) + body
    tree = struct.pack(">IHII", 0, 2, 1, 1) + bytes(8)                 # root: one child, entry 1
    tree += struct.pack(">IHII", name_at["res"], 2, len(files), 2) + bytes(8)  # res/: entries 2..
    for name, (_, packed) in files.items():
        tree += struct.pack(">IHHHI", name_at[name], 1 if packed else 0, 0, 0, data_at[name]) + bytes(8)
    header = 24
    return (b"qres" + struct.pack(">IIIII", 2, header, header + len(tree), header + len(tree) + len(data), 0)
            + tree + data + names)


def test_rcc_files_reads_plain_and_compressed_entries():
    blob = _bundle({"a.webp": (b"RIFF-plain", False), "b.jpg": (b"\xff\xd8" * 50, True)})
    files = prepare.rcc_files(blob)
    assert files == {"/res/a.webp": b"RIFF-plain", "/res/b.jpg": b"\xff\xd8" * 50}
    with pytest.raises(SystemExit, match="Qt resource"):
        prepare.rcc_files(b"not a bundle")


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2014 The Project
License: GPL-3+

Files: src/activities/erase/resource/giant_panda.jpg
Copyright: Jeff Kubina
License: public-domain

Files: src/activities/lang/resource/words_sample/*
Copyright: Arts4Apps project
License: CC-BY-SA-3.0
"""


def test_licence_is_the_last_matching_paragraph_whatever_the_extension():
    paragraph_of = prepare._paragraph_of
    assert paragraph_of("src/activities/erase/resource/giant_panda.webp", COPYRIGHT) == ("public-domain", "Jeff Kubina")
    assert paragraph_of("src/activities/erase/resource/gorilla.webp", COPYRIGHT) == ("GPL-3+", "2014 The Project")
    assert paragraph_of("src/activities/lang/resource/words_sample/hair.webp", COPYRIGHT)[0] == "CC-BY-SA-3.0"
    assert paragraph_of("x.webp", "no paragraphs") == ("?", "?")


@pytest.mark.parametrize("licence, ok", [("GPL-3+", True), ("GPL-2", True), ("public-domain", True),
                                         ("CC-BY-3.0", True), ("CC-BY-SA-4.0", True), ("CC-BY-SA-3.0", False),
                                         ("GFDL-NIV-1.2", False), ("CC-BY-NC-2.0", False), ("?", False)])
def test_only_licences_a_gpl_model_may_be_trained_on(licence, ok):
    assert prepare._gpl_compatible(licence) is ok
