"""The one reader of integers in the dashboard's URLs: path ids, cursors, filters and sign-in links.

A number in a URL is ASCII digits only and fits the storage's integer (a signed 64-bit one on SQLite
and PostgreSQL alike). Python's own checks are wider than that: `str.isdigit()` is true for `²` and
`int()` reads `٣` (an Arabic-Indic three), and 2**63 reaches the database as an overflow. Anything
else is not a number of ours: the caller answers 404 for a path id and 400 for a query value, never
500.
"""

from __future__ import annotations

import re

__all__ = ["STORED_INT_MAX", "url_int"]

STORED_INT_MAX = 2**63 - 1  # the largest integer SQLite and PostgreSQL (bigint) store
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")  # re.ASCII is moot: the class names the bytes themselves


def url_int(text: str) -> int | None:
    """`text` as a stored integer (0 … 2**63-1), or None when it is anything else."""
    if _ASCII_DIGITS.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= STORED_INT_MAX else None
