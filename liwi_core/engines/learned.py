"""The learned engine: :class:`~liwi_core.model.LiWiNet` predictions, made exact.

Objects are peeled front to back as in the classical engine. For each, the model runs at
its working size on what is left of the image (with the object's prompt mask, or an
empty one in automatic mode); its alpha is brought to full resolution by guided
upsampling (edges follow the full-resolution photo), its shadow and completed background
by bilinear upsampling, and :func:`~liwi_core.engines.exact.explain_object` solves
the colours so the stack recomposes to the input.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoints import PICKLE_SUFFIXES, load_pretrained  # noqa: F401  (PICKLE_SUFFIXES: tests)
from ..errors import LiWiError
from ..filters import guided_upsample, resize
from ..layers import default_layer_name
from ..options import check_settings, option
from .base import Engine, Peeled, StackBuilder
from .exact import explain_object

__all__ = ["load_model", "LearnedEngine", "LearnedSettings", "DEFAULT_CHECKPOINT"]

# the checkpoint shipped with the pack (its model card is MODEL_CARD.md beside it)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "weights" / "liwi-default"


def load_model(path=None):
    """Load a ``LiWiNet`` checkpoint folder (``config.json`` + ``.safetensors``); safetensors only.
    ``path`` None: the bundled default checkpoint (:data:`DEFAULT_CHECKPOINT`).

    Raises:
        LiWiError: naming the file, when the checkpoint is missing, a pickle, truncated,
            of another architecture, or its weights do not match its config.
    """
    try:
        from ..model import LiWiNet
    except ImportError:
        raise LiWiError("the learned engine needs diffusers: pip install 'diffusers>=0.30'") from None

    return load_pretrained(DEFAULT_CHECKPOINT if path is None else path, LiWiNet, "checkpoint")


def _forward(model, image: torch.Tensor, prompt: torch.Tensor) -> dict[str, torch.Tensor]:
    try:
        return model(image, prompt)
    except torch.OutOfMemoryError:
        # the network runs at its working size, so this only happens on a nearly full GPU:
        # finish on the CPU rather than fail the whole decomposition
        warnings.warn("LiWi: out of GPU memory in the learned model; this object runs on the CPU", stacklevel=3)
        if image.is_cuda:
            torch.cuda.empty_cache()
        out = model.to("cpu")(image.cpu(), prompt.cpu())
        model.to(image.device)
        return {k: v.to(image.device) for k, v in out.items()}


@torch.no_grad()
def _predict(model, image: torch.Tensor, prompt: torch.Tensor):
    """Model outputs for one object at full resolution: ``(alpha, shadow, background)``."""
    h, w = image.shape[-2:]
    side = model.config.working_size
    scale = min(1.0, side / max(h, w))
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    small = resize(image, size)
    out = _forward(model, small, resize(prompt, size))
    if size == (h, w):
        alpha = out["alpha"]
    else:
        alpha = guided_upsample(out["alpha"], small, image, r=2, eps=1e-3)
    alpha = torch.where(alpha < 0.02, torch.zeros_like(alpha), alpha.clamp(0, 1))
    shadow = resize(out["shadow"], (h, w), mode="bilinear").clamp(0, 1)
    background = resize(out["background"], (h, w), mode="bilinear").clamp(0, 1)
    return alpha, shadow, background


@dataclass
class LearnedSettings:
    """Settings of the learned engine (the checkpoint's own config is what ``layers.json`` records)."""

    checkpoint: str | None = option(None, "Checkpoint folder (config.json + .safetensors); default: the "
                                          "bundled liwi-default.")
    min_area: float = option(0.002, "Automatic mode stops when what it finds covers less than this fraction "
                                    "of the image.", minimum=0.0, maximum=1.0, step=0.001)


class LearnedEngine(Engine):
    """A LiWiNet checkpoint made exact: ``create("learned", checkpoint=...)``, or
    ``create("learned", model=...)`` with a model already loaded (the Load Model node)."""

    name = "learned"
    needs_masks = False

    def __init__(self, settings: LearnedSettings | None = None, model=None, **options):
        self.settings = check_settings(settings if settings is not None else LearnedSettings(**options))
        self.model = model if model is not None else load_model(self.settings.checkpoint)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def meta(self) -> dict:
        return {"engine": self.name, "settings": dict(self.model.config)}

    def peel(self, image, masks, names, prompt_indices, step=None, find=None) -> Peeled:
        """Prompted: one object per mask. Automatic (``masks`` None): the model first finds the
        front-most object (empty prompt), then decomposes it prompted with what it found
        (``alpha > 0.5``): a prompted model fills the hole from around the object (``prefill``
        checkpoints), while with an empty prompt the object would stay in the completed
        background and be found again. It then runs again on the completed background, until
        ``find.max_objects`` or until the found alpha covers less than ``min_area`` of the image."""
        from ..proposals import ProposalSettings

        automatic = masks is None
        max_objects = (find or ProposalSettings()).max_objects
        prompts = [torch.zeros_like(image[:, :1])] * max_objects if automatic else masks
        built = StackBuilder(image)
        for k, prompt in enumerate(prompts):
            alpha, shadow, fill = _predict(self.model, built.current, prompt)
            if automatic:
                if float(alpha.mean()) < self.settings.min_area:
                    break
                alpha, shadow, fill = _predict(self.model, built.current, (alpha > 0.5).float())
            built.add(*explain_object(built.current, alpha, shadow, fill),
                      name=default_layer_name(k) if automatic else names[k],
                      prompt_index=None if automatic else prompt_indices[k])
            if step is not None:
                step()
        return built.result()
