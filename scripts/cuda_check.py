"""The learned engine on a GPU against the same engine on the CPU (a device check).

    python scripts/cuda_check.py [--size 768]

In ComfyUI, ``LiWi Load Model`` puts the learned model on ComfyUI's device and Decompose moves
the image there (``nodes/decompose.py``), so on a GPU machine every step of the learned engine
(the network, guided upsampling, the filters, the exact colour solve, the fill) runs on CUDA.
CI has no GPU; this script is run where one is lent. For each example photo, prompted with its
mask and in automatic mode, it prints the largest difference between the CUDA and the CPU
layers, each stack's recomposition PSNR, and the seconds of each (the second of two runs).
Exit status 1 if more than :data:`FAR_SHARE` of a layer's pixels differ by over 0.05, the layer
counts differ, or a stack is not lossless (below 45 dB).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from liwi_core.decompose import decompose
from liwi_core.engines import create
from liwi_core.filters import resize
from liwi_core.imageio import load_image, load_mask
from liwi_core.metrics import recompose_psnr
from liwi_core.precision import set_network_precision

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")
#: at most this share of a layer's pixels may differ by more than 0.05. Not zero: on an H200,
#: 4 to 60 isolated pixels of about 400,000 differed by up to 1. PyTorch runs float32
#: convolutions as TF32 on NVIDIA GPUs (about 1e-3 relative); where a faint alpha lies over a
#: background guess that disagrees with the photo, the exact colour solve raises the alpha to
#: keep the colour in range, so alpha just above or below its 0.02 cut-off ends at 0 or near 0.9
#: (a 1e-3 perturbation of the network's outputs on the CPU flips pixels the same way)
FAR_SHARE = 1e-3


def _run(engine, image, mask):
    decompose(image, mask, engine)  # warm-up (kernels, allocator)
    if image.is_cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    stack = decompose(image, mask, engine)
    if image.is_cuda:
        torch.cuda.synchronize()
    return stack, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=768, help="longer side the photos are resized to")
    p.add_argument("--device", default="cuda", help="the device checked against the CPU ('cpu': a dry run)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    # like for like: the CPU's network passes would otherwise run in bfloat16 where it has it
    set_network_precision("float32")
    cpu, gpu = create("learned"), create("learned")
    gpu.model.to(args.device)
    worst, ok = 0.0, True
    for name in PHOTOS:
        image = load_image(ROOT / "example_images" / f"{name}.png")[:, :3]
        mask = load_mask(ROOT / "example_images" / f"{name}_mask.png")
        h, w = image.shape[-2:]
        scale = args.size / max(h, w)
        size = (round(h * scale), round(w * scale))
        image, mask = resize(image, size), (resize(mask, size) > 0.5).float()
        for mode, m in (("prompted", mask[None] if mask.dim() == 3 else mask), ("automatic", None)):
            a, t_cpu = _run(cpu, image, m)
            b, t_gpu = _run(gpu, image.to(args.device), None if m is None else m.to(args.device))
            # what an editor sees: alpha, colour weighted by alpha (colour where alpha is 0 is only
            # the outward extension), and the background
            diffs = [float((a.background - b.background.cpu()).abs().max())]
            alpha_diffs, colour_diffs, row_far = [], [], 0.0
            same_count = len(a.layers) == len(b.layers)
            if same_count:
                for x, y in zip(a.layers, b.layers):
                    y = y.rgba.cpu()
                    alpha_diffs.append(float((x.rgba[:, 3:] - y[:, 3:]).abs().max()))
                    colour_diffs.append(float((x.rgba[:, :3] * x.rgba[:, 3:] - y[:, :3] * y[:, 3:]).abs().max()))
                    far = ((x.rgba - y).abs().amax(1) > 0.05).float().mean()
                    row_far = max(row_far, float(far))
                diffs += alpha_diffs + colour_diffs
            else:
                row_far = 1.0
            psnr_cpu = recompose_psnr(a.composite(), image)
            psnr_gpu = recompose_psnr(b.composite().cpu(), image)
            row = {"photo": name, "mode": mode, "layers": [len(a.layers), len(b.layers)],
                   "max_abs_diff": round(max(diffs), 5), "background": round(diffs[0], 5),
                   "alpha": round(max(alpha_diffs, default=1.0), 5), "colour_x_alpha": round(max(colour_diffs, default=1.0), 5),
                   "share_over_0.05": round(row_far, 5), "psnr_cpu": round(psnr_cpu, 1),
                   "psnr_gpu": round(psnr_gpu, 1), "seconds_cpu": round(t_cpu, 3), "seconds_gpu": round(t_gpu, 3)}
            print(json.dumps(row), flush=True)
            worst = max(worst, max(diffs))
            ok &= same_count and row_far <= FAR_SHARE and min(psnr_cpu, psnr_gpu) >= 45
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device
    print(json.dumps({"device": device, "worst_abs_diff": round(worst, 5), "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
