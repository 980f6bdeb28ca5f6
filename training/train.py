"""Train the learned decomposer: ``python training/train.py ...`` is ``python -m liwi_core train ...``.

Kept as a file so ``accelerate launch training/train.py`` works; the code is
:mod:`liwi_core.train` (installed with the pack: ``pip install -e .``).
"""

import sys

from liwi_core.cli import main_as

if __name__ == "__main__":
    sys.exit(main_as("train"))
