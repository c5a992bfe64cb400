"""``python -m initlab.compare``: the comparison CLI (``initlab.report.compare``)."""

from initlab.report.compare import main

if __name__ == "__main__":
    main()
