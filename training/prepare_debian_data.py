"""Training sources from Debian packages: photo cut-outs and background photos.

    python training/prepare_debian_data.py --out data/sources [--debs DIR]

The default checkpoint is trained on ADD samples made from these (never from
``example_images/``, which are the held-out evaluation set). Everything comes from
Debian bookworm packages whose files are all under the GPL-2 (or later):

* objects: ``tuxpaint-stamps-default`` (Tux Paint stamps, GPL-2): PNG cut-outs with
  transparency; only the photographic ones are kept (many colours, few flat runs), the
  drawings, letters and signs are not;
* backgrounds: ``plasma-workspace-wallpapers`` (KDE, GPL-2+) and ``mate-backgrounds``
  (GPL-2+): the largest version of each wallpaper, without transparent or near-flat ones,
  as several crops each (different framing and scale).

``--tuning`` also writes ``tuning-photos/``: 29 real photos (textured ground, bark, rocks,
water, a bee, a chameleon, a castle...) from ``tuxpaint-data`` (its drawing templates, GPL-2+),
``palapeli-data`` (jigsaw photos, public domain or GNU FDL) and ``gnome-backgrounds`` 3.38
(bullseye, CC-BY-SA / CC-BY, the last version with photos). They are never trained on: the
second tuning set (``liwi_core.benchmark_scenes.build_dev_photos``) puts the training
cut-outs on them, so that engine settings can be chosen on photos like the held-out set's
(real, cluttered, textured) rather than only on wallpapers.

``--photos`` also writes ``photo-backgrounds/``: the photographs of GCompris
(``gcompris-qt-data``: animals, monuments, the words of its language activity; GPL-3+,
CC-BY-SA, CC-BY, GFDL or public domain, each file's own licence from the package's copyright
file), read out of its Qt resource bundles (``.rcc``), as crops like the wallpapers: training
backgrounds that are photos, with their own subjects, clutter and shadows, which wallpapers
lack.

``--debs DIR`` holds the ``.deb`` files; missing ones are fetched there with
``apt-get download`` (needs a Debian-like system). The script writes ``objects/``,
``backgrounds/`` and ``CREDITS.md`` (package, version, original path, licence of every
file) under ``--out``, atomically per file, and is deterministic.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = {
    "tuxpaint-stamps-default": {"role": "objects", "licence": "GPL-2", "holder": "Bill Kendrick and Tux Paint contributors"},
    "plasma-workspace-wallpapers": {"role": "backgrounds", "licence": "GPL-2+", "holder": "KDE Visual Design Group"},
    "mate-backgrounds": {"role": "backgrounds", "licence": "GPL-2+", "holder": "see the package's copyright file"},
}
# the tuning photos: package -> (where its .deb comes from when missing, the photos in it, licence, holder)
TUNING_PHOTOS = {
    "tuxpaint-data": (None, [f"usr/share/tuxpaint/templates/{n}.jpg" for n in (
        "burnt_bark", "cliff", "corn_maze", "jellyfish", "lighthouse", "mossy_bark", "mossy_log", "mudstone",
        "ocean_splash", "ocean_waves", "redwoods_above", "rocks", "sheep", "spiders_web", "sun_behind_clouds",
        "sun_behind_leaves", "trees_above", "trees_at_dusk", "wool_mill_machine")], "GPL-2+",
        "Bill Kendrick and Tux Paint contributors"),
    "palapeli-data": (None, [f"usr/share/palapeli/collection/{n}.jpg" for n in (
        "castle-maintenon", "cincinnati-bridge", "citrus-fruits", "european-honey-bee", "panther-chameleon-female")],
        "public domain or GNU FDL (the photo's .desktop file)", "see the photo's .desktop file"),
    "gnome-backgrounds": ("http://deb.debian.org/debian/pool/main/g/gnome-backgrounds/gnome-backgrounds_3.38.0-1_all.deb",
                          [f"usr/share/backgrounds/gnome/{n}.jpg" for n in ("Road", "Dark_Ivy", "Icetwigs",
                                                                               "SeaSunset", "Wood")],
                          "CC-BY-SA-3.0 or CC-BY-2.0 (the package's copyright file)", "the GNOME artists"),
}
# the training photos inside GCompris's resource bundles: bundle -> path prefix of its photographs
GCOMPRIS_PHOTOS = {
    "erase.rcc": "/gcompris/src/activities/erase/resource/",
    "explore_world_animals.rcc": "/gcompris/src/activities/explore_world_animals/resource/animals/",
    "explore_farm_animals.rcc": "/gcompris/src/activities/explore_farm_animals/resource/animals/",
    "explore_monuments.rcc": "/gcompris/src/activities/explore_monuments/resource/",
    "explore_world_music.rcc": "/gcompris/src/activities/explore_world_music/resource/",
    "lang.rcc": "/gcompris/src/activities/lang/resource/words_sample/",
}
GENERIC = {"usr", "share", "wallpapers", "contents", "images", "backgrounds", "mate", "tuxpaint", "stamps"}
CROPS_PER_BACKGROUND = 4
BACKGROUND_SIDE = 768


def _deb_members(path: Path) -> dict[str, bytes]:
    """Files of a .deb's data archive by path (a .deb is an ``ar`` archive)."""
    blob = path.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise SystemExit(f"error: '{path}' is not a .deb file")
    pos, data = 8, None
    while pos + 60 <= len(blob):
        name = blob[pos:pos + 16].decode().strip().rstrip("/")
        size = int(blob[pos + 48:pos + 58].decode().strip())
        if name.startswith("data.tar"):
            data = blob[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    if data is None:
        raise SystemExit(f"error: '{path}' has no data archive")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                files[member.name.lstrip("./")] = tar.extractfile(member).read()
    return files


def _deb_file(debs: Path, package: str, url: str | None = None) -> Path:
    """The package's .deb in ``debs``: downloaded when missing, from ``url`` when given (an
    older Debian release), else with ``apt-get download``."""
    pattern = f"{package}_*.deb" if url is None else Path(url).name
    found = sorted(debs.glob(pattern))
    if not found:
        debs.mkdir(parents=True, exist_ok=True)
        if url is None:
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        else:
            import urllib.request

            tmp = debs / (Path(url).name + ".tmp")
            urllib.request.urlretrieve(url, tmp)
            os.replace(tmp, debs / Path(url).name)
        found = sorted(debs.glob(pattern))
    return found[-1]


def _save(image: Image.Image, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def is_photo_cutout(image: Image.Image) -> bool:
    """A photographic cut-out: colour, an object of at least 3000 px, more than 400 distinct
    colours (5 bits per channel) and under 20% of horizontally adjacent pixels identical
    (drawings and letters are flat)."""
    if image.mode in ("1", "L", "LA", "I", "F"):
        return False
    rgba = np.asarray(image.convert("RGBA")).astype(np.int32)
    solid = rgba[..., 3] > 128
    if solid.sum() < 3000 or solid.all():
        return False
    rgb = rgba[..., :3]
    q = rgb[solid] >> 3
    colours = len(np.unique(q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2]))
    pairs = solid[1:] & solid[:-1]
    same = (np.abs(rgb[1:] - rgb[:-1]).sum(-1) == 0) & pairs
    return colours > 400 and same.sum() / max(1, pairs.sum()) < 0.2


def _background_crops(image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
    """The whole picture and crops of 45-85% of it, each at most BACKGROUND_SIDE."""
    w, h = image.size
    crops = [image]
    for _ in range(CROPS_PER_BACKGROUND - 1):
        s = rng.uniform(0.45, 0.85)
        aspect = rng.choice([4 / 3, 3 / 2, 1.0, 3 / 4])
        cw = min(w, int(s * w))
        ch = min(h, int(cw / aspect))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crops.append(image.crop((x0, y0, x0 + cw, y0 + ch)))
    out = []
    for crop in crops:
        crop = crop.copy()
        crop.thumbnail((BACKGROUND_SIDE, BACKGROUND_SIDE), Image.LANCZOS)
        out.append(crop)
    return out


def _usable_background(image: Image.Image) -> bool:
    if "A" in image.getbands() and image.getchannel("A").getextrema()[0] < 250:
        return False  # transparent wallpapers are overlays, not photos
    arr = np.asarray(image.convert("RGB").resize((64, 64))).astype(np.float32) / 255.0
    return float(arr.std()) > 0.05


def prepare(out: Path, debs: Path) -> dict:
    (out / "objects").mkdir(parents=True, exist_ok=True)
    (out / "backgrounds").mkdir(parents=True, exist_ok=True)
    credits, counts = [], {"objects": 0, "backgrounds": 0, "skipped": 0}
    rng = np.random.default_rng(2605)
    for package, info in PACKAGES.items():
        deb = _deb_file(debs, package)
        version = deb.stem.split("_")[1].replace("%3a", ":")
        files = _deb_members(deb)
        copyright_text = files.get(f"usr/share/doc/{package}/copyright", b"").decode(errors="replace")
        images = sorted(p for p in files if p.lower().endswith((".png", ".jpg", ".jpeg")))
        if info["role"] == "backgrounds":
            best: dict[str, tuple[str, int]] = {}  # the largest rendering of each wallpaper
            for p in images:
                key = p.split("/contents/")[0] if "/contents/" in p else p
                if "/contents/screenshot" in p:
                    continue
                size = Image.open(io.BytesIO(files[p])).size
                if key not in best or size[0] * size[1] > best[key][1]:
                    best[key] = (p, size[0] * size[1])
            images = sorted(v[0] for v in best.values())
        for p in images:
            image = Image.open(io.BytesIO(files[p]))
            stem = "_".join(part for part in Path(p).with_suffix("").parts if part not in GENERIC).replace(" ", "_")
            if info["role"] == "objects":
                if not is_photo_cutout(image):
                    counts["skipped"] += 1
                    continue
                names = [f"objects/{stem}.png"]
                _save(image.convert("RGBA"), out / names[0])
            else:
                if not _usable_background(image):
                    counts["skipped"] += 1
                    continue
                names = []
                for k, crop in enumerate(_background_crops(image.convert("RGB"), rng)):
                    names.append(f"backgrounds/{stem}_{k}.png")
                    _save(crop, out / names[-1])
            counts[info["role"]] += len(names)
            credits.append({"files": names, "package": package, "version": version, "original": "/" + p,
                            "licence": _licence_of(p, copyright_text, info["licence"]), "holder": info["holder"]})
    _write_credits(out, credits, counts)
    return counts


def prepare_tuning(out: Path, debs: Path) -> int:
    """Write the tuning photos (:data:`TUNING_PHOTOS`) to ``out/tuning-photos`` (at most 1024 px,
    PNG) with their ``CREDITS.md``; returns how many."""
    folder = out / "tuning-photos"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# Tuning photos", "", "Made by `training/prepare_debian_data.py --tuning`. Used only to build the second",
             "tuning set (`benchmarks/dev-photos`); never trained on, not bundled.", "",
             "| file | package (version) | original | licence | copyright |", "|---|---|---|---|---|"]
    count = 0
    for package, (url, paths, licence, holder) in TUNING_PHOTOS.items():
        deb = _deb_file(debs, package, url)
        version = deb.stem.split("_")[1].replace("%3a", ":")
        files = _deb_members(deb)
        for p in paths:
            if p not in files:
                raise SystemExit(f"error: '{p}' is not in {deb.name}")
            image = Image.open(io.BytesIO(files[p])).convert("RGB")
            image.thumbnail((1024, 1024), Image.LANCZOS)
            name = f"{package.split('-')[0]}_{Path(p).stem}.png"
            _save(image, folder / name)
            lines.append(f"| {name} | {package} ({version}) | `/{p}` | {licence} | {holder} |")
            count += 1
    (folder / "CREDITS.md").write_text("\n".join(lines) + "\n")
    return count


def rcc_files(blob: bytes) -> dict[str, bytes]:
    """The files of a Qt resource bundle (``.rcc``, format 1-3) by path; zlib-compressed entries
    are inflated, zstd ones (Qt 6) left out."""
    import struct
    import zlib

    if blob[:4] != b"qres":
        raise SystemExit("error: not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    entry = 14 if version == 1 else 22

    def name(offset: int) -> str:
        length = struct.unpack(">H", blob[names + offset:names + offset + 2])[0]
        return blob[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    files, stack = {}, [(0, "")]
    while stack:
        index, prefix = stack.pop()
        at = tree + index * entry
        offset, flags = struct.unpack(">IH", blob[at:at + 6])
        path = prefix + (name(offset) if index else "")
        if flags & 2:  # a directory: its children are consecutive entries
            count, first = struct.unpack(">II", blob[at + 6:at + 14])
            stack.extend((child, path + "/") for child in range(first, first + count))
            continue
        start = data + struct.unpack(">I", blob[at + 10:at + 14])[0]
        size = struct.unpack(">I", blob[start:start + 4])[0]
        content = blob[start + 4:start + 4 + size]
        if flags & 4:
            continue
        files[path] = zlib.decompress(content[4:]) if flags & 1 else content
    return files


def prepare_photos(out: Path, debs: Path, min_side: int = 300) -> int:
    """Write GCompris's photographs (:data:`GCOMPRIS_PHOTOS`) as background crops to
    ``out/photo-backgrounds`` with their ``CREDITS.md``; returns how many crops."""
    package = "gcompris-qt-data"
    folder = out / "photo-backgrounds"
    folder.mkdir(parents=True, exist_ok=True)
    deb = _deb_file(debs, package)
    version = deb.stem.split("_")[1].replace("%3a", ":")
    members = _deb_members(deb)
    copyright_text = members.get(f"usr/share/doc/{package}/copyright", b"").decode(errors="replace")
    rng = np.random.default_rng(2606)
    lines = ["# Photo backgrounds", "", "Made by `training/prepare_debian_data.py --photos` from GCompris's resource bundles",
             f"({package} {version}); each photo's licence and holder as the package's copyright file gives them",
             "for its original (.jpg) name. Training backgrounds only; not bundled.", "",
             "| files | original | licence | copyright |", "|---|---|---|---|"]
    count = 0
    for bundle, prefix in GCOMPRIS_PHOTOS.items():
        files = rcc_files(members[f"usr/share/gcompris-qt/rcc/{bundle}"])
        for path in sorted(p for p in files if p.startswith(prefix) and p.lower().endswith((".jpg", ".jpeg", ".webp"))):
            image = Image.open(io.BytesIO(files[path]))
            if min(image.size) < min_side or not _usable_background(image):
                continue
            original = "src/activities/" + path.split("/activities/")[1]
            licence, holder = _paragraph_of(original, copyright_text)
            if not _gpl_compatible(licence):
                continue  # unknown, share-alike before 4.0 or GFDL: a model trained on it could not stay GPL
            stem = f"gcompris_{bundle.removesuffix('.rcc')}_{Path(path).stem}"
            names = []
            for k, crop in enumerate(_background_crops(image.convert("RGB"), rng)):
                names.append(f"{stem}_{k}.png")
                _save(crop, folder / names[-1])
            lines.append(f"| {names[0]} (+{len(names) - 1} crops) | `{original}` (in `{bundle}`) | {licence} | {holder} |")
            count += len(names)
    (folder / "CREDITS.md").write_text("\n".join(lines) + "\n")
    return count


def _gpl_compatible(licence: str) -> bool:
    """Licences whose works may train weights distributed under the GPL (3 or later): the GPL
    itself, public domain, attribution-only Creative Commons, CC-BY-SA 4.0."""
    name = licence.strip().upper()
    return (name.startswith(("GPL", "PUBLIC")) or name in ("CC0-1.0", "CC-BY-SA-4.0")
            or (name.startswith("CC-BY-") and not name.startswith(("CC-BY-SA-", "CC-BY-NC", "CC-BY-ND"))))


def _paragraph_of(original: str, copyright_text: str) -> tuple[str, str]:
    """``(licence, copyright holder)`` that a machine-readable Debian copyright file gives the
    source file ``original``: the last ``Files:`` paragraph with a matching pattern (as the
    format says), the file's extension ignored (the bundles hold .webp copies of the .jpg
    originals the file lists)."""
    from fnmatch import fnmatchcase

    stem = str(Path(original).with_suffix(""))
    candidates = [stem + ext for ext in (".jpg", ".jpeg", ".png", ".webp", ".svg")]
    found = None
    for paragraph in copyright_text.split("\n\n"):
        if not paragraph.startswith("Files:"):
            continue
        patterns = paragraph.split("Copyright:")[0].split()[1:]
        if any(fnmatchcase(c, pattern) for c in candidates for pattern in patterns):
            found = paragraph
    if found is None:
        return "?", "?"
    fields, key = {}, None
    for line in found.splitlines():
        if line[:1] not in (" ", "\t") and ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
        elif key == "Copyright":
            fields[key] += "; " + line.strip()
    return fields.get("License", "?"), fields.get("Copyright", "?")


def _licence_of(path: str, copyright_text: str, default: str) -> str:
    """The licence a Debian copyright file gives the paragraph whose ``Files:`` matches."""
    name = Path(path).name
    for paragraph in copyright_text.split("\n\n"):
        if paragraph.startswith("Files:") and name in paragraph.splitlines()[0]:
            for line in paragraph.splitlines():
                if line.startswith("License:"):
                    return line.split(":", 1)[1].strip()
    return default


def _write_credits(out: Path, credits: list[dict], counts: dict) -> None:
    lines = ["# Training sources", "",
             "Made by `training/prepare_debian_data.py` from Debian bookworm packages. Every file is",
             "under the licence given here (the packages' `copyright` files); none is bundled in the",
             "repository.", "",
             f"{counts['objects']} object cut-outs, {counts['backgrounds']} background crops.", "",
             "| files | package (version) | original | licence | copyright |", "|---|---|---|---|---|"]
    for c in credits:
        files = ", ".join(c["files"]) if len(c["files"]) < 3 else f"{c['files'][0]} (+{len(c['files']) - 1} crops)"
        lines.append(f"| {files} | {c['package']} ({c['version']}) | `{c['original']}` | {c['licence']} | {c['holder']} |")
    (out / "CREDITS.md").write_text("\n".join(lines) + "\n")
    (out / "credits.json").write_text(json.dumps(credits, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="data/sources", help="where objects/, backgrounds/ and CREDITS.md go")
    p.add_argument("--debs", default="data/debs", help="folder of the .deb files (missing ones are downloaded)")
    p.add_argument("--photos", action="store_true", help="also write photo-backgrounds/ (GCompris's photographs)")
    p.add_argument("--tuning", action="store_true", help="also write tuning-photos/ (the second tuning set's photos)")
    args = p.parse_args(argv)
    counts = prepare(Path(args.out), Path(args.debs))
    if args.tuning:
        counts["tuning_photos"] = prepare_tuning(Path(args.out), Path(args.debs))
    if args.photos:
        counts["photo_backgrounds"] = prepare_photos(Path(args.out), Path(args.debs))
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
