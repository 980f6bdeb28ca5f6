"""LiWi core library: layer stacks, decomposition engines, export. Never imports ComfyUI."""

from .compositing import over, composite_layers, premultiply, unpremultiply
from .errors import LiWiError
from .layers import Layer, LayerEdit, LayerStack, edit_stack, transform_layer

__version__ = "0.1.0"

__all__ = [
    "Layer", "LayerEdit", "LayerStack", "LiWiError", "composite_layers", "edit_stack",
    "over", "premultiply", "transform_layer", "unpremultiply", "__version__",
]
