"""ComfyUI adapters for liwi_core. Thin: convert, call the library, report progress."""

from comfy_api.latest import ComfyExtension, io

from .add import LiWiADDSynthesize
from .bridge import LiWiLayersFromImages
from .decompose import LiWiDecompose
from .fill import LiWiFillBackground
from .find import LiWiFindObjects
from .model import LiWiLoadModel
from .recompose import LiWiRecomposeLayers
from .save import LiWiSaveLayers
from .shadow import LiWiShadowLayer

NODES = [LiWiFindObjects, LiWiDecompose, LiWiShadowLayer, LiWiRecomposeLayers, LiWiFillBackground, LiWiSaveLayers, LiWiADDSynthesize, LiWiLoadModel, LiWiLayersFromImages]


class LiWiExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
