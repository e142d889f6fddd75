"""Failed sign-in attempts, counted in Django's cache per client address and username.

Both password doors use it: the HTML sign-in form (``/login/``, which the admin's own sign-in
page redirects to) and the API's token sign-in (``/api/v1/auth/login/``). The rate is the
``login`` scope of ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (``LOUPE_LOGIN_RATE``), e.g.
``10/min``: after that many failures inside the window, every further attempt for that username
from that address is refused with 429 until the window, which starts at the first failure, ends.
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


def login_rate() -> LoginRate:
    """The allowed failures per window, read from settings on every call (so tests and
    ``override_settings`` can change it)."""
    rest_framework = cast(dict[str, Any], settings.REST_FRAMEWORK)
    text = rest_framework["DEFAULT_THROTTLE_RATES"]["login"]
    count, _, period = str(text).partition("/")
    if not count.strip().isdigit() or period.strip() not in _PERIODS:
        raise ImproperlyConfigured(
            f"The login rate must look like '10/min' (per s, min, hour or day), not {text!r}"
        )
    return LoginRate(attempts=int(count), seconds=_PERIODS[period.strip()])


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


def login_wait_seconds(*, request: HttpRequest, username: str) -> int:
    """Seconds until this address may try this username again; 0 when it may try now."""
    rate = login_rate()
    count_key, window_key = _keys(request, username)
    if (cache.get(count_key) or 0) < rate.attempts:
        return 0
    started = cache.get(window_key) or time.time()
    return max(1, int(started + rate.seconds - time.time() + 0.999))


def login_failure_record(*, request: HttpRequest, username: str) -> None:
    rate = login_rate()
    count_key, window_key = _keys(request, username)
    cache.add(window_key, time.time(), timeout=rate.seconds)
    cache.add(count_key, 0, timeout=rate.seconds)
    try:
        cache.incr(count_key)
    except ValueError:  # the window ended between add() and incr()
        cache.set(count_key, 1, timeout=rate.seconds)


def login_failures_clear(*, request: HttpRequest, username: str) -> None:
    """Forget the failures once the right password has been given."""
    cache.delete_many(list(_keys(request, username)))


def too_many_attempts_message(wait: int) -> str:
    return (
        f"Too many failed sign-in attempts for this username from your address. "
        f"Try again in {wait} second{'s' if wait != 1 else ''}."
    )
