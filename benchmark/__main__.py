"""`python -m benchmark COMMAND ...`: the command line lives in benchmark.cli."""

import sys

from benchmark.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
