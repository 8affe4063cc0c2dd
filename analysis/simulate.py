"""`python -m grporm.analysis.simulate [REPS]` (make simulate): the error rates of seeds until decided
under repeated looks, by simulation, as the Markdown table of docs/method.md (analysis/sequential.py)."""
from __future__ import annotations

import sys

from grporm.analysis.sequential import simulation_table


def main(argv: list[str]) -> None:
    print(simulation_table(int(argv[0]) if argv else 2000), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
