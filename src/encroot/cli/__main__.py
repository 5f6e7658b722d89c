"""``python -m encroot.cli``: the ``encroot`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
