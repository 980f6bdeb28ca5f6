"""Salient-object maps: U²-Net small (``u2netp``) in the diffusers model conventions.

U²-Net (Xuebin Qin, Zichen Zhang, Chenyang Huang, Masood Dehghan, Osmar R. Zaiane and
Martin Jagersand, "U²-Net: Going Deeper with Nested U-Structure for Salient Object
Detection", Pattern Recognition 2020; https://github.com/xuebinqin/U-2-Net, Apache-2.0)
is a U-Net of U-Nets: each stage is a residual U-block (RSU-L, a small U-Net of height L
whose output is added to its input convolution), six encoder stages and five decoder
stages; a 3x3 convolution reads a saliency logit off every decoder stage (and the
deepest encoder stage), the six side maps are upsampled to full size and fused by a 1x1
convolution. ``u2netp`` is its small version (about 1.1M parameters), the default model of
rembg.

The bundled weights (``weights/u2netp``, see its README.md) are converted from rembg's
``u2netp.onnx`` by ``training/convert_u2netp.py``. That ONNX export has the batch norms
folded into the convolutions, so :class:`U2NetP` has none by default
(``batch_norm=False``); with ``batch_norm=True`` its ``state_dict`` has the names of the
original PyTorch code (``stage1.rebnconvin.conv_s1.weight``, ``...bn_s1.running_mean``).

:func:`saliency_map` runs the model the way rembg does (resize to 320x320 with a Lanczos
filter, divide by the image's maximum, ImageNet mean and std; min-max normalise the fused
map and resize it back with the same filter). Only safetensors are ever loaded
(:func:`load_saliency_model`); nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from .checkpoints import load_pretrained
from .errors import LiWiError
from .precision import inference_precision, network_precision

__all__ = ["U2NetP", "SaliencyOutput", "saliency_map", "load_saliency_model", "lanczos_resize", "normalise",
           "DEFAULT_SALIENCY_CHECKPOINT", "MEAN", "STD"]

# the weights shipped with the pack (README.md and LICENSE beside them)
DEFAULT_SALIENCY_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "u2netp"
# rembg's normalisation (ImageNet statistics)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class _ConvBNReLU(nn.Module):
    """U²-Net's REBNCONV: 3x3 convolution (dilated) + batch norm + ReLU; without
    ``batch_norm`` the norm is taken as folded into the convolution."""

    def __init__(self, cin: int, cout: int, dilation: int = 1, batch_norm: bool = False):
        super().__init__()
        self.conv_s1 = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_s1(self.conv_s1(x)))


def _upsample_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class _RSU(nn.Module):
    """Residual U-block RSU-L (``height`` L) or, with ``dilated``, RSU-LF (no pooling: the
    deeper levels dilate 2, 4, 8 instead). Module names are those of the original code
    (``rebnconvin``, ``rebnconv1``..``rebnconvL``, ``rebnconv{L-1}d``..``rebnconv1d``)."""

    def __init__(self, height: int, cin: int, mid: int, cout: int, dilated: bool = False,
                 batch_norm: bool = False):
        super().__init__()
        self.height, self.dilated = height, dilated
        if dilated:
            self.dilations = [2 ** i for i in range(height)]  # 1, 2, 4, 8
        else:
            self.dilations = [1] * (height - 1) + [2]
        self.rebnconvin = _ConvBNReLU(cin, cout, 1, batch_norm)
        for i in range(1, height + 1):
            setattr(self, f"rebnconv{i}", _ConvBNReLU(cout if i == 1 else mid, mid, self.dilations[i - 1], batch_norm))
        for i in range(height - 1, 0, -1):
            setattr(self, f"rebnconv{i}d", _ConvBNReLU(2 * mid, cout if i == 1 else mid, self.dilations[i - 1],
                                                       batch_norm))
        # how many of the last decoder levels (and the residual sum) run in float32 under a
        # lower-precision autocast (:func:`inference_precision`)
        self.float32_levels = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xin = self.rebnconvin(x)
        skips = []
        h = xin
        for i in range(1, self.height):
            h = getattr(self, f"rebnconv{i}")(h)
            skips.append(h)
            if not self.dilated and i < self.height - 1:
                h = _pool(h)
        h = getattr(self, f"rebnconv{self.height}")(h)
        for i in range(self.height - 1, 0, -1):
            skip = skips[i - 1]
            exact = i <= self.float32_levels and torch.is_autocast_enabled(h.device.type)
            if exact:
                h, skip = h.float(), skip.float()
            # only ever turns autocast off: ``enabled=True`` would turn it on in a float32 pass
            with torch.autocast(h.device.type, enabled=False) if exact else contextlib.nullcontext():
                h = getattr(self, f"rebnconv{i}d")(torch.cat([_upsample_like(h, skip), skip], dim=1))
        return h + xin.to(h.dtype)  # float32 where the last levels ran in it


@dataclass
class SaliencyOutput(BaseOutput):
    """What :class:`U2NetP` predicts, sigmoid probabilities in [0,1] at the input's size.

    Attributes:
        saliency: ``[B,1,H,W]`` the fused map (U²-Net's ``d0``, the one rembg uses).
        side_outputs: ``[B,6,H,W]`` the six side maps ``d1``..``d6`` (fine to coarse),
            upsampled to the input's size.
    """

    saliency: torch.Tensor
    side_outputs: torch.Tensor


class U2NetP(ModelMixin, ConfigMixin):
    """U²-Net small: ``(sample [B,3,H,W], normalised) -> {saliency, side_outputs}``.

    Args:
        in_channels: input channels (3: RGB normalised with :data:`MEAN` / :data:`STD`).
        out_channels: channels of each side map and of the fused map.
        mid_channels: channels inside the residual U-blocks (16 in ``u2netp``).
        stage_channels: channels between the stages (64 in ``u2netp``).
        batch_norm: keep the batch norms (the original layout, for training); False for
            weights with the norms folded into the convolutions (the bundled ones).
        sample_size: the side :func:`saliency_map` resizes images to (320, as trained).
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, out_channels: int = 1, mid_channels: int = 16,
                 stage_channels: int = 64, batch_norm: bool = False, sample_size: int = 320):
        super().__init__()
        c, m, bn = stage_channels, mid_channels, batch_norm
        self.stage1 = _RSU(7, in_channels, m, c, batch_norm=bn)
        self.stage2 = _RSU(6, c, m, c, batch_norm=bn)
        self.stage3 = _RSU(5, c, m, c, batch_norm=bn)
        self.stage4 = _RSU(4, c, m, c, batch_norm=bn)
        self.stage5 = _RSU(4, c, m, c, dilated=True, batch_norm=bn)
        self.stage6 = _RSU(4, c, m, c, dilated=True, batch_norm=bn)
        self.stage5d = _RSU(4, 2 * c, m, c, dilated=True, batch_norm=bn)
        self.stage4d = _RSU(4, 2 * c, m, c, batch_norm=bn)
        self.stage3d = _RSU(5, 2 * c, m, c, batch_norm=bn)
        self.stage2d = _RSU(6, 2 * c, m, c, batch_norm=bn)
        self.stage1d = _RSU(7, 2 * c, m, c, batch_norm=bn)
        # the last convolutions of the second-finest decoder stage add up activations of up to
        # ~230 that nearly cancel: all in bfloat16 (8-bit mantissa), the map moved by up to 0.66
        # on the example photos; with those three in float32, by at most 0.07 (mean <= 0.003),
        # at 0.18 s a pass instead of 0.17 (float32: 0.30). The same in the finest stage as well
        # halves that error, for 0.22 s.
        self.stage2d.float32_levels = 3
        for i in range(1, 7):
            setattr(self, f"side{i}", nn.Conv2d(c, out_channels, 3, padding=1))
        self.outconv = nn.Conv2d(6 * out_channels, out_channels, 1)

    def forward(self, sample: torch.Tensor, return_dict: bool = True):
        """Saliency of a normalised image.

        Args:
            sample: ``[B,3,H,W]``, RGB scaled to [0,1] by its maximum, then ``(x - MEAN) / STD``
                (what :func:`saliency_map` feeds it); any H and W, 320x320 as trained.
            return_dict: a :class:`SaliencyOutput`, else the tuple ``(saliency, side_outputs)``.
        """
        encoders = [self.stage1, self.stage2, self.stage3, self.stage4, self.stage5]
        skips = []
        h = sample
        for k, stage in enumerate(encoders):
            h = stage(h if k == 0 else _pool(h))
            skips.append(h)
        h = self.stage6(_pool(h))
        deepest = h
        decoded = []
        for stage, skip in zip([self.stage5d, self.stage4d, self.stage3d, self.stage2d, self.stage1d],
                               reversed(skips)):
            h = stage(torch.cat([_upsample_like(h, skip), skip], dim=1))
            decoded.append(h)
        # side maps, fine to coarse: stage1d .. stage5d, then stage6
        features = list(reversed(decoded)) + [deepest]
        d1 = self.side1(features[0])
        sides = [d1] + [_upsample_like(getattr(self, f"side{i + 1}")(f), d1) for i, f in enumerate(features[1:], 1)]
        sides = torch.cat(sides, dim=1)
        d0 = self.outconv(sides)
        saliency, side_outputs = torch.sigmoid(d0), torch.sigmoid(sides)
        if not return_dict:
            return saliency, side_outputs
        return SaliencyOutput(saliency=saliency, side_outputs=side_outputs)


