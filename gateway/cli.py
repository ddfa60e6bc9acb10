"""Command-line interface (placeholder until the configuration module lands)."""

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trunkline`` console script."""
    args = sys.argv[1:] if argv is None else argv
    print("trunkline", args)
    return 0
