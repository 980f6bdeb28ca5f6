"""The held-out benchmark's scenes, built without any engine, ADD or ADD's shadow tool.

``python -m liwi_core eval --benchmark`` builds this set (:func:`build_heldout`) and evaluates
it. Nothing in it comes from a system under test:

* **objects**: the held-out Tux Paint photo cut-outs (:func:`liwi_core.heldout.split_objects`),
  their alpha is the PNG's own alpha channel (true alpha, no matting);
  with ``defocus`` in the config (:data:`DEV_SOFT_SCENES`) each is put out of focus first
  (:func:`~liwi_core.filters.defocus_rgba`), the soft edge the engines must then keep;
* **backgrounds**: the bundled ``example_images`` photos (not their masks) and, when
  scikit-image is installed, its data photos (``motorcycle_left``, ``brick``, ``grass``,
  ``gravel``, ``camera``), random crops and scales at ``size`` x ``size``; some darkened (dark
  ground). Grey textures get a light tint. These photos are reserved for evaluation;
* **shadows** from this module's own renderer, unlike ADD's training shadows
  (:func:`liwi_core.shadow.synthesize_cast_shadow` is not used): the object's silhouette
  projected from its contact line onto the ground (shear, squash, a little perspective; behind
  or in front of the object), blurred more the farther it falls from the contact line and
  fading with distance, plus a separate contact (ambient-occlusion) shadow under the footprint;
  sometimes tinted blue (coloured map), sometimes two lights; opacity 0.3-0.8;
* **prompts**: each object carries one prompt kind (:data:`SCENE_PROMPT_KINDS`: ``exact``,
  ``dilated``, ``eroded``, ``blob``, ``box``), spread evenly over the objects and recorded in
  ``sample.json`` (``prompt_kinds``, back to front); every kind's mask is written too, so
  ``--prompt KIND`` still works for all samples.

Ground truth: every tensor is rounded to 8 bits first and the composite is
:meth:`~liwi_core.layers.LayerStack.composite` of those, so the files read back recompose to
the stored composite within half a grey level. Sample ``i`` depends only on ``(seed, i)`` and
the source lists; each is written atomically (:func:`liwi_core.dataset.write_sample`) and
skipped when already there.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .dataset import Sample, sample_ids, write_sample
from .errors import LiWiError
from .filters import bounding_box, defocus_rgba, dilate, erode, gaussian_blur, resize
from .heldout import split_objects
from .imageio import atomic_write_bytes
from .layers import Layer, LayerStack, coverage, default_layer_name

__all__ = ["HELDOUT_V2", "DEV_SCENES", "DEV_PHOTO_SCENES", "DEV_SOFT_SCENES", "DEV_PHOTO_SCENES_2", "DEV_SUBJECT_SCENES", "build_dev", "build_dev_photos",
           "build_dev_subjects", "SCENE_PROMPT_KINDS", "SKIMAGE_PHOTOS", "PREPARE_COMMAND", "default_backgrounds", "photo_object_mask",
           "heldout_objects", "make_scene", "build_heldout", "render_shadow", "scene_prompt"]

ROOT = Path(__file__).resolve().parent.parent
HELDOUT_V2 = {"num": 40, "two_objects": 12, "seed": 2611, "size": 512}
# the tuning set: the same recipe on training-half cut-outs and training backgrounds, another seed;
# engine settings are chosen on it so that the held-out scores stay held out
DEV_SCENES = {"num": 60, "two_objects": 18, "seed": 7411, "size": 512, "split": "training"}
# the second tuning set: the same recipe and cut-outs on real photos that nothing trains on
# (textured ground, cluttered scenes with their own subjects, as the held-out photos are);
# the wallpapers of the first flatter an engine where the held-out set does not
DEV_PHOTO_SCENES = {"num": 60, "two_objects": 18, "seed": 5077, "size": 512, "split": "training"}
# the third: the second's scenes with every object out of focus (``defocus``: the Gaussian's sigma
# drawn in this range, px), so the soft edge of a defocused, moving or furry object is measured;
# the cut-outs' own edges are hard, and an engine that hardens every edge looks best on them
DEV_SOFT_SCENES = {**DEV_PHOTO_SCENES, "defocus": [1.0, 3.0]}
# the fourth: a second draw of the second (other scenes of the same photos and cut-outs), so that a
# choice made on 60 photo scenes can be checked on 80 others before the held-out set is looked at
DEV_PHOTO_SCENES_2 = {**DEV_PHOTO_SCENES, "num": 80, "two_objects": 24, "seed": 9031}
# the fifth, for automatic mode: the same recipe over photos that each show their own subject (a
# bee, a crab, a castle: GCompris's photographs, which ADD also trains on), so that pasted objects
# touch or stand on a salient thing as on the held-out set's example photos, and a proposal that
# merges them is measured; only the pasted objects are in the truth
DEV_SUBJECT_SCENES = {**DEV_PHOTO_SCENES, "seed": 9157}
PREPARE_PHOTOS_COMMAND = "python training/prepare_debian_data.py --out data/sources --debs data/debs --photos"
PREPARE_TUNING_COMMAND = "python training/prepare_debian_data.py --out data/sources --debs data/debs --tuning"
SCENE_PROMPT_KINDS = ("exact", "dilated", "eroded", "blob", "box")
SKIMAGE_PHOTOS = ("motorcycle_left.png", "brick.png", "grass.png", "gravel.png", "camera.png")
PREPARE_COMMAND = "python training/prepare_debian_data.py --out data/sources --debs data/debs"
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
FORMAT = "liwi-heldout-scenes/2"


# --------------------------------------------------------------------------- sources


def heldout_objects(objects_dir, split: str = "heldout") -> list[Path]:
    """The held-out cut-outs of ``objects_dir`` (PNG files, symlinks followed), sorted; with
    ``split="training"`` the training ones instead. A one-line error naming the preparation
    command when the folder is missing or holds none."""
    folder = Path(objects_dir)
    if not folder.is_dir():
        raise LiWiError(f"object folder '{objects_dir}' does not exist: prepare it with `{PREPARE_COMMAND}` "
                        f"or point --objects at a folder of cut-outs")
    training, held = split_objects(p for p in folder.glob("*.png") if p.is_file())
    chosen = training if split == "training" else held
    if not chosen:
        raise LiWiError(f"object folder '{objects_dir}' has no {split} cut-outs (prepare it with `{PREPARE_COMMAND}`)")
    return chosen


def default_backgrounds() -> list[Path]:
    """The bundled ``example_images`` photos (not the ``*_mask`` files), then scikit-image's
    data photos of :data:`SKIMAGE_PHOTOS` when scikit-image is installed (those duplicating a
    bundled photo's name are left out)."""
    bundled = sorted(p for p in (ROOT / "example_images").iterdir()
                     if p.suffix.lower() in IMAGE_EXTENSIONS and "_mask" not in p.stem)
    spec = importlib.util.find_spec("skimage")
    if spec and spec.submodule_search_locations:
        data = Path(list(spec.submodule_search_locations)[0]) / "data"
        names = {p.stem for p in bundled}
        bundled += [data / n for n in SKIMAGE_PHOTOS if (data / n).is_file() and Path(n).stem not in names]
    return bundled


def _load_cutout(path: Path, height: int, max_width: int) -> torch.Tensor:
    """``[1,4,h,w]`` straight RGBA, cropped to its alpha and resized (premultiplied, Lanczos) so
    that it is ``height`` tall and at most ``max_width`` wide; colour 0 where alpha is 0."""
    with Image.open(path) as im:
        im = im.convert("RGBA")
        box = im.getchannel("A").point(lambda v: 255 if v > 8 else 0).getbbox()
        if box is None:
            raise LiWiError(f"cut-out '{path}' is empty")
        im = im.crop(box)
        w, h = im.size
        scale = min(height / h, max_width / w)
        size = (max(2, round(w * scale)), max(2, round(h * scale)))
        im = im.convert("RGBa").resize(size, Image.LANCZOS).convert("RGBA")
        arr = np.asarray(im, dtype=np.float32) / 255.0
    rgba = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]
    rgba[:, :3] *= (rgba[:, 3:4] > 0).float()
    return rgba


def _load_background(path: Path, size: int, g: torch.Generator) -> tuple[torch.Tensor, dict]:
    """A random crop of the photo at a random scale, ``[1,3,size,size]``, and how it was made."""
    with Image.open(path) as im:
        grey = im.mode in ("L", "LA", "I", "I;16", "F", "1")
        im = im.convert("RGB")
        w, h = im.size
        zoom = 1.0 + 0.6 * _u(g)
        scale = size / min(w, h) * zoom
        sw, sh = max(size, round(w * scale)), max(size, round(h * scale))
        left, top = int(_u(g) * (sw - size + 1)), int(_u(g) * (sh - size + 1))
        arr = np.asarray(_scaled_crop(im, (sw, sh), (left, top), size), dtype=np.float32) / 255.0
    bg = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]
    info = {"file": path.name, "zoom": round(zoom, 4), "crop": [left, top], "scaled": [sw, sh]}
    if grey:  # a light warm or cool tint so grey textures are colour photos of ground
        tint = torch.tensor([1.0 + 0.12 * (_u(g) - 0.5), 1.0, 1.0 + 0.12 * (_u(g) - 0.5)]).view(1, 3, 1, 1)
        bg = bg * tint
        info["tint"] = [round(float(t), 4) for t in tint.flatten()]
    if _u(g) < 0.25:  # dark ground
        dark = 0.45 + 0.25 * _u(g)
        bg = bg * dark
        info["darkened"] = round(dark, 4)
    return bg.clamp(0, 1), info