@functools.lru_cache(maxsize=32)
def _lanczos_weights(n_in: int, n_out: int, device=None) -> torch.Tensor:
    """``[n_out, n_in]`` resampling matrix of PIL's ``Image.LANCZOS`` (Lanczos-3, its support
    widened by the scale when shrinking; PIL's ``precompute_coeffs``), float32. Kept for the
    next call with the same sizes (every look at a window resizes it to the network's 320 and
    its answer back), made outside any ``inference_mode`` so the cached tensor serves both."""
    with torch.inference_mode(False):
        return _lanczos_matrix(n_in, n_out, device)


def _lanczos_matrix(n_in: int, n_out: int, device) -> torch.Tensor:
    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = 3.0 * filter_scale
    center = (torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * scale
    x = torch.arange(n_in, dtype=torch.float64, device=device)
    first = torch.trunc(center - support + 0.5).clamp(min=0)
    stop = torch.trunc(center + support + 0.5).clamp(max=n_in)
    t = (x[None, :] - center[:, None] + 0.5) / filter_scale
    w = torch.where((t >= -3) & (t < 3), torch.sinc(t) * torch.sinc(t / 3), torch.zeros_like(t))
    w = w * ((x[None, :] >= first[:, None]) & (x[None, :] < stop[:, None]))
    total = w.sum(dim=1, keepdim=True)
    w = torch.where(total != 0, w / torch.where(total != 0, total, torch.ones_like(total)), w)
    return w.float()


def lanczos_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B,C,H,W]`` resized to ``size`` (h, w) as PIL's ``resize(..., Image.LANCZOS)`` does
    (horizontal pass, then vertical; values clamped to [0,1] after each, as PIL clips),
    in floating point: PIL's rounding to 8 bits between and after the passes is left out."""
    h, w = size
    out = x.float()
    if out.shape[-1] != w:
        out = (out @ _lanczos_weights(out.shape[-1], w, out.device).T).clamp(0, 1)
    if out.shape[-2] != h:
        out = (_lanczos_weights(out.shape[-2], h, out.device) @ out).clamp(0, 1)
    return out


