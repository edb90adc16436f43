"""The ``keybroker`` command line (placeholder until the CLI lands)."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("keybroker: the command line is being built")
