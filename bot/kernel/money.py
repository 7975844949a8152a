"""Money as people read it: one way to write dollars, wherever a figure is shown.

A run's model requests cost fractions of a cent, so cents alone ("$0.00") hide what the dashboard shows
("$0.0025") and chat, the audit and the pages disagreed about the same run. Every amount a person reads
— the status message, a proposal's "Cost", `/runs`, `/budget`, the self-audit's "Spend", the dashboard —
is written by `usd`: two decimals from a cent up, the cents of a cent below it.
"""

from __future__ import annotations

__all__ = ["usd"]


def usd(value: float | None) -> str:
    """`$0.00` for nothing, `$0.0025` (`$0.0010`) under a cent, `$0.0123` under a dollar (no trailing zeros
    past the cents: `$0.50`, `$0.0100` is `$0.01`), `$1.23` from a dollar up."""
    amount = float(value or 0.0)
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount >= 1 or round(amount, 4) == 0:
        return f"{sign}${amount:,.2f}"
    if amount < 0.01:  # cents of a cent: four places, so a column of them lines up ($0.0010, $0.0025)
        return f"{sign}${amount:.4f}"
    text = f"{amount:.4f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"{sign}${whole}.{fraction.ljust(2, '0')}"
