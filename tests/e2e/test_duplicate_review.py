"""A reviewer works through duplicate groups with the keyboard in headless Chromium: Enter
keeps the suggested image of a group that agrees on its label, but in a group whose members
disagree it only asks which label the keeper takes, and the label's key resolves it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import Role
from curation.models import DuplicateGroup, DuplicateStatus, Image, ImageStatus, SubClass
from curation.services.taxonomy import class_create
from tests.curation.test_duplicate_review import group_of
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_enter_asks_for_a_label_in_a_conflicting_group_and_resolves_a_clean_one(
    browser: Any, live_server: Any, make_image: Callable[..., Image]
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    one, eight = (
        SubClass.objects.get(label_class=class_create(name=name, actor=None), is_default=True)
        for name in ("Digit 1", "Digit 8")
    )
    conflicting = group_of(make_image(one), make_image(one), make_image(eight))
    clean = group_of(make_image(one), make_image(one))
    keeper = conflicting.members.order_by("image_id").first()
    assert keeper is not None
    reviewer = UserFactory(username="rita", role=Role.REVIEWER)

    wait = WebDriverWait(
        browser, 10, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    )
    browser.get(f"{live_server.url}/login/?next=/duplicates/")
    browser.find_element(By.ID, "id_username").send_keys(reviewer.username)
    browser.find_element(By.ID, "id_password").send_keys("pw", Keys.ENTER)

    def on_group(group: DuplicateGroup) -> None:
        wait.until(
            lambda d: (
                d.find_elements(By.ID, "duplicate-group")
                and d.find_element(By.ID, "duplicate-group").get_attribute("data-group")
                == str(group.pk)
            )
        )

    def press(*keys: str) -> None:
        ActionChains(browser).send_keys(*keys).perform()

    on_group(conflicting)
    assert "labels disagree" in browser.find_element(By.ID, "conflict-badge").text
    press(Keys.ENTER)
    question = browser.find_element(By.ID, "label-question")
    wait.until(lambda d: "which label does it take?" in question.text)
    assert f"Keeping image {keeper.image_id}" in question.text
    # Asking changed nothing yet; Esc goes back, and Enter asks again.
    assert DuplicateGroup.objects.get(pk=conflicting.pk).status == DuplicateStatus.OPEN
    press(Keys.ESCAPE)
    wait.until(lambda d: "which label does it take?" not in question.text)
    press(Keys.ENTER)
    wait.until(lambda d: "which label does it take?" in question.text)
    press("2")  # Digit 8, the second label shown

    on_group(clean)
    resolved = DuplicateGroup.objects.get(pk=conflicting.pk)
    assert resolved.status == DuplicateStatus.RESOLVED and resolved.keeper_id == keeper.image_id
    assert Image.objects.get(pk=keeper.image_id).subclass == eight
    assert browser.find_elements(By.ID, "label-conflict") == []
    press(Keys.ENTER)

    wait.until(lambda d: "No open duplicate groups" in d.page_source)
    assert DuplicateGroup.objects.get(pk=clean.pk).status == DuplicateStatus.RESOLVED
    trashed = Image.objects.filter(duplicate_members__group=clean, status=ImageStatus.TRASHED)
    assert trashed.count() == 1
