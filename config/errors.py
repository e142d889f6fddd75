"""Errors a service raises that the API answers with a status of its own (``config.api``), so
the error handling at the bottom needs to know no app: an app's error says its status and its
body."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal the caller can act on: answered with ``status_code`` and ``api_body()``."""

    status_code = 400

    def api_body(self) -> dict[str, object]:
        return {"detail": str(self)}


class Refused(DomainError):
    """The request cannot be carried out as asked; the message says why (400)."""


class Conflict(DomainError):
    """The request clashes with the current state of what it names (409)."""

    status_code = 409
