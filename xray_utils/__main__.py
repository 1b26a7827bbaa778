"""``python -m xray_utils COMMAND``: see :mod:`xray_utils.cli`."""
import sys

from xray_utils.cli import main

if __name__ == "__main__":
    sys.exit(main())
