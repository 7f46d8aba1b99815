"""`python worker.py` from a checkout runs the worker (DESIGN.md's top level names this file).

The composition root itself is `countersign/worker.py`, inside the one import package, so that an
installed wheel claims no top-level name but `countersign`; this script stays out of the wheel.
"""

import sys

from countersign.worker import main

if __name__ == "__main__":
    sys.exit(main())
