"""A bench's two sizes: full (`make bench`: the figures the docs quote) and short (`--short`: small
sizes, one round), which `make bench-short` runs for every bench of `make bench` — CI runs it after
`make test` — so that a change that breaks a bench fails the change instead of waiting for the next
person to run `make bench`. A short run proves the bench runs to its end with its own checks holding;
its figures are not comparable with the full ones.

Each bench imports this first (`from sizes import SHORT, sized`, bench/ being the script's directory):
`--short` is taken off `sys.argv`, so a bench that reads its own arguments never sees it.
"""

from __future__ import annotations

import sys
from typing import TypeVar

__all__ = ["SHORT", "sized"]

T = TypeVar("T")

SHORT = "--short" in sys.argv[1:]
if SHORT:
    sys.argv.remove("--short")


def sized(full: T, short: T) -> T:
    """`short` in the short mode, else `full`."""
    return short if SHORT else full