def _scaled_crop(im: Image.Image, scaled: tuple[int, int], crop: tuple[int, int], size: int) -> Image.Image:
    """``im`` resized (Lanczos) to ``scaled`` ``(w, h)``, then its ``size`` square at ``crop`` ``(left, top)``."""
    left, top = crop
    return im.resize(tuple(scaled), Image.LANCZOS).crop((left, top, left + size, top + size))


def photo_object_mask(background: dict | None, size: int, folders: list[Path] | None = None
                      ) -> torch.Tensor | None:
    """The main object of a scene's background photo, ``[1,1,size,size]`` in {0, 1} (1 = object),
    or None when the photo has no mask.

    A scene's background is a real photo, which may hold its own subject (an astronaut, a cup):
    the ground truth keeps it in the background, yet it is an object, and automatic mode is
    right to find it. Where the photo comes with a rough mask of its main object beside it
    (``<name>_mask.png``, white = object, as the bundled ``example_images`` have; made by hand
    and GrabCut, no engine here), this is that mask cropped as the scene cropped the photo.

    Args:
        background: the scene's ``sample.json`` ``"background"`` record (``file``, ``scaled``, ``crop``).
        size: the scene's side in pixels.
        folders: where to look for the mask (default: ``example_images`` and the tuning photos).
    """
    if not isinstance(background, dict) or not all(k in background for k in ("file", "scaled", "crop")):
        return None
    stem = Path(str(background["file"])).stem
    folders = folders if folders is not None else [ROOT / "example_images", ROOT / "data" / "sources" / "tuning-photos"]
    found = next((f / f"{stem}_mask.png" for f in folders if (f / f"{stem}_mask.png").is_file()), None)
    if found is None:
        return None
    with Image.open(found) as im:
        mask = _scaled_crop(im.convert("L"), background["scaled"], background["crop"], size)
        arr = np.asarray(mask, dtype=np.float32) / 255.0
    return (torch.from_numpy(arr.copy())[None, None] > 0.5).float()


# --------------------------------------------------------------------------- random helpers


def _u(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _q(t: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit levels the PNG files store (as :func:`liwi_core.imageio.to_uint8`)."""
    return torch.floor(t.clamp(0, 1) * 255.0 + 0.5) / 255.0


# --------------------------------------------------------------------------- shadows


def _light(g: torch.Generator) -> dict:
    """One light: the shadow's shear ``sx`` (ground shift per unit of height), squash ``sy``
    (positive: the shadow falls behind the object, up the image; negative: in front, down),
    perspective ``persp`` (widening with distance), blur near and far, opacity and fade."""
    behind = _u(g) < 0.6
    return {"sx": round(_u(g, -1.1, 1.1), 4),
            "sy": round(_u(g, 0.2, 0.55) if behind else -_u(g, 0.12, 0.35), 4),
            "persp": round(_u(g, -0.3, 0.4), 4),
            "blur_near": round(_u(g, 0.8, 2.0), 4), "blur_far": round(_u(g, 6.0, 16.0), 4),
            "opacity": round(_u(g, 0.3, 0.8), 4), "fade": round(_u(g, 0.15, 0.6), 4)}


def _projected(alpha: torch.Tensor, contact: float, cx: float, height: float, light: dict) -> torch.Tensor:
    """The silhouette of ``alpha`` ``[1,1,H,W]`` cast on the ground plane from its contact line
    (row ``contact``): the point ``height h`` above the ground at column ``u`` lands at
    ``x = cx + (u - cx) * (1 + persp * h / height) + sx * h``, ``y = contact - sy * h``. Blur
    grows and opacity fades with ``h``. Returns the darkening ``[1,1,H,W]`` in [0, 1]."""
    _, _, H, W = alpha.shape
    sx, sy, persp = light["sx"], light["sy"], light["persp"]
    ys = torch.arange(H, dtype=torch.float32).view(H, 1).expand(H, W)
    xs = torch.arange(W, dtype=torch.float32).view(1, W).expand(H, W)
    h = (contact - ys) / sy  # height above the ground of the point that lands on this row
    t = (h / max(height, 1.0)).clamp(0, 1.5)
    u = cx + (xs - cx - sx * h) / (1.0 + persp * t)
    v = contact - h
    grid = torch.stack([(u + 0.5) / W * 2 - 1, (v + 0.5) / H * 2 - 1], dim=-1)[None]
    cast = F.grid_sample(alpha, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cast = cast * (h >= -0.5).float()[None, None]
    # blur grows with distance: blend a few blur levels by the height t
    sigmas = [light["blur_near"] * (light["blur_far"] / light["blur_near"]) ** (k / 3) for k in range(4)]
    levels = torch.cat([gaussian_blur(cast, s) for s in sigmas])  # [4,1,H,W]
    pos = t.clamp(0, 1) * 3
    lo = pos.floor().clamp(0, 2).long()
    frac = (pos - lo.float())[None, None]
    pick = lambda idx: torch.gather(levels[:, 0], 0, idx[None])[0][None, None]  # noqa: E731
    blurred = pick(lo) * (1 - frac) + pick(lo + 1) * frac
    fade = (1.0 - light["fade"] * t.clamp(0, 1))[None, None]
    return (blurred * fade).clamp(0, 1)


def _contact(alpha: torch.Tensor, contact: int, g: torch.Generator) -> tuple[torch.Tensor, dict]:
    """A soft ellipse under the object's footprint (its bottom rows): contact / ambient occlusion."""
    _, _, H, W = alpha.shape
    y0, y1, x0, x1 = bounding_box(alpha)
    band = max(2, round(0.08 * (y1 - y0)))
    cols = (alpha[0, 0, max(0, contact - band):contact + 1] > 0.5).any(dim=0).nonzero().flatten()
    left, right = (float(cols.min()), float(cols.max())) if len(cols) else (float(x0), float(x1))
    params = {"opacity": round(_u(g, 0.3, 0.7), 4), "sigma": round(_u(g, 2.0, 5.0), 4),
              "width": round(_u(g, 1.0, 1.25), 4), "flat": round(_u(g, 0.06, 0.14), 4)}
    ax = max(3.0, (right - left) / 2 * params["width"])
    ay = max(2.0, ax * params["flat"])
    ys = torch.arange(H, dtype=torch.float32).view(H, 1)
    xs = torch.arange(W, dtype=torch.float32).view(1, W)
    d = ((xs - (left + right) / 2) / ax) ** 2 + ((ys - contact) / ay) ** 2
    ell = (1.0 - d).clamp(0, 1) ** 0.7
    return gaussian_blur(ell[None, None], params["sigma"]).clamp(0, 1), params


def render_shadow(alpha: torch.Tensor, lights: list[dict], g: torch.Generator, tint: list[float] | None
                  ) -> tuple[torch.Tensor, dict]:
    """The benchmark's shadow map of one object: its silhouette projected by each light, plus
    a contact shadow, multiplied; ``tint`` (per-channel weights) makes it a coloured map.

    Args:
        alpha: ``[1,1,H,W]`` the placed object's alpha.
        lights: from :func:`_light` (one or two).
        g: random generator (contact shadow parameters).
        tint: ``None`` (grey map ``[1,1,H,W]``) or RGB weights of the darkening (``[1,3,H,W]``).

    Returns:
        ``(shadow map, parameters)``.
    """
    box = bounding_box(alpha)
    if box is None:
        raise LiWiError("cannot cast the shadow of an empty object")
    y0, y1, x0, x1 = box
    contact = float(y1 - 1)
    rows = (alpha[0, 0, int(contact)] > 0.5).nonzero().flatten()
    cx = float(rows.float().mean()) if len(rows) else (x0 + x1) / 2
    weights = torch.tensor(tint if tint else [1.0]).view(1, -1, 1, 1)
    shadow = torch.ones(1, weights.shape[1], *alpha.shape[-2:])
    for light in lights:
        dark = _projected(alpha, contact, cx, float(y1 - y0), light)
        shadow = shadow * (1.0 - light["opacity"] * dark * weights)
    ao, ao_params = _contact(alpha, int(contact), g)
    shadow = shadow * (1.0 - ao_params["opacity"] * ao * weights)
    return shadow.clamp(0, 1), {"lights": lights, "contact": ao_params, "contact_row": contact, "tint": tint}


# --------------------------------------------------------------------------- prompts


def scene_prompt(alpha: torch.Tensor, kind: str, g: torch.Generator) -> torch.Tensor:
    """A rough prompt mask ``[1,1,H,W]`` (0/1) of ``kind`` from the true alpha:
    ``exact`` (alpha > 0.5), ``dilated`` (4-10 px), ``eroded`` (2-5 px), ``blob`` (blurred by 3-7% of
    the object's size, at most 10 px, with a low-frequency wobble of its outline), ``box`` (bounding box, 2-8 px margin)."""
    exact = (alpha > 0.5).float()
    h, w = alpha.shape[-2:]
    if kind == "exact":
        return exact
    if kind == "dilated":
        return dilate(exact, int(_u(g, 4, 10.99)))
    if kind == "eroded":
        for r in range(int(_u(g, 2, 5.99)), 0, -1):
            out = erode(exact, r)
            if float(out.sum()) >= 0.3 * float(exact.sum()):
                return out
        return exact
    if kind == "blob":
        sigma = min(10.0, max(1.5, _u(g, 0.03, 0.07) * math.sqrt(float(exact.sum()))))
        smooth = gaussian_blur(exact, sigma)
        wobble = resize(torch.rand(1, 1, 8, 8, generator=g) - 0.5, (h, w), mode="bilinear")
        for level in (0.4, 0.25, 0.1):  # a thin object blurs faint: lower the cut until something is left
            out = ((smooth + 0.4 * wobble) > level).float()
            if float(out.sum()) >= 0.3 * float(exact.sum()):
                return out
        return dilate(exact, 2)
    if kind == "box":
        y0, y1, x0, x1 = bounding_box(exact)
        m = int(_u(g, 2, 8.99))
        out = torch.zeros_like(exact)
        out[..., max(0, y0 - m):min(h, y1 + m), max(0, x0 - m):min(w, x1 + m)] = 1.0
        return out
    raise LiWiError(f"unknown prompt kind '{kind}': use {', '.join(SCENE_PROMPT_KINDS)}")


# --------------------------------------------------------------------------- scenes


def _place(cut: torch.Tensor, size: int, ground: float, x: float) -> torch.Tensor:
    """The cut-out on the full canvas, its bottom edge on row ``ground``, its left at column ``x``."""
    _, _, h, w = cut.shape
    canvas = torch.zeros(1, 4, size, size)
    top, left = int(round(ground)) - h, int(round(x))
    canvas[..., top:top + h, left:left + w] = cut
    return canvas


def _slots(cfg: dict) -> list[tuple[int, list[str]]]:
    """Per sample index: the object count and the prompt kinds, back to front. The
    ``two_objects`` two-object samples are spread evenly; prompt kinds cycle over all objects."""
    num, two = cfg["num"], cfg["two_objects"]
    twos = {round((k + 0.5) * num / two) for k in range(two)} if two else set()
    out, counter = [], 0
    for i in range(num):
        n = 2 if i in twos else 1
        out.append((n, [SCENE_PROMPT_KINDS[(counter + k) % len(SCENE_PROMPT_KINDS)] for k in range(n)]))
        counter += n
    return out


def make_scene(index: int, objects: list[Path], backgrounds: list[Path], cfg: dict = HELDOUT_V2) -> Sample:
    """Sample ``index`` of the benchmark (deterministic in ``(cfg['seed'], index)`` and the lists)."""
    size, seed = cfg["size"], cfg["seed"]
    count, kinds = _slots(cfg)[index]
    g = torch.Generator().manual_seed(seed * 100_003 + index)
    # objects: a fixed shuffle cycled over the object slots, so every object appears
    order = torch.randperm(len(objects), generator=torch.Generator().manual_seed(seed)).tolist()
    first = sum(n for n, _ in _slots(cfg)[:index])
    chosen = [objects[order[(first + k) % len(objects)]] for k in range(count)]
    background_file = backgrounds[int(_u(g) * len(backgrounds)) % len(backgrounds)]
    background, bg_info = _load_background(background_file, size, g)
    # placement, back object first (higher up the ground, smaller)
    placed, boxes = [], []
    front_ground = _u(g, 0.64, 0.95) * size
    for k, path in enumerate(chosen):
        back = count == 2 and k == 0
        rel = _u(g, 0.22, 0.36) if back else _u(g, 0.28, 0.5) if count == 1 else _u(g, 0.3, 0.46)
        cut = _load_cutout(path, round(rel * size), round(0.55 * size))
        _, _, h, w = cut.shape
        ground = front_ground - (_u(g, 0.08, 0.2) * size if back else 0.0)
        ground = min(max(ground, h + 4), size - 2)
        for _ in range(30):
            x = _u(g, 4, size - w - 4)
            rgba = _place(cut, size, ground, x)
            if k == 0:
                break
            behind = placed[0][:, 3:4]
            overlap = float(torch.minimum(behind, rgba[:, 3:4]).sum()) / max(float(behind.sum()), 1.0)
            if overlap <= 0.25:
                break
        placed.append(rgba)
        boxes.append([int(round(x)), int(round(ground)) - h, int(round(x)) + w, int(round(ground))])
    if cfg.get("defocus"):
        # its own random stream: every other draw stays the sharp set's, scene for scene
        soft = torch.Generator().manual_seed(seed * 100_003 + index + 7_919)
        placed = [defocus_rgba(rgba, _u(soft, *cfg["defocus"])) for rgba in placed]
    # one light set per scene (both objects lit alike)
    lights = [_light(g)]
    if _u(g) < 0.25:  # a second light: a weaker shadow the other way
        second = _light(g)
        second["sx"] = -math.copysign(abs(second["sx"]), lights[0]["sx"])
        second["opacity"] = round(lights[0]["opacity"] * _u(g, 0.4, 0.7), 4)
        lights.append(second)
    tint = [1.0, round(_u(g, 0.88, 0.96), 4), round(_u(g, 0.6, 0.78), 4)] if _u(g) < 0.3 else None
    layers, prompts, shadows = [], [], []
    background = _q(background)
    for k, rgba in enumerate(placed):
        rgba = _q(rgba)
        shadow, params = render_shadow(rgba[:, 3:4], lights, g, tint)
        layers.append(Layer(rgba=rgba, shadow=_q(shadow), name=default_layer_name(k), prompt_index=k))
        shadows.append(params)
        own = {kind: scene_prompt(rgba[:, 3:4], kind, g) for kind in SCENE_PROMPT_KINDS}
        prompts.append(own)
    stack = LayerStack(background=background, layers=layers, hole=coverage(layers),
                       meta={"engine": "heldout-scenes", "settings": {}})
    meta = {"index": index, "seed": seed, "builder": FORMAT, "background": bg_info,
            "objects": [p.name for p in chosen], "boxes": boxes, "prompt_kinds": kinds,
            "shadows": shadows, "sources": sorted({bg_info["file"]} | {p.name for p in chosen})}
    return Sample(id=_sample_id(cfg, index), composite=stack.composite(), stack=stack, prompts=prompts, meta=meta)


def _sample_id(cfg: dict, index: int) -> str:
    return f"{'dev' if cfg.get('split') == 'training' else 'hv2'}-{index:04d}"


def _images_in(folder: Path) -> list[Path]:
    """The image files of ``folder``, sorted (none when it is not there)."""
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) if folder.is_dir() else []


def build_dev(out, objects_dir=None, backgrounds_dir=None, progress: bool = False) -> Path:
    """Build the tuning scenes (:data:`DEV_SCENES`) in ``out``: the held-out recipe on the
    *training* cut-outs and on training backgrounds (default ``data/sources/backgrounds``),
    so that engine settings can be chosen without looking at the held-out set."""
    folder = Path(backgrounds_dir) if backgrounds_dir is not None else ROOT / "data" / "sources" / "backgrounds"
    backgrounds = _images_in(folder)
    if not backgrounds:
        raise LiWiError(f"no background photos in '{folder}' (prepare them with `{PREPARE_COMMAND}`)")
    return build_heldout(out, objects_dir, backgrounds, DEV_SCENES, progress)


def build_dev_photos(out, objects_dir=None, photos_dir=None, progress: bool = False,
                     cfg: dict = DEV_PHOTO_SCENES) -> Path:
    """Build the second tuning scenes (``cfg``, :data:`DEV_PHOTO_SCENES`) in ``out``: the training
    cut-outs on the tuning photos (default ``data/sources/tuning-photos``), real photos that no
    training uses and that are not reserved for evaluation. With ``cfg`` :data:`DEV_SOFT_SCENES`,
    the same scenes with every object out of focus."""
    folder = Path(photos_dir) if photos_dir is not None else ROOT / "data" / "sources" / "tuning-photos"
    photos = _images_in(folder)
    if not photos:
        raise LiWiError(f"no tuning photos in '{folder}' (prepare them with `{PREPARE_TUNING_COMMAND}`)")
    return build_heldout(out, objects_dir, photos, cfg, progress)


def build_dev_subjects(out, objects_dir=None, photos_dir=None, progress: bool = False) -> Path:
    """Build the subject scenes (:data:`DEV_SUBJECT_SCENES`) in ``out``: the training cut-outs on
    photos with their own subject (default ``data/sources/photo-backgrounds``)."""
    folder = Path(photos_dir) if photos_dir is not None else ROOT / "data" / "sources" / "photo-backgrounds"
    if not _images_in(folder):
        raise LiWiError(f"no photos in '{folder}' (prepare them with `{PREPARE_PHOTOS_COMMAND}`)")
    return build_dev_photos(out, objects_dir, folder, progress, DEV_SUBJECT_SCENES)


def build_heldout(out, objects_dir=None, backgrounds: list[Path] | None = None, cfg: dict = HELDOUT_V2,
                  progress: bool = False) -> Path:
    """Build the held-out scenes in ``out`` (skipping finished samples) and return ``out``.

    Args:
        out: dataset folder (``samples/``, ``config.json``).
        objects_dir: folder of cut-outs (default ``data/sources/objects``); its held-out ones are used.
        backgrounds: background photos (default :func:`default_backgrounds`).
        cfg: ``num``, ``two_objects``, ``seed``, ``size``.

    Raises:
        LiWiError: no objects (naming the preparation command), no backgrounds, or ``out``
            already holds a set built from other sources or settings.
    """
    out = Path(out)
    objects = heldout_objects(objects_dir if objects_dir is not None else ROOT / "data" / "sources" / "objects",
                              cfg.get("split", "heldout"))
    backgrounds = list(backgrounds) if backgrounds is not None else default_backgrounds()
    if not backgrounds:
        raise LiWiError("no background photos for the held-out scenes")
    config = {"format": FORMAT, **cfg, "objects": [p.name for p in objects],
              "backgrounds": [p.name for p in backgrounds]}
    config_file = out / "config.json"
    if config_file.is_file():
        try:
            old = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != config:
            raise LiWiError(f"'{out}' holds a benchmark built from other sources or settings "
                            f"(remove it or give another folder)")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(config_file, (json.dumps(config, indent=1) + "\n").encode())
    done = set(sample_ids(out))
    for i in range(cfg["num"]):
        sid = _sample_id(cfg, i)
        if sid in done:
            continue
        write_sample(out, make_scene(i, objects, backgrounds, cfg))
        if progress:
            print(f"\r  held-out scenes: {i + 1}/{cfg['num']}", end="", flush=True, file=sys.stderr)
    if progress and len(done) < cfg["num"]:
        print(file=sys.stderr)
    return out
