"""One-time tool: export the bundled example photos and their rough masks.

This script is NOT part of the node pack and is not imported anywhere. It was
run once to produce the files in ``example_images/``; it is kept only so that
anyone can regenerate (or audit) the photos and masks.

Requirements (not project dependencies; use a scratch venv)::

    python3 -m venv /tmp/skvenv
    /tmp/skvenv/bin/pip install scikit-image opencv-python-headless
    /tmp/skvenv/bin/python example_images/make_masks.py [--sheet /tmp/examples_sheet.png]

What it does, per photo:

1. Load the photo from ``skimage.data.<fn>()`` and save it unchanged (original
   resolution, RGB) as ``<name>.png``.
2. Run OpenCV GrabCut (5 iterations) initialised from a hand-chosen bounding
   box ``BOX``.  Where the box alone is not enough, hand-placed hints are
   painted as sure foreground (``FG`` rectangles, ``FG_ELLIPSES``) or sure
   background (``BG`` rectangles, ``BG_ELLIPSES``, and, if ``LIMIT_ELLIPSES``
   is given, everything outside their union), and GrabCut is re-run in mask
   mode.  Ellipses are (cx, cy, half_width, half_height).
3. Make the result *rough*, like a quick user-drawn mask: keep the largest
   connected component (and any touching an FG hint), fill holes, close gaps
   (``CLOSE`` px), dilate by ``DILATE`` px, then blur and re-threshold to round
   the outline.
4. Save ``<name>_mask.png``: 8-bit grey, 255 = object, 0 = background.

All coordinates are (x0, y0, x1, y1) in pixels of the original image, x1/y1
exclusive.  Masks are CC0 (see README.md); the photos keep the licences stated
by scikit-image (see README.md).
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
import skimage
import skimage.data

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> settings.  "fn" is the skimage.data function.
EXAMPLES = {
    # Chelsea the cat: the whole cat (head, fur, whiskers area) vs. the
    # blurred room on the right / top-left.
    "chelsea": dict(
        fn="chelsea",
        BOX=(0, 0, 400, 300),
        FG=[(60, 40, 330, 300), (0, 120, 60, 300), (330, 130, 350, 300)],
        BG=[(400, 0, 451, 300), (375, 60, 451, 300)],
        CLOSE=15,
        DILATE=8,
    ),
    # Espresso cup + saucer + spoon as ONE object on the wooden table.
    "coffee": dict(
        fn="coffee",
        BOX=(60, 5, 495, 400),
        FG=[(404, 74, 416, 110)],
        FG_ELLIPSES=[(279, 229, 184, 142), (290, 112, 106, 82)],
        BG=[],
        # The saucer's shadow on the table is dark and gets grabbed otherwise.
        LIMIT_ELLIPSES=[(279, 229, 207, 165), (290, 112, 124, 100),
                        (412, 88, 16, 30)],
        CLOSE=15,
        DILATE=8,
    ),
    # Eileen Collins (head, hair, suit, hands).  Excludes the flag, the shuttle
    # model and the helmet in the lower right.
    "astronaut": dict(
        fn="astronaut",
        BOX=(15, 10, 370, 512),
        FG=[(175, 45, 280, 120), (188, 120, 262, 240), (60, 280, 270, 500)],
        BG=[(368, 0, 512, 340), (0, 0, 140, 130), (0, 130, 12, 512)],
        BG_ELLIPSES=[(392, 460, 104, 106)],  # the helmet
        CLOSE=15,
        DILATE=8,
    ),
    # The Falcon 9 rocket standing on its pad (not the lightning towers).
    "rocket": dict(
        fn="rocket",
        BOX=(298, 120, 346, 412),
        FG=[(314, 140, 330, 400), (318, 129, 327, 140)],
        BG=[],
        CLOSE=9,
        DILATE=6,
    ),
}


def grabcut(img_rgb: np.ndarray, cfg: dict) -> np.ndarray:
    bgr = np.ascontiguousarray(img_rgb[..., ::-1])
    h, w = bgr.shape[:2]
    x0, y0, x1, y1 = cfg["BOX"]
    gc = np.zeros((h, w), np.uint8)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(bgr, gc, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, 5,
                cv2.GC_INIT_WITH_RECT)
    if cfg["FG"] or cfg["BG"] or cfg.get("FG_ELLIPSES") or \
            cfg.get("BG_ELLIPSES") or cfg.get("LIMIT_ELLIPSES"):
        for (a, b, c, d) in cfg["FG"]:
            gc[b:d, a:c] = cv2.GC_FGD
        for (cx, cy, ax, ay) in cfg.get("FG_ELLIPSES", []):
            cv2.ellipse(gc, (cx, cy), (ax, ay), 0, 0, 360, cv2.GC_FGD, -1)
        for (a, b, c, d) in cfg["BG"]:
            gc[b:d, a:c] = cv2.GC_BGD
        for (cx, cy, ax, ay) in cfg.get("BG_ELLIPSES", []):
            cv2.ellipse(gc, (cx, cy), (ax, ay), 0, 0, 360, cv2.GC_BGD, -1)
        # Keep everything outside the box as sure background.
        outside = np.ones((h, w), bool)
        outside[y0:y1, x0:x1] = False
        gc[outside] = cv2.GC_BGD
        if cfg.get("LIMIT_ELLIPSES"):
            inside = np.zeros((h, w), np.uint8)
            for (cx, cy, ax, ay) in cfg["LIMIT_ELLIPSES"]:
                cv2.ellipse(inside, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
            gc[inside == 0] = cv2.GC_BGD
        cv2.grabCut(bgr, gc, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    return ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)


def disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def roughen(m: np.ndarray, cfg: dict) -> np.ndarray:
    # Keep the largest connected component plus any component touching a
    # sure-foreground hint (drops stray blobs elsewhere in the picture).
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n > 1:
        keep = {1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))}
        for (a, b, c, d) in cfg["FG"]:
            keep.update(int(v) for v in np.unique(lab[b:d, a:c]) if v)
        for (cx, cy, _ax, _ay) in cfg.get("FG_ELLIPSES", []):
            if lab[cy, cx]:
                keep.add(int(lab[cy, cx]))
        m = np.isin(lab, sorted(keep)).astype(np.uint8)
    # Close gaps, then fill holes (flood fill from a padded border).
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, disk(cfg["CLOSE"]))
    pad = np.pad(m, 1)
    ff = pad.copy()
    cv2.floodFill(ff, None, (0, 0), 1)
    holes = (ff == 0)
    pad[holes] = 1
    m = pad[1:-1, 1:-1]
    # Slack, then a smooth outline.
    m = cv2.dilate(m, disk(cfg["DILATE"]))
    blur = cv2.GaussianBlur(m.astype(np.float32), (0, 0), cfg["DILATE"])
    return np.where(blur > 0.5, 255, 0).astype(np.uint8)


def contact_sheet(rows: list[tuple[np.ndarray, np.ndarray]], path: str) -> None:
    tiles = []
    for img, mask in rows:
        over = img.astype(np.float32).copy()
        sel = mask > 127
        over[sel] = 0.5 * over[sel] + 0.5 * np.array([255, 0, 0], np.float32)
        pair = np.concatenate([img, over.astype(np.uint8)], axis=1)
        scale = 1000 / pair.shape[1]
        pair = cv2.resize(pair, (1000, int(round(pair.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
        tiles.append(pair)
        tiles.append(np.full((6, 1000, 3), 255, np.uint8))
    sheet = np.concatenate(tiles, axis=0)
    cv2.imwrite(path, sheet[..., ::-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--sheet", default=None,
                    help="optional contact-sheet PNG (photo | mask overlay)")
    args = ap.parse_args()
    print("scikit-image", skimage.__version__, "opencv", cv2.__version__)
    rows = []
    for name, cfg in EXAMPLES.items():
        img = getattr(skimage.data, cfg["fn"])()
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        mask = roughen(grabcut(img, cfg), cfg)
        cv2.imwrite(os.path.join(args.out, f"{name}.png"), img[..., ::-1])
        cv2.imwrite(os.path.join(args.out, f"{name}_mask.png"), mask)
        print(f"{name}: {img.shape[1]}x{img.shape[0]}, "
              f"mask covers {100.0 * (mask > 0).mean():.1f}%")
        rows.append((img, mask))
    if args.sheet:
        contact_sheet(rows, args.sheet)


if __name__ == "__main__":
    main()