def _as_rgb(image: torch.Tensor) -> torch.Tensor:
    if image.ndim != 4 or image.shape[1] not in (1, 3, 4):
        raise LiWiError(f"saliency_map takes an image [B,3,H,W] (or 1 or 4 channels), not {tuple(image.shape)}")
    if image.shape[1] == 1:
        return image.expand(-1, 3, -1, -1)
    return image[:, :3]  # RGBA: rembg's convert("RGB") drops the alpha


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    """``[B,3,S,S]`` in [0,1] -> the network's input as rembg prepares it: each image divided by
    its maximum, then ``(x - MEAN) / STD``."""
    rgb = rgb / rgb.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    mean = torch.tensor(MEAN, device=rgb.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - mean) / std


def _weight_stamp(param: torch.Tensor) -> tuple:
    """What changes when ``param`` is changed in place: its version counter; a tensor made under
    ``torch.inference_mode`` (ComfyUI runs every node in it, so a model loaded by a node has
    such weights) has none, and reading it raises, so its storage and two sums stand in."""
    if param.is_inference():
        data = param.detach().double()
        return (param.data_ptr(), float(data.sum()), float(data.square().sum()))
    return (param._version,)


class _LastPass:
    """The network's output for the last input :func:`saliency_map` gave it, returned again for
    the same model, unchanged weights (their in-place version counters, which every optimiser
    step and ``load_state_dict`` bump), an equal input and the same precision or float32; one
    entry, so it holds one small sample and its map."""

    def __init__(self):
        self._entry = None

    @staticmethod
    def _key(model: nn.Module) -> tuple:
        return (model.training,) + tuple(_weight_stamp(p) for p in model.parameters())

    def get(self, model: nn.Module, sample: torch.Tensor, precision: torch.dtype) -> torch.Tensor | None:
        entry = self._entry
        if entry is None:
            return None
        ref, key, last, done_in, out = entry
        # a float32 answer serves a lower-precision request too (automatic mode finds objects
        # in float32, then the engine looks again at an object that fills the frame)
        if done_in not in (precision, torch.float32):
            return None
        # torch.equal is False for another shape; another dtype or device it would not compare
        if ref() is not model or key != self._key(model) or last.dtype != sample.dtype \
                or last.device != sample.device or not torch.equal(last, sample):
            return None
        return out

    def put(self, model: nn.Module, sample: torch.Tensor, precision: torch.dtype, out: torch.Tensor) -> None:
        self._entry = (weakref.ref(model), self._key(model), sample, precision, out)


