"""System checks: settings of the accounts app that are wrong should stop start-up, not the
first sign-in."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

from accounts.throttling import login_address_rate, login_rate


@register()
def login_rate_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    try:
        login_rate()
    except ImproperlyConfigured as exc:
        errors.append(Error(str(exc), hint="Set LOUPE_LOGIN_RATE to e.g. 10/min.", id="loupe.E001"))
    try:
        login_address_rate()
    except ImproperlyConfigured as exc:
        errors.append(
            Error(str(exc), hint="Set LOUPE_LOGIN_ADDRESS_RATE to e.g. 50/hour.", id="loupe.E002")
        )
    return errors
