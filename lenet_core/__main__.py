"""``python -m lenet_core``: the command line (see :mod:`lenet_core.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
