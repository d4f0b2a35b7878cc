"""``python -m rnnumba``: the command line (see :mod:`rnnumba.cli`); no command runs the demo."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
