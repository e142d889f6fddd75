from __future__ import annotations

from knox.models import AuthToken

from accounts.models import Role, User


def user_create(*, username: str, password: str | None, role: Role, email: str = "") -> User:
    user = User(username=username, email=email, role=role)
    user.is_staff = role == Role.ADMIN
    user.is_superuser = role == Role.ADMIN
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    return user


def token_issue(*, user: User) -> tuple[AuthToken, str]:
    """Issue a machine token. The plain token is returned once; only its digest is stored."""
    instance, token = AuthToken.objects.create(user=user, expiry=None)
    return instance, token


def token_revoke(*, user: User, token_key: str) -> int:
    deleted, _ = AuthToken.objects.filter(user=user, token_key=token_key).delete()
    return deleted


def token_revoke_all(*, user: User) -> int:
    """Revoke every token of ``user`` (sign every script and machine out at once)."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted
