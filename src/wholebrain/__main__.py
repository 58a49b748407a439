"""``python -m wholebrain`` is the ``wholebrain`` command (also under ``torchrun -m``)."""

from __future__ import annotations

import sys

from wholebrain.cli import main

if __name__ == "__main__":
    sys.exit(main())
