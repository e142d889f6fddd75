from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import Role, User


def api_user(request: Request) -> User:
    """The signed-in user of an API view. Every view's permission classes admit only signed-in
    users, so the 401 here is a guard for a view that forgot them, not a path clients meet."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated()
    return user


class _HasRole(BasePermission):
    role: Role

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_role(self.role))


class IsLabeller(_HasRole):
    role = Role.LABELLER
    message = "You must be signed in."


class IsReviewer(_HasRole):
    role = Role.REVIEWER
    message = "This needs the reviewer role."


class IsAdmin(_HasRole):
    role = Role.ADMIN
    message = "This needs the admin role."
