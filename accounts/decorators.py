"""Helpers for HTML views: who is asking, and role checks."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts.models import User

View = TypeVar("View", bound=Callable[..., HttpResponse])


def request_user(request: HttpRequest) -> User:
    """The signed-in user of a view that requires login."""
    return cast(User, request.user)


def reviewer_required(view: View) -> View:
    """Signed-in reviewers (and admins) only; anyone else signed in gets 403."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request_user(request).is_reviewer:
            raise PermissionDenied("This needs the reviewer role.")
        return view(request, *args, **kwargs)

    return cast(View, wrapped)
