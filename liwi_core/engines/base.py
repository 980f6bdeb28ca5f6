"""The engine interface: what every way of decomposing a photo provides.

An engine peels objects off one RGB image front to back, given one prompt mask per object
(or none, in automatic mode), and returns the clean background, the layers back to front
and the hole (where the background was invented). :func:`liwi_core.decompose.decompose`
does the rest once for every engine: input checks, batching, ordering, names, metadata.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, Callable, NamedTuple

import torch

from ..filters import bounding_box
from ..layers import Layer, LayerStack, coverage
from .exact import hidden_part

__all__ = ["Engine", "Peeled", "StackBuilder"]


class Peeled(NamedTuple):
    """What an engine returns for one image: ``background`` ``[1,3,H,W]``, ``layers`` back to
    front, ``hole`` ``[1,1,H,W]`` (1 = invented background)."""

    background: torch.Tensor
    layers: list[Layer]
    hole: torch.Tensor


class StackBuilder:
    """Collects layers peeled front to back on what is left of the image; the hole is what they cover."""

    def __init__(self, image: torch.Tensor):
        self.current = image
        self.layers: list[Layer] = []  # front to back while peeling

    def add(self, fg: torch.Tensor, alpha: torch.Tensor, shadow: torch.Tensor, below: torch.Tensor,
            name: str, prompt_index: int | None) -> None:
        """One object whose layers explain the current image exactly; ``below`` is what is left."""
        self.layers.append(Layer(rgba=torch.cat([fg, alpha], dim=1), shadow=shadow, name=name,
                                 prompt_index=prompt_index))
        self.current = below

    def add_empty(self, name: str, prompt_index: int | None, shadow_channels: int = 1) -> None:
        """An empty prompt: a layer with alpha 0 and no shadow keeps layer indices aligned with prompts."""
        size = tuple(self.current.shape[-2:])
        self.layers.append(Layer(rgba=torch.zeros((1, 4) + size, dtype=self.current.dtype),
                                 shadow=torch.ones((1, shadow_channels) + size, dtype=self.current.dtype),
                                 name=name, prompt_index=prompt_index))

    def front(self) -> torch.Tensor | None:
        """``[1,1,H,W]``: how much the layers peeled so far cover, their alphas composited
        (``1 - prod(1 - alpha)``, exactly 1 under an opaque one); None before the first."""
        if not self.layers:
            return None
        clear = torch.ones_like(self.layers[0].alpha)
        for layer in self.layers:
            clear = clear * (1 - layer.alpha)
        return 1 - clear

    def peel_each(self, masks, names, prompt_indices, peel_one: Callable, shadow_channels: int = 1,
                  step: Callable[[], None] | None = None, hidden_parts: bool = True) -> Peeled:
        """Peel one object per prompt mask, front to back, with ``peel_one(current, mask, others)``
        returning ``(fg, alpha, shadow, below)``; ``others`` is the union of the other prompts
        (``[1,1,H,W]``, or None when there is one), what the photo's other objects are. An empty
        mask gives an empty layer. ``hidden_parts``: each layer goes on under the layers in front
        of it where its mask does (:func:`~liwi_core.engines.exact.hidden_part`). Returns :meth:`result`."""
        masks = list(masks)
        for i, (mask, name, index) in enumerate(zip(masks, names, prompt_indices)):
            if bounding_box(mask) is None:
                self.add_empty(name, index, shadow_channels)
            else:
                rest = [m for j, m in enumerate(masks) if j != i]
                others = torch.stack(rest).amax(dim=0).clamp(0, 1) if rest else None
                fg, alpha, shadow, below = peel_one(self.current, mask, others)
                front = self.front() if hidden_parts else None
                if front is not None:
                    fg, alpha = hidden_part(mask, alpha, fg, self.current, front)
                self.add(fg, alpha, shadow, below, name=name, prompt_index=index)
            if step is not None:
                step()
        return self.result()

    def result(self) -> Peeled:
        hole = coverage(self.layers)
        return Peeled(self.current, self.layers[::-1], torch.zeros_like(self.current[:, :1]) if hole is None else hole)


class Engine:
    """Base class of the engines listed by :func:`liwi_core.engines.available`.

    Subclasses set ``name``, ``needs_masks`` and ``settings`` (a dataclass written to
    ``layers.json``) and implement :meth:`peel`.
    """

    name: str = ""
    #: False when the engine finds objects itself (``masks=None``); the others are given proposals
    needs_masks: bool = True
    settings: Any = None

    def peel(self, image: torch.Tensor, masks: list[torch.Tensor] | None, names: list[str] | None,
             prompt_indices: list[int] | None, step: Callable[[], None] | None = None, find=None) -> Peeled:
        """Decompose one RGB image ``[1,3,H,W]`` in [0,1].

        Args:
            masks: ``[1,1,H,W]`` prompt masks front to back (1 = object), or None (automatic
                mode; only engines with ``needs_masks`` False get None, the others get the
                masks :func:`liwi_core.proposals.find_objects` proposes).
            names, prompt_indices: per mask, the layer's name and the index of its prompt.
            step: called once per object peeled (progress and interrupts).
            find: automatic mode's :class:`~liwi_core.proposals.ProposalSettings`: given to an
                engine with ``needs_masks`` False instead of masks, and with the masks that
                it proposed to the others (they are then no user's brush strokes).
        """
        raise NotImplementedError

    def meta(self) -> dict:
        """The engine's entry of ``layers.json``: its name and settings."""
        settings = self.settings
        if is_dataclass(settings):
            settings = asdict(settings)
        return {"engine": self.name, "settings": dict(settings or {})}

    def decompose(self, image: torch.Tensor, masks: torch.Tensor | None = None, key: str | None = None,
                  **kwargs) -> LayerStack:
        """:func:`liwi_core.decompose.decompose` with this engine. ``key`` names the image (a dataset
        sample id) for engines that look results up (``folder``); computing engines ignore it."""
        from ..decompose import decompose

        return decompose(image, masks, engine=self, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

