"""The prompt segmenter: U²-Net small that also sees the user's rough mask.

Zoomed onto a rough mask's box, the pretrained salient-object network (:mod:`liwi_core.saliency`)
marks the object the box is about, and the classical engine's GrabCut follows that map
(:func:`~liwi_core.engines.classical.prompt_saliency`). But the network does not know which
object the user meant: a box around a pepper beside a flower gets both, a loose brush around
a stethoscope gets the bark inside its loops. The prompt segmenter is the same network with a
fourth input channel, the rough mask, fine-tuned on ADD scenes whose truth says where each
object is (:mod:`liwi_core.train_segmenter`). The fourth channel's input weights start at zero,
so an untrained segmenter gives exactly the saliency network's map (tested), and training
learns only what the prompt adds.

It runs where the saliency network's zoomed look ran: on the rough mask's box grown by
:data:`PROMPT_MARGIN` of its size, squashed to ``sample_size`` squared (320, as the saliency
network), its map put back at the window's size and 0 outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoints import load_pretrained
from .filters import bounding_box
from .precision import inference_precision
from .saliency import U2NetP, lanczos_resize, load_saliency_model, normalise

__all__ = ["DEFAULT_SEGMENTER", "PROMPT_MARGIN", "init_from_saliency", "load_segmenter", "prompt_window",
           "segment_prompt", "segmenter_inputs", "shared_segmenter"]

#: the bundled segmenter, where one is shipped (:func:`load_segmenter`)
DEFAULT_SEGMENTER = Path(__file__).resolve().parent / "weights" / "liwi-segmenter"
#: the window a rough mask is looked at in: its box grown by this fraction of its size per side
PROMPT_MARGIN = 0.25


def init_from_saliency(path=None) -> U2NetP:
    """A 4-channel :class:`U2NetP` (RGB, then the rough mask) that is the pretrained saliency
    network (``path``, default the bundled ``u2netp``) with zero weights on the mask channel: it
    answers exactly as that network until trained."""
    source = load_saliency_model(path)
    config = {k: v for k, v in source.config.items() if not k.startswith("_")}
    model = U2NetP(**{**config, "in_channels": 4})
    state = source.state_dict()
    first = "stage1.rebnconvin.conv_s1.weight"
    weight = state[first]
    state[first] = torch.cat([weight, torch.zeros_like(weight[:, :1])], 1)
    model.load_state_dict(state)
    return model.to(memory_format=torch.channels_last)


def prompt_window(rough: torch.Tensor, margin: float | Sequence[float] = PROMPT_MARGIN) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the box of ``rough`` (``[1,1,H,W]``, not empty) grown by ``margin`` of
    its height and width on each side, within the image. ``margin`` may also be four margins,
    top, bottom, left and right (the trainer's windows); a negative one cuts into the box, as the
    frame cuts an object that fills a close-up photo, and four that leave less than 2 px give
    the box itself."""
    h, w = rough.shape[-2:]
    y0, y1, x0, x1 = bounding_box(rough)
    per_side = not isinstance(margin, (int, float))
    top, bottom, left, right = margin if per_side else (margin,) * 4
    bh, bw = y1 - y0, x1 - x0
    window = (max(0, y0 - round(top * bh)), min(h, y1 + round(bottom * bh)),
              max(0, x0 - round(left * bw)), min(w, x1 + round(right * bw)))
    if per_side and (window[1] - window[0] < 2 or window[3] - window[2] < 2):
        return y0, y1, x0, x1
    return window


def segmenter_inputs(image: torch.Tensor, rough: torch.Tensor, side: int) -> torch.Tensor:
    """The segmenter's input ``[B,4,side,side]`` from a window's image ``[B,3,h,w]`` in [0,1] and
    rough mask ``[B,1,h,w]`` in [0,1]: the image as :func:`~liwi_core.saliency.saliency_map`
    prepares it (Lanczos to ``side`` squared, normalised), the mask area-averaged to the same
    grid and mapped to [-1, 1]."""
    rgb = normalise(lanczos_resize(image.float().clamp(0, 1), (side, side)))
    mask = F.interpolate(rough.float(), size=(side, side), mode="area") * 2 - 1
    return torch.cat([rgb, mask], 1)


@torch.no_grad()
def segment_prompt(model: U2NetP, image: torch.Tensor, rough: torch.Tensor,
                   margin: float = PROMPT_MARGIN) -> torch.Tensor:
    """The object ``rough`` (``[1,1,H,W]``, 1 = object, not empty) points at, ``[1,1,H,W]`` in
    [0,1]: the segmenter's probability on :func:`prompt_window`, 0 outside it. ``image``
    ``[1,3,H,W]`` in [0,1]; runs on the model's device."""
    y0, y1, x0, x1 = prompt_window(rough, margin)
    side = int(model.config.sample_size)
    inputs = segmenter_inputs(image[..., y0:y1, x0:x1], (rough[..., y0:y1, x0:x1] > 0.5).float(), side)
    param = next(model.parameters())
    inputs = inputs.to(param.device, param.dtype).contiguous(memory_format=torch.channels_last)
    with inference_precision(model):
        prob = model(inputs, return_dict=False)[0].float().to(image.device)
    out = torch.zeros_like(rough[:, :1], dtype=torch.float32)
    out[..., y0:y1, x0:x1] = lanczos_resize(prob, (y1 - y0, x1 - x0)).clamp(0, 1)
    return out


def load_segmenter(path=None) -> U2NetP | None:
    """A segmenter folder (safetensors only), ``path`` None: the bundled one, or None where none
    is bundled."""
    if path is None:
        if not (DEFAULT_SEGMENTER / "config.json").is_file():
            return None
        path = DEFAULT_SEGMENTER
    model = load_pretrained(path, U2NetP, "prompt segmenter")
    return model.to(memory_format=torch.channels_last)


_SHARED: list = []


def shared_segmenter() -> U2NetP | None:
    """The bundled segmenter, loaded once per process (on the CPU), or None where none is bundled."""
    if not _SHARED:
        _SHARED.append(load_segmenter())
    return _SHARED[0]
