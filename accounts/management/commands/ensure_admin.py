from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from accounts.models import Role, User
from accounts.selectors import initial_password_file
from accounts.services import user_create


class Command(BaseCommand):
    help = (
        "Create the first admin account when there is none. The password comes from "
        "LOUPE_ADMIN_PASSWORD or is generated and kept in LOUPE_DATA_DIR/initial_admin_password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=settings.LOUPE_ADMIN_USER)

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        password_file = initial_password_file()
        if (
            User.objects.filter(role=Role.ADMIN).exists()
            or User.objects.filter(is_superuser=True).exists()
        ):
            if password_file.exists() and User.objects.filter(username=username).exists():
                self.stdout.write(
                    f"Log in as {username!r} with the password in {password_file} "
                    "(unless it was changed)."
                )
            return
        chosen: str = settings.LOUPE_ADMIN_PASSWORD
        password = chosen or secrets.token_urlsafe(12)
        user_create(username=username, password=password, role=Role.ADMIN)
        if not chosen:
            password_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(password + "\n")
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the admin account {username!r} with password {password!r} "
                f"(also saved in {password_file})."
            )
        )
