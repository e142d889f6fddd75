"""Roles rank labeller < reviewer < admin; each one can do what the ones below can."""

from __future__ import annotations

import pytest

from accounts.models import Role, User
from accounts.services import user_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("role", "reviewer", "admin"),
    [
        (Role.LABELLER, False, False),
        (Role.REVIEWER, True, False),
        (Role.ADMIN, True, True),
    ],
)
def test_roles_include_the_ones_below(role: Role, reviewer: bool, admin: bool) -> None:
    user = UserFactory(role=role)

    assert user.has_role(Role.LABELLER)
    assert (user.is_reviewer, user.is_loupe_admin) == (reviewer, admin)


def test_a_superuser_has_every_role() -> None:
    user = UserFactory(role=Role.LABELLER, is_superuser=True)

    assert user.is_reviewer and user.is_loupe_admin


def test_creating_an_admin_gives_access_to_the_admin_site() -> None:
    user = user_create(username="boss", password="pw-long-enough", role=Role.ADMIN)

    assert (user.is_staff, user.is_superuser) == (True, True)
    assert user.check_password("pw-long-enough")


def test_creating_a_labeller_does_not() -> None:
    user = user_create(username="sam", password=None, role=Role.LABELLER)

    assert (user.is_staff, user.is_superuser, user.has_usable_password()) == (False, False, False)
    assert User.objects.get(username="sam").role == Role.LABELLER
