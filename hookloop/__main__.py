"""``python -m hookloop``: the same command line as ``python -m engine`` (console script ``hookloop``)."""
import sys

from hookloop.engine.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
