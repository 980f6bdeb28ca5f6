"""The learned decomposer: a small U-Net in the diffusers model conventions.

``LiWiNet`` takes an image and a prompt mask (all zeros = automatic: find the front-most
object yourself) at a working resolution and predicts, for the front-most prompted
object: its alpha, the shadow it casts (multiplicative, 1 = none) and the image with the
object and its shadow removed (the completed background). Foreground colours are then
solved exactly as in the classical engine, so the layers stay lossless.

Checkpoints are folders with ``config.json`` and ``diffusion_pytorch_model.safetensors``
(``save_pretrained`` / ``from_pretrained``); only safetensors are ever loaded.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from dataclasses import dataclass

from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from .filters import push_pull_fill

__all__ = ["LiWiNet", "conv_block", "unet_features"]


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convolutions with GroupNorm and SiLU: one U-Net level (here and in the refiner)."""
    groups = max(1, min(8, cout // 4))
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
    )


@dataclass
class LiWiNetOutput(BaseOutput):
    """What :class:`LiWiNet` predicts for one object, ``[B,1|3,H,W]`` in [0,1].

    Attributes:
        alpha: the object's alpha.
        shadow: the shadow map it casts (1 = none).
        background: the completed background under it.
    """

    alpha: torch.Tensor
    shadow: torch.Tensor
    background: torch.Tensor


class LiWiNet(ModelMixin, ConfigMixin):
    """U-Net: ``(image [B,3,H,W], prompt [B,1,H,W]) -> {alpha, shadow, background}``.

    Args:
        base_channels: channels of the first level (doubled per level).
        depth: number of downsampling levels; H and W are padded to a multiple of 2**depth.
        working_size: the longest side inference runs at (the engine resizes to it).
        prefill: also give the network a smooth fill of the image outside the prompt
            (push-pull, :func:`~liwi_core.filters.push_pull_fill`) and predict the
            background as a correction of that fill rather than of the image: the network
            only has to learn what a smooth fill gets wrong (texture, edges running
            through the hole), which a small model trained briefly can.
    """

    @register_to_config
    def __init__(self, base_channels: int = 32, depth: int = 4, working_size: int = 256, prefill: bool = False):
        super().__init__()
        chans = [base_channels * 2 ** i for i in range(depth + 1)]
        inputs = 4 + (3 if prefill else 0)
        self.enc = nn.ModuleList([conv_block(inputs, chans[0])] + [conv_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.dec = nn.ModuleList([conv_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], 1 + 1 + 3, 1)

    def forward(self, image: torch.Tensor, prompt: torch.Tensor, return_dict: bool = True):
        """Predict one object's layers.

        Args:
            image: ``[B,3,H,W]`` in [0,1].
            prompt: ``[B,1,H,W]`` prompt mask (1 = object; all zeros = find one).
            return_dict: a :class:`LiWiNetOutput` (also readable as ``out["alpha"]``), else a tuple.

        Returns:
            :class:`LiWiNetOutput` or ``(alpha, shadow, background)``.
        """
        h, w = image.shape[-2:]
        m = 2 ** self.config.depth
        ph, pw = (-h) % m, (-w) % m
        planes = [image, prompt]
        base = image
        if self.config.prefill:
            base = fill_outside(image, prompt)
            planes.append(base)
        x = F.pad(torch.cat(planes, dim=1) * 2 - 1, (0, pw, 0, ph), mode="replicate")
        out = self.head(unet_features(self.enc, self.dec, x))[..., :h, :w]
        alpha = torch.sigmoid(out[:, 0:1])
        shadow = torch.sigmoid(out[:, 1:2] + 4.0)  # starts near 1: no shadow unless learned
        # the background is the image (or its prefill) plus a learned correction, so untouched
        # regions stay exact
        background = (base + torch.tanh(out[:, 2:5])).clamp(0, 1)
        if not return_dict:
            return alpha, shadow, background
        return LiWiNetOutput(alpha=alpha, shadow=shadow, background=background)


def unet_features(enc: nn.ModuleList, dec: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """Run a U-Net's encoder levels (average-pooled between them) and decoder levels (bilinear
    upsampling, skip connections concatenated); returns the finest decoder features."""
    skips = []
    for i, block in enumerate(enc):
        x = block(x if i == 0 else F.avg_pool2d(x, 2))
        skips.append(x)
    for block, skip in zip(dec, reversed(skips[:-1])):
        x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False),
                             skip], dim=1))
    return x


def fill_outside(image: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    """``[B,3,H,W]``: the image with the prompted region (``prompt`` ``[B,1,H,W]`` in [0,1],
    soft) replaced by a push-pull fill from around it; the image itself where the prompt is
    empty or covers everything."""
    known = (1.0 - prompt).clamp(0.0, 1.0)
    fill = push_pull_fill(image, known)
    usable = ((known > 0.5).flatten(1).any(dim=1) & (known < 0.5).flatten(1).any(dim=1)).view(-1, 1, 1, 1)
    return torch.where(usable, fill, image)