_LAST_PASS = _LastPass()


@torch.no_grad()
def saliency_map(model: U2NetP, image: torch.Tensor, normalize: bool = True,
                 sample_size: int | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Where the salient object is, ``[B,1,H,W]`` in [0,1] at the image's size, as rembg computes it.

    rembg's ``u2netp`` session: the image is resized to ``sample_size`` squared (320x320,
    Lanczos, aspect ratio not kept), divided by its maximum, normalised with :data:`MEAN`
    and :data:`STD`; the fused map ``d0`` is min-max normalised (per image) and resized
    back to the image's size (Lanczos). rembg quantises to 8 bits on the way (its input
    image, the map); here everything stays in floating point.

    Args:
        model: a :class:`U2NetP` (:func:`load_saliency_model`); runs on its device and dtype.
        image: ``[B,3,H,W]`` in [0,1] (1 channel: grey; 4: the alpha is ignored).
        normalize: rembg's per-image min-max stretch. Off, the map is the network's own
            probability, which stays low on an image with nothing salient (the stretch would
            blow its noise up to 1).
        sample_size: the side of the network's square input; None: the model's
            ``sample_size`` (rembg's 320). The network is fully convolutional; a smaller
            input is faster (256: 0.6x the time of 320) and sees the image coarser.
        size: the map's ``(H, W)``; None: the image's.

    The pass computes in :func:`~liwi_core.precision.network_precision` (by default bfloat16 on
    a CPU that has it in hardware). The network's answer to the last input it was given is kept
    (:class:`_LastPass`): automatic mode looks at a photo whole to find its objects, and the
    engine's look at an object that fills the frame is the same input again.
    """
    rgb = _as_rgb(image).float().clamp(0, 1)
    h, w = rgb.shape[-2:] if size is None else size
    side = int(model.config.sample_size if sample_size is None else sample_size)
    if side < 32:
        raise LiWiError(f"saliency_map: sample_size {side} is too small for U²-Net's five poolings (>= 32)")
    small = normalise(lanczos_resize(rgb, (side, side)))
    param = next(model.parameters())
    # channels-last: oneDNN's convolutions take it directly (0.36 -> 0.30 s a pass on 2 CPU threads)
    sample = small.to(param.device, param.dtype).contiguous(memory_format=torch.channels_last)
    precision = network_precision(param.device) if param.dtype == torch.float32 else param.dtype
    d0 = _LAST_PASS.get(model, sample, precision)
    if d0 is None:
        with inference_precision(model):
            d0 = model(sample, return_dict=False)[0].float()
        _LAST_PASS.put(model, sample, precision, d0)
    d0 = d0.float().to(rgb.device)
    if not normalize:
        return lanczos_resize(d0, (h, w)).clamp(0, 1)
    lo = d0.amin(dim=(1, 2, 3), keepdim=True)
    hi = d0.amax(dim=(1, 2, 3), keepdim=True)
    pred = (d0 - lo) / (hi - lo).clamp_min(1e-12)
    return lanczos_resize(pred, (h, w))


def load_saliency_model(path=None) -> U2NetP:
    """Load a :class:`U2NetP` folder (``config.json`` + ``.safetensors``), safetensors only, from
    a local path; ``path`` None: the bundled ``u2netp`` (:data:`DEFAULT_SALIENCY_CHECKPOINT`).
    Returns the model in eval mode on the CPU.

    Raises:
        LiWiError: naming the file, when the folder is missing, holds a pickle (or ONNX)
            instead of safetensors, is truncated, of another architecture, or its weights
            do not match its config.
    """
    model = load_pretrained(DEFAULT_SALIENCY_CHECKPOINT if path is None else path, U2NetP, "saliency model")
    return model.to(memory_format=torch.channels_last)
