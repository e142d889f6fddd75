from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from accounts.models import Role, User


@dataclass(frozen=True)
class FirstAdminLogin:
    """How to sign in as the first admin, for the start-up banner: the generated password while
    it still works, or where the chosen one comes from."""

    username: str
    password: str  # "" when the password was chosen (LOUPE_ADMIN_PASSWORD) and is not repeated
    password_file: Path | None


def initial_password_file() -> Path:
    return settings.DATA_DIR / "initial_admin_password"


def first_admin_login() -> FirstAdminLogin | None:
    """The first admin's sign-in, or None once it is nobody's business to print it: no such
    account, or its generated password has been changed."""
    username: str = settings.LOUPE_ADMIN_USER
    admin = User.objects.filter(username=username).first()
    if admin is None or not admin.has_role(Role.ADMIN):
        return None
    password_file = initial_password_file()
    if password_file.exists():
        password = password_file.read_text(encoding="utf-8").strip()
        if password and admin.check_password(password):
            return FirstAdminLogin(username, password, password_file)
        return None
    chosen: str = settings.LOUPE_ADMIN_PASSWORD
    if chosen and admin.check_password(chosen):
        return FirstAdminLogin(username, "", None)
    return None
