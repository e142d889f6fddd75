from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Role, User
from accounts.services import token_issue, user_create


class Command(BaseCommand):
    help = "Issue a revocable API token for a user (printed once; only its digest is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="username")
        parser.add_argument(
            "--create",
            choices=[r.value for r in Role],
            help="create the user with this role if it does not exist (a machine account)",
        )
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["user"]
        user = User.objects.filter(username=username).first()
        if user is None:
            if not options["create"]:
                raise CommandError(f"No user named {username!r}; pass --create ROLE to make one.")
            user = user_create(username=username, password=None, role=Role(options["create"]))
        instance, token = token_issue(user=user)
        if options["json"]:
            self.stdout.write(
                json.dumps({"user": username, "token": token, "key": instance.token_key})
            )
        else:
            self.stdout.write(token)
            self.stderr.write(
                f"Token for {username} (role {user.role}); "
                "send it as 'Authorization: Token <token>'."
            )
