"""The "qwen-layered" engine: Qwen-Image-Layered through diffusers, made exact.

``create("qwen-layered", qwen_checkpoint=DIR)`` loads diffusers' ``QwenImageLayeredPipeline``
from a local pipeline folder (``model_index.json`` + safetensors; nothing is downloaded) and
runs it on the photo. The pipeline works at 640 or 1024 px (``resolution``) and returns,
per image, ``layers`` straight RGBA images in [0,1]: it generates ``layers + 1`` frames, the
first the whole image again, and drops that first frame before decoding, so what comes
back is the layers alone, back to front (``drop_first=False`` below;
:func:`~liwi_core.bridge.layers_from_images` still drops a slot that copies the whole
image). The pipeline stretches the photo to its working size (sides multiples of 32),
so the layers are stretched back to the photo's aspect ratio, then
:func:`~liwi_core.bridge.layers_from_images` rebuilds them at the photo's resolution so
the stack recomposes to the photo exactly.

The engine finds its layers itself (``needs_masks`` False): prompt masks are refused with
a one-line :class:`~liwi_core.errors.LiWiError` (they would silently not be used).

An empty ``prompt`` lets the pipeline caption the photo with its Qwen2.5-VL text encoder,
which needs the folder's ``processor``; a folder without one needs a ``prompt``.

Device: CUDA when available (bfloat16, ``offload`` as asked), otherwise the CPU in float32.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..errors import LiWiError
from ..filters import resize
from ..imageio import pil_from_tensor
from ..options import check_settings, option
from .base import Engine, Peeled

__all__ = ["QwenLayeredEngine", "QwenLayeredSettings", "load_pipeline"]

#: working sizes the pipeline offers (the long side of its buckets, in px)
RESOLUTIONS = (640, 1024)
OFFLOADS = ("none", "model", "sequential")


@dataclass
class QwenLayeredSettings:
    """Settings of the qwen-layered engine (``qwen_checkpoint`` is required)."""

    # not "checkpoint": the learned engine's --checkpoint flag is already taken on the command line
    qwen_checkpoint: str = option("", "Local diffusers folder of Qwen-Image-Layered (model_index.json + "
                                      "safetensors); never downloaded.")
    layers: int = option(4, "How many layers to ask the model for (the pipeline's 'layers').",
                         minimum=1, maximum=16, step=1)
    steps: int = option(50, "Denoising steps.", minimum=1, maximum=200, step=1)
    resolution: int = option(640, "Working size of the pipeline (640 or 1024 px buckets).", choices=RESOLUTIONS)
    cfg: float = option(4.0, "True classifier-free guidance scale (1 = off, half the work).",
                        minimum=1.0, maximum=20.0, step=0.1)
    seed: int = option(0, "Random seed of the initial noise.", minimum=0, maximum=2**31 - 1, step=1)
    prompt: str = option("", "Caption of the photo; empty: the pipeline captions it with its text encoder.")
    offload: str = option("model", "On CUDA: 'model' (enable_model_cpu_offload), 'sequential' "
                                   "(enable_sequential_cpu_offload, least memory, slow) or 'none' (all on "
                                   "the GPU). Ignored on the CPU.", choices=OFFLOADS)


def _model_index(folder: Path) -> dict:
    try:
        return json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise LiWiError(f"'{folder}' is not a diffusers pipeline folder (model_index.json: {exc})") from None


def _pipeline_folder(path) -> Path:
    """``path`` as an existing pipeline folder, or the one-line error saying what is wrong."""
    if not path:
        raise LiWiError("the qwen-layered engine needs a pipeline folder: give qwen_checkpoint "
                        "(--qwen-checkpoint DIR)")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise LiWiError(f"Qwen-Image-Layered pipeline folder '{folder}' does not exist")
    return folder


def load_pipeline(path, dtype: torch.dtype = torch.float32):
    """``QwenImageLayeredPipeline`` from a local folder, safetensors only, never downloading.

    Raises:
        LiWiError: one line, when the folder is missing or not a pipeline folder, when
            diffusers or transformers lack the pipeline, or when loading fails.
    """
    folder = _pipeline_folder(path)
    index = _model_index(folder)
    try:
        # the module itself: diffusers' top-level name is a placeholder when transformers is missing
        from diffusers.pipelines.qwenimage.pipeline_qwenimage_layered import QwenImageLayeredPipeline
    except ImportError:
        raise LiWiError("the qwen-layered engine needs a diffusers with QwenImageLayeredPipeline, and transformers: "
                        "pip install -U diffusers transformers") from None
    extra = {}
    if not (index.get("processor") or [None])[0]:
        extra["processor"] = None  # a folder saved without one; captioning is then unavailable
    try:
        return QwenImageLayeredPipeline.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                        dtype=dtype, **extra)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LiWiError(f"cannot load the Qwen-Image-Layered pipeline from '{folder}': {first}") from None


class QwenLayeredEngine(Engine):
    """Qwen-Image-Layered's layers rebuilt losslessly: ``create("qwen-layered", qwen_checkpoint=DIR)``,
    or ``create("qwen-layered", pipeline=...)`` with a pipeline already loaded."""

    name = "qwen-layered"
    needs_masks = False

    def __init__(self, settings: QwenLayeredSettings | None = None, pipeline=None, **options):
        self.settings = check_settings(settings if settings is not None else QwenLayeredSettings(**options))
        self._pipeline = pipeline
        # per image peeled since the last meta(): the bridge's slot decisions and messages
        self.slots: list[dict] = []
        if pipeline is None:
            # fail early on a wrong folder; the weights load on first use
            _pipeline_folder(self.settings.qwen_checkpoint)

    @property
    def pipeline(self):
        """The pipeline, loaded once (CUDA in bfloat16 with the chosen offload when available,
        otherwise the CPU in float32)."""
        if self._pipeline is None:
            cuda = torch.cuda.is_available()
            pipe = load_pipeline(self.settings.qwen_checkpoint, torch.bfloat16 if cuda else torch.float32)
            if cuda:
                if self.settings.offload == "model":
                    pipe.enable_model_cpu_offload()
                elif self.settings.offload == "sequential":
                    pipe.enable_sequential_cpu_offload()
                else:
                    pipe.to("cuda")
            pipe.set_progress_bar_config(disable=True)
            self._pipeline = pipe
        return self._pipeline

    def meta(self) -> dict:
        """Settings, and per image peeled since the last call the bridge's slot decisions (which
        slots were dropped and why, the background, the order). ``decompose`` asks for the meta
        once, after peeling in automatic mode (the only mode here), so the slots are handed
        over and cleared: a reused engine does not carry them into the next stack."""
        meta = {"engine": self.name, "settings": asdict(self.settings)}
        if self.slots:
            meta["slots"], self.slots = self.slots, []
        return meta

    def generate(self, image: torch.Tensor) -> torch.Tensor:
        """The pipeline's layers for one RGB image ``[1,3,H,W]``: ``[layers,4,h,w]`` straight RGBA
        in [0,1], back to front, stretched back to the image's aspect ratio."""
        pipe = self.pipeline
        s = self.settings
        if not s.prompt.strip() and getattr(pipe, "processor", None) is None:
            raise LiWiError("this Qwen-Image-Layered folder has no processor to caption the photo: give a prompt")
        rgba = torch.cat([image, torch.ones_like(image[:, :1])], dim=1)  # the pipeline expects RGBA
        call = {"image": pil_from_tensor(rgba[0]), "prompt": s.prompt.strip() or None, "layers": s.layers,
                "num_inference_steps": s.steps, "resolution": s.resolution, "true_cfg_scale": s.cfg,
                "generator": torch.Generator("cpu").manual_seed(s.seed), "output_type": "pt"}
        if s.cfg > 1.0:
            call["negative_prompt"] = " "  # true CFG only runs with a negative prompt
        with torch.no_grad():
            out = pipe(**call)
        layers = out.images[0]
        if not isinstance(layers, torch.Tensor) or layers.dim() != 4 or layers.shape[1] != 4:
            shape = list(layers.shape) if isinstance(layers, torch.Tensor) else type(layers).__name__
            raise LiWiError(f"Qwen-Image-Layered returned {shape}, expected RGBA layers [N,4,h,w]")
        layers = layers.float().cpu().clamp(0.0, 1.0)
        # the pipeline stretched the photo to sides that are multiples of 32: stretch back
        H, W = image.shape[-2:]
        h, w = layers.shape[-2:]
        size = (h, max(1, round(h * W / H))) if h >= w else (max(1, round(w * H / W)), w)
        return resize(layers, size).clamp(0.0, 1.0)

    def peel(self, image, masks, names, prompt_indices, step=None, find=None) -> Peeled:
        """The pipeline's layers for ``image``, rebuilt at its resolution by
        :func:`~liwi_core.bridge.layers_from_images` (``drop_first=False``: diffusers already
        drops the whole-image frame). ``masks`` must be None."""
        from ..bridge import layers_from_images

        if masks is not None:
            raise LiWiError("the qwen-layered engine finds its layers itself and takes no masks: leave them out")
        generated = self.generate(image)
        stack, messages = layers_from_images(image.float().cpu(), generated, drop_first=False)
        self.slots.append({**stack.meta["slots"], "messages": messages})
        if step is not None:
            step()
        dev = image.device
        layers = [replace(layer, rgba=layer.rgba.to(dev), shadow=layer.shadow.to(dev)) for layer in stack.layers]
        return Peeled(stack.background.to(dev), layers, stack.hole.to(dev))
