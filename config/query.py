"""Reading numbers and choices from query strings and forms."""

from __future__ import annotations

from collections.abc import Sequence

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

ID_MAX = 2**63 - 1


def whole_number(text: str | None, *, maximum: int = ID_MAX) -> int | None:
    """``text`` as a whole number from 0 to ``maximum`` (by default the largest id a database
    holds), or None. ASCII digits only: ``"²"`` passes ``str.isdigit()`` but ``int()`` refuses
    it, and ``int()`` also refuses more than 4,300 digits; both used to end in a 500."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > len(str(maximum)):
        return None
    number = int(text)
    return number if number <= maximum else None


def choice_message(values: Sequence[str]) -> str:
    """What a 400 for a value outside ``values`` says (after the parameter's name)."""
    return f"must be one of {', '.join(values)}."


def choice_param(
    request: Request, name: str, values: Sequence[str], *, default: str | None = None
) -> str | None:
    """The API query parameter ``name`` when it is one of ``values``; ``default`` when it is
    absent or empty. Any other value is a 400 that names the parameter and lists the values:
    ignoring it would answer with the unfiltered list, which looks like a filtered one."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in values:
        raise ValidationError({name: [choice_message(values)]})
    return raw
