"""``python -m streamlabel.cli``: the same entry point as the ``streamlabel`` script."""

from __future__ import annotations

import sys

from streamlabel.cli import main

if __name__ == "__main__":
    sys.exit(main())
