from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.TextChoices):
    LABELLER = "labeller", "Labeller"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Admin"


_RANK = {Role.LABELLER: 1, Role.REVIEWER: 2, Role.ADMIN: 3}


class User(AbstractUser):
    """A person (or a machine account) using Loupe.

    Labellers label; reviewers also trash, restore, merge classes and manage models; admins
    also manage users.
    """

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.LABELLER)

    def has_role(self, role: Role) -> bool:
        if self.is_superuser:
            return True
        return _RANK[Role(self.role)] >= _RANK[role]

    @property
    def is_reviewer(self) -> bool:
        return self.has_role(Role.REVIEWER)

    @property
    def is_loupe_admin(self) -> bool:
        return self.has_role(Role.ADMIN)
