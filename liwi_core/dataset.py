"""The layered dataset format and its one streaming reader (ADD writes it; training and
evaluation read it).

A sample is the layer folder of :func:`liwi_core.export.save_layers_dir` (``background.png``,
``layer_NN.png``, ``shadow_NN.png``, ``hole.png``, ``layers.json``) plus:

* ``composite.png``: the flattened image (what a user would have);
* ``prompt_NN_<kind>.png``: prompt masks a user might draw for layer NN (back-to-front
  index), degraded from the true alpha: ``eroded``, ``dilated``, ``blurred``, ``box``,
  ``scribble``;
* ``sample.json``: id, source ids, seed, tool settings, curator scores, prompt files.
  Written last: a folder without it is unfinished.

Two storages, one reader:

* **folders** (small sets): ``<root>/samples/<id>/...``. Each sample is written into a
  hidden temporary folder and renamed into place, so a killed job leaves nothing half
  written.
* **tar shards** (large sets): ``<root>/shards/shard-NNNNNN.tar`` with members
  ``<id>/<file>``, and ``<root>/index.json`` listing each shard's samples. Made from a
  folder set with ``python -m liwi_core.dataset pack ROOT``.

:func:`iter_samples` streams either storage, optionally split over ranks.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import shutil
import sys
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from .errors import LiWiError
from .export import MANIFEST, check_manifest, save_layers_dir, stack_from_manifest
from .imageio import atomic_write_bytes, load_image, load_mask, save_image
from .layers import LayerStack
from .safepath import confined_path

__all__ = ["Sample", "write_sample", "iter_samples", "sample_ids", "pack_shards", "PROMPT_KINDS", "FORMAT"]

FORMAT = "liwi-dataset/1"
PROMPT_KINDS = ("eroded", "dilated", "blurred", "box", "scribble")
SAMPLE_JSON = "sample.json"


@dataclass
class Sample:
    """One layered sample.

    Attributes:
        id: unique sample id (also its folder / tar prefix).
        composite: ``[1,3,H,W]`` flattened image; equals ``stack.composite()``.
        stack: ground-truth layers (batch 1), background clean, ``hole`` where it is hidden.
        prompts: per layer (back to front), ``{kind: [1,1,H,W] mask}``.
        meta: the contents of ``sample.json``.
    """

    id: str
    composite: torch.Tensor
    stack: LayerStack
    prompts: list[dict[str, torch.Tensor]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def _prompt_file(layer: int, kind: str) -> str:
    return f"prompt_{layer:02d}_{kind}.png"


def write_sample(root, sample: Sample, confined: bool = False) -> Path:
    """Write ``sample`` under ``<root>/samples/<id>`` atomically; returns the folder.

    An existing finished sample with the same id is replaced as a whole. The id must be a
    plain name (no separators, no ``..``). With ``confined`` (a node writing for a remote
    user) the sample folder must also stay inside ``root`` after following symlinks, or
    nothing is written; the command line leaves it off, so a ``samples`` link to another
    disk works there.
    """
    if not sample.id or sample.id in (".", "..") or any(c in sample.id for c in "/\\\x00"):
        raise LiWiError(f"sample id '{sample.id}' is not a plain name")
    samples = Path(root) / "samples"
    if confined:
        confined_path(root, f"samples/{sample.id}", "sample folder")
    final = samples / sample.id
    tmp = samples / f".tmp-{sample.id}-{uuid.uuid4().hex[:8]}"
    try:
        save_layers_dir(sample.stack, tmp)
        save_image(sample.composite, tmp / "composite.png")
        files = []
        for i, prompts in enumerate(sample.prompts):
            for kind, mask in prompts.items():
                save_image(mask, tmp / _prompt_file(i, kind))
                files.append({"layer": i, "kind": kind, "file": _prompt_file(i, kind)})
        meta = {"format": FORMAT, **sample.meta, "id": sample.id, "prompts": files}
        atomic_write_bytes(tmp / SAMPLE_JSON, (json.dumps(meta, indent=1, default=str) + "\n").encode())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        # a run killed while writing this sample left its half-made copy: the sample is whole now
        for stale in samples.glob(f".tmp-{glob.escape(sample.id)}-*"):
            shutil.rmtree(stale, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _build(sample_id: str, read_bytes: Callable[[str], bytes], where: str) -> Sample:
    """Assemble a sample from a file reader (folder or tar)."""
    def read_json(name: str) -> dict:
        try:
            return json.loads(read_bytes(name).decode("utf-8"))
        except (KeyError, FileNotFoundError):
            raise LiWiError(f"sample {where}: '{name}' is missing") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LiWiError(f"sample {where}: '{name}' is corrupt: {exc}") from None

    def read_tensor(name: str, kind: str = "image") -> torch.Tensor:
        try:
            data = read_bytes(name)
        except (KeyError, FileNotFoundError):
            raise LiWiError(f"sample {where}: '{name}' is missing") from None
        buf = io.BytesIO(data)
        return load_mask(buf) if kind == "mask" else load_image(buf)

    meta = read_json(SAMPLE_JSON)
    doc = check_manifest(read_json(MANIFEST), f"{where}/{MANIFEST}")
    stack = stack_from_manifest(doc, read_tensor)
    prompts: list[dict[str, torch.Tensor]] = [{} for _ in stack.layers]
    for entry in meta.get("prompts", []):
        layer = entry.get("layer")
        if isinstance(layer, int) and 0 <= layer < len(prompts):
            prompts[layer][entry["kind"]] = read_tensor(entry["file"], "mask")
    composite = read_tensor("composite.png")[:, :3]
    return Sample(id=sample_id, composite=composite, stack=stack, prompts=prompts, meta=meta)


def sample_ids(root) -> list[str]:
    """Ids of the finished samples under ``root`` (folders and shards), sorted."""
    root = Path(root)
    ids = set()
    samples = root / "samples"
    if samples.is_dir():
        ids.update(p.name for p in samples.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and (p / SAMPLE_JSON).is_file())
    for shard in _index(root):
        ids.update(shard["samples"])
    return sorted(ids)


def _index(root: Path) -> list[dict]:
    path = root / "index.json"
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text())
        shards = list(doc["shards"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise LiWiError(f"cannot read '{path}': {exc}") from None
    for shard in shards:
        if not (isinstance(shard, dict) and isinstance(shard.get("file"), str)
                and isinstance(shard.get("samples"), list)):
            raise LiWiError(f"cannot read '{path}': every shard needs a \"file\" and a list of \"samples\"")
    return shards


def iter_samples(root, rank: int = 0, world_size: int = 1, ids: list[str] | None = None) -> Iterator[Sample]:
    """Stream the samples of a dataset folder: plain sample folders, then tar shards.

    Args:
        root: dataset root (has ``samples/`` and/or ``index.json`` + ``shards/``).
        rank, world_size: yield only every ``world_size``-th sample starting at ``rank``
            (by sorted id), so processes share a dataset without overlap.
        ids: restrict to these ids.

    Raises:
        LiWiError: the root has no samples, or a sample is corrupt (naming it).
    """
    root = Path(root)
    if not root.is_dir():
        raise LiWiError(f"dataset '{root}' does not exist")
    wanted = sample_ids(root) if ids is None else sorted(ids)
    if not wanted:
        raise LiWiError(f"dataset '{root}' has no finished samples")
    mine = set(wanted[rank::world_size])
    samples = root / "samples"
    in_shards = {}
    for shard in _index(root):
        for sid in shard["samples"]:
            in_shards[sid] = shard["file"]
    for sid in wanted:
        if sid in mine and sid not in in_shards:
            folder = samples / sid
            yield _build(sid, lambda name, f=folder: (f / name).read_bytes(), str(folder))
    for shard_file in sorted(set(in_shards.values())):
        path = root / shard_file
        try:
            with tarfile.open(path) as tar:
                members = {m.name: m for m in tar.getmembers() if m.isfile()}
                for sid in sorted({s for s, f in in_shards.items() if f == shard_file} & mine):
                    def read(name: str, sid=sid) -> bytes:
                        return tar.extractfile(members[f"{sid}/{name}"]).read()
                    yield _build(sid, read, f"{path}:{sid}")
        except (OSError, tarfile.TarError) as exc:
            raise LiWiError(f"cannot read shard '{path}': {exc}") from None


def pack_shards(root, shard_size: int = 1000, remove_folders: bool = False) -> list[Path]:
    """Pack the folder samples of ``root`` into tar shards and write ``index.json``.

    Shards and the index are written atomically; with ``remove_folders`` the packed
    folders are deleted afterwards (only once the index naming them is in place), those an
    earlier pack left too.
    """
    root = Path(root)
    _check_root(root)
    if shard_size < 1:
        raise LiWiError(f"--shard-size must be at least 1, got {shard_size}")
    samples = root / "samples"
    existing = _index(root)
    packed = {sid for shard in existing for sid in shard["samples"]}
    todo = [sid for sid in sample_ids(root) if sid not in packed and (samples / sid).is_dir()]
    shards_dir = root / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for start in range(0, len(todo), shard_size):
        chunk = todo[start:start + shard_size]
        name = f"shards/shard-{len(existing):06d}.tar"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for sid in chunk:
                for f in sorted((samples / sid).iterdir()):
                    tar.add(f, arcname=f"{sid}/{f.name}")
        atomic_write_bytes(root / name, buf.getvalue())
        existing.append({"file": name, "samples": chunk})
        written.append(root / name)
        doc = {"format": FORMAT, "shards": existing}
        atomic_write_bytes(root / "index.json", (json.dumps(doc, indent=1) + "\n").encode())
    if remove_folders:
        for sid in sorted(packed | set(todo)):
            shutil.rmtree(samples / sid, ignore_errors=True)
    return written


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise LiWiError(f"'{root}' is not a dataset folder ({'no such folder' if not root.exists() else 'a file'})")


def configure(parser: argparse.ArgumentParser) -> None:
    """The ``dataset`` command's subcommands (:mod:`liwi_core.cli`)."""
    sub = parser.add_subparsers(dest="dataset_command", required=True)
    p = sub.add_parser("pack", help="pack sample folders into tar shards with an index")
    p.add_argument("root")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--remove-folders", action="store_true")
    s = sub.add_parser("info", help="count the samples of a dataset")
    s.add_argument("root")
    parser.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> None:
    if args.dataset_command == "pack":
        for path in pack_shards(args.root, args.shard_size, args.remove_folders):
            print(f"wrote {path}")
    else:
        _check_root(Path(args.root))
        print(f"{len(sample_ids(args.root))} samples")


def main(argv: list[str] | None = None) -> int:
    """``python -m liwi_core.dataset`` (kept as an alias) is ``python -m liwi_core dataset``."""
    from .cli import main_as

    return main_as("dataset", argv)


if __name__ == "__main__":
    sys.exit(main())
