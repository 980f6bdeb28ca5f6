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
    p.add_argument("--tuning", action="store_true", help="also write tuning-photos/ (the second tuning set's photos)")
    args = p.parse_args(argv)
    counts = prepare(Path(args.out), Path(args.debs))
    if args.tuning:
        counts["tuning_photos"] = prepare_tuning(Path(args.out), Path(args.debs))
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
