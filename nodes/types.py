"""Custom socket types of the pack."""

from comfy_api.latest import io

# a liwi_core.layers.LayerStack
Layers = io.Custom("LIWI_LAYERS")

# a liwi_core.model.LiWiNet
Model = io.Custom("LIWI_MODEL")
