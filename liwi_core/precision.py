"""What the pack's network passes compute in.

U²-Net small (the salient-object network and the prompt segmenter) is most of automatic mode's
time on a CPU. On a CPU with bfloat16 in hardware (AVX512-BF16 or AMX) an autocast pass takes
about 0.6x the float32 one; without it bfloat16 is emulated and slower. The choice is one
process-wide setting, ``auto`` unless ``LIWI_NETWORK_PRECISION`` says otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch
import torch.nn as nn

from .errors import LiWiError

__all__ = ["NETWORK_PRECISIONS", "set_network_precision", "using_precision", "network_precision",
           "inference_precision"]

#: what the networks' inference may compute in: ``auto`` is bfloat16 on a CPU that has it in
#: hardware (AVX512-BF16 or AMX), float32 elsewhere; ``LIWI_NETWORK_PRECISION`` sets the default
NETWORK_PRECISIONS = ("auto", "float32", "bfloat16")
_PRECISION = [os.environ.get("LIWI_NETWORK_PRECISION", "auto")]


def set_network_precision(name: str) -> str:
    """Set the precision of the pack's network passes for this process: ``auto``, ``float32`` or
    ``bfloat16`` (:data:`NETWORK_PRECISIONS`). Returns the setting it replaces."""
    if name not in NETWORK_PRECISIONS:
        raise LiWiError(f"network precision {name!r}: choose one of {', '.join(NETWORK_PRECISIONS)}")
    previous, _PRECISION[0] = _PRECISION[0], name
    return previous


@contextlib.contextmanager
def using_precision(name: str):
    """:func:`set_network_precision` for the ``with`` block only."""
    previous = set_network_precision(name)
    try:
        yield
    finally:
        _PRECISION[0] = previous


@functools.cache
def _cpu_has_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def network_precision(device: torch.device | str = "cpu") -> torch.dtype:
    """The dtype a float32 network's passes compute in on ``device`` under the current setting
    (:func:`set_network_precision`). ``auto`` takes bfloat16 only on a CPU with bfloat16 in
    hardware, where U²-Net small's pass at 320² takes about 0.18 s instead of 0.30 s on 2
    threads (:class:`~liwi_core.saliency.U2NetP` keeps its few cancelling sums in float32);
    without it bfloat16 is emulated and slower, and on a GPU the passes are short
    anyway, so both keep float32 (and a GPU run stays comparable with a float32 CPU run).
    ``bfloat16`` forces it on a CPU or a CUDA GPU; other devices keep float32."""
    name = _PRECISION[0]
    if name not in NETWORK_PRECISIONS:
        raise LiWiError(f"LIWI_NETWORK_PRECISION={name!r}: choose one of {', '.join(NETWORK_PRECISIONS)}")
    kind = torch.device(device).type
    if name == "auto":
        return torch.bfloat16 if kind == "cpu" and _cpu_has_bf16() else torch.float32
    # autocast to bfloat16 is known on these two; elsewhere (MPS, XPU) float32 rather than an error
    return torch.bfloat16 if name == "bfloat16" and kind in ("cpu", "cuda") else torch.float32


def inference_precision(model: nn.Module) -> contextlib.AbstractContextManager:
    """A context in which ``model``'s forward pass computes in :func:`network_precision` (autocast);
    nothing changes for float32 or for a model whose weights are not float32."""
    param = next(model.parameters())
    dtype = network_precision(param.device)
    if dtype == torch.float32 or param.dtype != torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(param.device.type, dtype=dtype)
