"""Reading numbers from query strings and forms."""

from __future__ import annotations

ID_MAX = 2**63 - 1


def whole_number(text: str | None, *, maximum: int = ID_MAX) -> int | None:
    """``text`` as a whole number from 0 to ``maximum`` (by default the largest id a database
    holds), or None. ASCII digits only: ``"²"`` passes ``str.isdigit()`` but ``int()`` refuses
    it, and ``int()`` also refuses more than 4,300 digits; both used to end in a 500."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > len(str(maximum)):
        return None
    number = int(text)
    return number if number <= maximum else None
