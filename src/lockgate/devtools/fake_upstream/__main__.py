"""Entry point for `python -m lockgate.devtools.fake_upstream`; the CLI itself is in `cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
