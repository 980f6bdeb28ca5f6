"""The refiner: a small U-Net that learns corrections of the classical engine's layers.

The classical engine already gets most of an object right; what it misses (a box prompt
that takes the table too, an exact prompt it moves off the true edge, the cast shadow it
leaves in the background) is a correction of its answer, which a small network trained
on a CPU can learn where learning the whole decomposition from scratch could not.

``LiWiRefiner`` sees, at a working size over the object's region of interest: the image,
the prompt, the classical alpha, shadow map and background, and U²-Net small's saliency
map (:mod:`liwi_core.saliency`, pretrained: it already knows what objects are). It
predicts three corrections, whose output layer starts at zero:

* alpha, in logit space;
* the shadow map, in log space (a multiplicative correction of the attenuation);
* the background under the object, additive.

:func:`apply_corrections` turns them into layers; where a correction is exactly zero the
classical value is kept bit for bit, so an untrained refiner gives the classical stack.
Colours are then solved exactly (:func:`~liwi_core.engines.exact.explain_object`), so the
layers stay lossless whatever the network predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from .filters import dilate, luminance
from .model import conv_block, unet_features

__all__ = ["CAST_CHANNEL", "INPUT_CHANNELS", "INPUT_PLANES", "SALIENCY_CHANNEL", "LiWiRefiner", "RefinerOutput", "apply_corrections",
           "correct_alpha", "input_plane", "refiner_inputs"]

#: what :func:`refiner_inputs` stacks, in order, with each plane's channel count
INPUT_PLANES = (("image", 3), ("prompt", 1), ("alpha", 1), ("shadow", 1), ("background", 3), ("saliency", 1),
                ("cast", 1))
_PLANE_SLICES = {}
for _name, _width in INPUT_PLANES:
    _start = sum(s.stop - s.start for s in _PLANE_SLICES.values())
    _PLANE_SLICES[_name] = slice(_start, _start + _width)
INPUT_CHANNELS = sum(width for _, width in INPUT_PLANES)
#: where :func:`refiner_inputs` puts the saliency map
SALIENCY_CHANNEL = _PLANE_SLICES["saliency"].start
#: where it puts the fitted cast shadow (:func:`~liwi_core.shadow.fit_cast_shadow`), the last plane: a
#: refiner without ``cast_shadow`` reads the planes before it
CAST_CHANNEL = _PLANE_SLICES["cast"].start


def input_plane(inputs: torch.Tensor, name: str) -> torch.Tensor:
    """One plane of :func:`refiner_inputs`' stack by its name in :data:`INPUT_PLANES`:
    ``[B,C,H,W]`` in, ``[B,width,H,W]`` out (a view)."""
    return inputs[:, _PLANE_SLICES[name]]
#: the refiner's default working size (longest side of an object's region, px)
WORKING_SIZE = 256
_EPS = 1e-4


@dataclass
class RefinerOutput(BaseOutput):
    """Corrections :class:`LiWiRefiner` predicts, ``[B,C,H,W]`` at its input's size.

    Attributes:
        alpha: added to the classical alpha's logit (1 channel).
        shadow: added to the log of the classical shadow map (1 channel, all of R, G, B).
        background: added to the classical background under the object (3 channels).
        cast_gate: with ``cast_gate``, how far (0-1, clamped) the corrected shadow moves to the
            fitted cast shadow where that is darker (1 channel); None otherwise.
    """

    alpha: torch.Tensor
    shadow: torch.Tensor
    background: torch.Tensor
    cast_gate: torch.Tensor | None = None


class LiWiRefiner(ModelMixin, ConfigMixin):
    """U-Net ``[B, INPUT_CHANNELS, H, W]`` (:func:`refiner_inputs`) -> :class:`RefinerOutput`.

    Args:
        base_channels: channels of the first level (doubled per level).
        depth: downsampling levels; H and W are padded to a multiple of ``2**depth``.
        working_size: longest side of the region of interest the engine runs it at.
        shadow_reach: how far from the object the engine looks for its shadow (fraction of
            the object's size); the refiner was trained with this region of interest.
        alpha_support: the alpha correction is zero farther than this (fraction of the grid's
            longest side) from the prompt and the classical alpha: the refiner may move an
            object's edge and recover what a rough prompt cut off, never put a faint veil of
            alpha over the whole region (which would move with the object as a ghost). 0 =
            no alpha correction at all (the refiner then corrects shadows and the background).
        saliency_size: the side of the square input U²-Net small's saliency channel is computed
            at (:func:`~liwi_core.saliency.saliency_map`'s ``sample_size``); the network learns
            the maps of that size. Checkpoints saved before it existed were trained at rembg's
            320.
        cast_shadow: the refiner also reads the cast shadow fitted to the classical alpha
            (:func:`~liwi_core.shadow.fit_cast_shadow`, the last plane); without it, only the
            planes before (checkpoints saved before it existed).
        cast_gate: the refiner also predicts a gate that takes the fitted cast shadow where it
            is darker than the corrected one (:func:`apply_corrections`; needs ``cast_shadow``).
            The shadow correction works in log space on the classical map; copying a fitted
            silhouette the classical map missed is easier as a share of the way to it.
    """

    @register_to_config
    def __init__(self, base_channels: int = 16, depth: int = 4, working_size: int = WORKING_SIZE,
                 shadow_reach: float = 0.75, alpha_support: float = 0.08, saliency_size: int = 320,
                 cast_shadow: bool = False, cast_gate: bool = False):
        super().__init__()
        chans = [base_channels * 2 ** min(i, 3) for i in range(depth + 1)]
        self.in_channels = INPUT_CHANNELS if cast_shadow else CAST_CHANNEL
        self.enc = nn.ModuleList([conv_block(self.in_channels, chans[0])] +
                                 [conv_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.dec = nn.ModuleList([conv_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], 1 + 1 + 3 + int(cast_gate), 1)
        # an untrained refiner changes nothing
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs: torch.Tensor, return_dict: bool = True):
        """Corrections for one object per batch item.

        Args:
            inputs: ``[B, INPUT_CHANNELS, H, W]`` from :func:`refiner_inputs`, in [0,1] (without
                ``cast_shadow``, the planes after :data:`CAST_CHANNEL` may be left out).
            return_dict: a :class:`RefinerOutput`, else a tuple ``(alpha, shadow, background)``.
        """
        if inputs.shape[1] < self.in_channels:
            raise ValueError(f"the refiner reads {self.in_channels} input planes, got {inputs.shape[1]}")
        inputs = inputs[:, :self.in_channels]
        h, w = inputs.shape[-2:]
        m = 2 ** self.config.depth
        x = F.pad(inputs * 2 - 1, (0, (-w) % m, 0, (-h) % m), mode="replicate")
        out = self.head(unet_features(self.enc, self.dec, x))[..., :h, :w]
        parts = (out[:, 0:1] * correction_support(inputs, self.config.alpha_support), out[:, 1:2], out[:, 2:5])
        if self.config.cast_gate:
            parts = (*parts, out[:, 5:6])
        return RefinerOutput(*parts) if return_dict else parts


def correction_support(inputs: torch.Tensor, reach: float) -> torch.Tensor:
    """``[B,1,H,W]``, 1 within ``reach`` (fraction of the longest side) of the prompt or the
    classical alpha (planes of :func:`refiner_inputs`), 0 beyond; all 0 for ``reach`` 0."""
    seed = ((input_plane(inputs, "prompt") > 0.5) | (input_plane(inputs, "alpha") > 0)).to(inputs.dtype)
    if reach <= 0:
        return torch.zeros_like(seed)
    return dilate(seed, max(1, round(reach * max(inputs.shape[-2:]))))


def refiner_inputs(image: torch.Tensor, prompt: torch.Tensor, alpha: torch.Tensor, shadow: torch.Tensor,
                   background: torch.Tensor, saliency: torch.Tensor, cast: torch.Tensor | None = None) -> torch.Tensor:
    """Stack what the refiner sees, ``[B, INPUT_CHANNELS, H, W]``; all inputs ``[B,C,H,W]`` in [0,1]
    on one grid: image (3), prompt (1), classical alpha (1), classical shadow map (1 or 3, made
    grey), classical background (3), saliency (1), the fitted cast shadow (1; None: no shadow, all
    1): :data:`INPUT_PLANES`."""
    grey = shadow if shadow.shape[1] == 1 else luminance(shadow)
    planes = {"image": image, "prompt": prompt, "alpha": alpha, "shadow": grey, "background": background,
              "saliency": saliency, "cast": torch.ones_like(alpha) if cast is None else cast}
    return torch.cat([planes[name] for name, _ in INPUT_PLANES], dim=1).clamp(0, 1)


def correct_alpha(alpha: torch.Tensor, correction: torch.Tensor) -> torch.Tensor:
    """``alpha`` moved by a correction in logit space: ``sigmoid(logit(alpha) + correction)``, alpha
    clamped away from 0 and 1 first (the refiner's and the edge refiner's corrections)."""
    return torch.sigmoid(torch.logit(alpha.clamp(_EPS, 1 - _EPS)) + correction)


def _keep_where_zero(delta: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    return torch.where(delta == 0, old, new)


def _corrected_shadow(shadow: torch.Tensor, corrections: RefinerOutput, cast: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The corrected shadow (see :func:`apply_corrections`) and a tensor that is 0 exactly where it
    is to stay the classical one."""
    new_shadow = (shadow.clamp_min(1e-3) * torch.exp(corrections.shadow)).clamp(0, 1)
    shadow_delta = corrections.shadow
    if corrections.cast_gate is not None and cast is not None:
        gate = corrections.cast_gate.clamp(0, 1)
        new_shadow = new_shadow - gate * (new_shadow - cast).clamp(min=0)
        shadow_delta = torch.where(gate == 0, shadow_delta, torch.ones_like(shadow_delta))
    return new_shadow, shadow_delta


def corrected_shadow(shadow: torch.Tensor, corrections: RefinerOutput, cast: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """The shadow part of :func:`apply_corrections` alone (``exact_zero``), for a caller that
    weighs several gates and needs neither alpha nor background. ``[B,1|3,H,W]``; the gate and
    ``cast`` may hold several maps (``[N,1,H,W]``), giving ``N`` shadows."""
    new_shadow, shadow_delta = _corrected_shadow(shadow, corrections, cast)
    return _keep_where_zero(shadow_delta, shadow, new_shadow)


def apply_corrections(alpha: torch.Tensor, shadow: torch.Tensor, background: torch.Tensor,
                      corrections: RefinerOutput, exact_zero: bool = True, cast: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The refined ``(alpha, shadow, background)`` from the classical ones and the corrections
    (all on one grid, ``[B,1|3,H,W]``; corrections broadcast over the shadow's channels).

    ``cast``: the fitted cast shadow on the same grid; with a ``cast_gate`` correction ``g`` the
    shadow becomes ``s - clamp(g, 0, 1) * max(s - cast, 0)``, ``s`` the corrected shadow.

    ``exact_zero``: where a correction is exactly 0 the classical value is returned unchanged
    (not a float round trip through logit and sigmoid), so a refiner whose output is zero is
    the classical engine exactly. Training turns it off: the selection has no gradient, and a
    zero-initialised refiner would never leave zero.
    """
    new_shadow, shadow_delta = _corrected_shadow(shadow, corrections, cast)
    parts = ((alpha, correct_alpha(alpha, corrections.alpha), corrections.alpha),
             (shadow, new_shadow, shadow_delta),
             (background, (background + corrections.background).clamp(0, 1), corrections.background))
    if not exact_zero:
        return tuple(new for _, new, _ in parts)
    return tuple(_keep_where_zero(delta, old, new) for old, new, delta in parts)
