"""``python -m initlab.repair``: mark FAILED the runs (and FAIL the Optuna trials) that a dead
process left RUNNING (``initlab.tracking.repair``)."""

import sys

from initlab.tracking.repair import main

if __name__ == "__main__":
    sys.exit(main())
