"""Failed sign-in attempts, counted in Django's cache per client address and username, and per
client address across all usernames.

Both password doors use it: the HTML sign-in form (``/login/``, which the admin's own sign-in
page redirects to) and the API's token sign-in (``/api/v1/auth/login/``). Two limits, each the
``login`` or ``login_address`` scope of ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``:

- ``login`` (``LOUPE_LOGIN_RATE``, e.g. ``10/min``): after that many failures inside the window,
  every further attempt for that username from that address is refused with 429 until the
  window, which starts at the first failure, ends. A right password clears the count.
- ``login_address`` (``LOUPE_LOGIN_ADDRESS_RATE``, e.g. ``50/hour``): the failures of one
  address whatever the username, so a password spray (one guess for each of many usernames)
  is slowed too. Once over it, every sign-in from that address is refused until its window
  ends; a right password does not clear it (the sprayer may own one of the accounts).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

_PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


@dataclass(frozen=True)
class LoginRate:
    attempts: int
    seconds: int


def _rate(scope: str, default: str | None = None) -> LoginRate:
    """A rate of ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``, read from settings on every call
    (so tests and ``override_settings`` can change it)."""
    rest_framework = cast(dict[str, Any], settings.REST_FRAMEWORK)
    rates = rest_framework["DEFAULT_THROTTLE_RATES"]
    text = rates[scope] if default is None else rates.get(scope, default)
    count, _, period = str(text).partition("/")
    if not count.strip().isdigit() or period.strip() not in _PERIODS:
        raise ImproperlyConfigured(
            f"The {scope} rate must look like '10/min' (per s, min, hour or day), not {text!r}"
        )
    return LoginRate(attempts=int(count), seconds=_PERIODS[period.strip()])


def login_rate() -> LoginRate:
    """The allowed failures per address and username per window."""
    return _rate("login")


# The default of the per-address limit when the settings name none.
DEFAULT_ADDRESS_RATE = "50/hour"


def login_address_rate() -> LoginRate:
    """The allowed failures per address, across usernames, per window."""
    return _rate("login_address", DEFAULT_ADDRESS_RATE)


def client_address(request: HttpRequest) -> str:
    """The client's address: ``REMOTE_ADDR``, or, behind ``LOUPE_PROXY_COUNT`` trusted reverse
    proxies, the address the outermost of them saw (read from the right of X-Forwarded-For, so a
    client cannot choose it by sending its own header)."""
    proxies: int = settings.LOUPE_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-min(proxies, len(hops))]
    return str(request.META.get("REMOTE_ADDR", ""))


def _keys(request: HttpRequest, username: str) -> tuple[str, str]:
    who = f"{client_address(request)}\0{username.strip().casefold()}"
    digest = hashlib.sha256(who.encode()).hexdigest()[:40]
    return f"login-failures:{digest}", f"login-window:{digest}"


def _address_keys(request: HttpRequest) -> tuple[str, str]:
    digest = hashlib.sha256(client_address(request).encode()).hexdigest()[:40]
    return f"login-address-failures:{digest}", f"login-address-window:{digest}"


def _wait(keys: tuple[str, str], rate: LoginRate) -> int:
    count_key, window_key = keys
    if (cache.get(count_key) or 0) < rate.attempts:
        return 0
    started = cache.get(window_key) or time.time()
    return max(1, int(started + rate.seconds - time.time() + 0.999))


def _count(keys: tuple[str, str], rate: LoginRate) -> None:
    count_key, window_key = keys
    cache.add(window_key, time.time(), timeout=rate.seconds)
    cache.add(count_key, 0, timeout=rate.seconds)
    try:
        cache.incr(count_key)
    except ValueError:  # the window ended between add() and incr()
        cache.set(count_key, 1, timeout=rate.seconds)


def login_wait_seconds(*, request: HttpRequest, username: str) -> int:
    """Seconds until this address may try this username again; 0 when it may try now."""
    return _wait(_keys(request, username), login_rate())


def address_wait_seconds(*, request: HttpRequest) -> int:
    """Seconds until this address may try any username again; 0 when it may try now."""
    return _wait(_address_keys(request), login_address_rate())


@dataclass(frozen=True)
class LoginRefusal:
    wait: int
    message: str


def login_refusal(*, request: HttpRequest, username: str) -> LoginRefusal | None:
    """Why a sign-in attempt is refused before its password is looked at (429), or None."""
    per_address = address_wait_seconds(request=request)
    per_username = login_wait_seconds(request=request, username=username)
    if per_address and per_address >= per_username:
        return LoginRefusal(per_address, too_many_address_attempts_message(per_address))
    if per_username:
        return LoginRefusal(per_username, too_many_attempts_message(per_username))
    return None


def login_failure_record(*, request: HttpRequest, username: str, per_address: bool = True) -> None:
    """Count a failed attempt for this address and username and, with ``per_address``, for the
    address across usernames."""
    _count(_keys(request, username), login_rate())
    if per_address:
        _count(_address_keys(request), login_address_rate())


def login_failures_clear(*, request: HttpRequest, username: str) -> None:
    """Forget this username's failures once the right password has been given. The address's
    count across usernames stays: a sprayer who owns one account must not reset it."""
    cache.delete_many(list(_keys(request, username)))


def _seconds(wait: int) -> str:
    return f"{wait} second{'s' if wait != 1 else ''}"


def too_many_attempts_message(wait: int) -> str:
    return (
        f"Too many failed sign-in attempts for this username from your address. "
        f"Try again in {_seconds(wait)}."
    )


def too_many_address_attempts_message(wait: int) -> str:
    return (
        f"Too many failed sign-in attempts from your address, whatever the username. "
        f"Try again in {_seconds(wait)}."
    )
