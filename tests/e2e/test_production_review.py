"""A reviewer judges production logs whose images the library labels otherwise, with the keyboard,
in headless Chromium against a live server: the page names the library's label, ``c`` asks before
it relabels the image, and ``l`` records the model wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import Role
from curation.models import Image, LabelEvent, SubClass
from curation.services.images import image_relabel
from curation.services.taxonomy import class_create
from inference.models import PredictionLog, Verdict
from inference.production import LogEntry, prediction_log_record
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_correct_verdict_against_the_library_label_is_confirmed_first(
    browser: Any, live_server: Any, make_image: Callable[..., Image]
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    one = SubClass.objects.get(label_class=class_create(name="Digit 1", actor=None))
    two = SubClass.objects.get(label_class=class_create(name="Digit 2", actor=None))
    labeller = UserFactory(username="lena", role=Role.LABELLER)
    UserFactory(username="rui", role=Role.REVIEWER)
    logs = []
    for _ in range(2):
        image = make_image(size=(160, 120))
        image_relabel(
            image_id=image.pk, subclass=one, actor=labeller, reason="labelling", expected_version=1
        )
        entry = LogEntry(
            client="app",
            model_version_label="v1",
            class_names=["Digit 2", "Digit 1"],
            scores=[0.98, 0.02],
            image_sha256=image.sha256,
        )
        logs.append(prediction_log_record(entry=entry, actor=None).log)
    newest, older = sorted(logs, key=lambda log: -log.pk)
    wait = WebDriverWait(
        browser, 10, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    )

    def press(*keys: str) -> None:
        ActionChains(browser).send_keys(*keys).perform()

    def on_log(log: PredictionLog) -> None:
        wait.until(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, 'input[name="log"]').get_attribute("value")
                == str(log.pk)
            )
        )

    browser.get(f"{live_server.url}/login/?next=/production/review/happy/")
    browser.find_element(By.ID, "id_username").send_keys("rui")
    browser.find_element(By.ID, "id_password").send_keys("pw", Keys.ENTER)
    on_log(newest)
    caption = browser.find_element(By.ID, "library-label").text
    assert "in the library: Digit 1" in caption and "not Digit 2" in caption
    assert "Digit 1" in browser.find_element(By.ID, "disagreement").text

    # The first c asks; nothing is recorded until the second.
    press("c")
    confirm = wait.until(lambda d: d.find_element(By.ID, "relabel-confirm"))
    wait.until(lambda _: confirm.is_displayed())
    assert "from Digit 1 to Digit 2" in confirm.text
    newest.refresh_from_db()
    assert newest.verdict == ""
    press(Keys.ESCAPE)
    wait.until(lambda _: not confirm.is_displayed())
    press("c")
    wait.until(lambda _: confirm.is_displayed())
    press("c")
    on_log(older)
    newest.refresh_from_db()
    assert (newest.verdict, newest.true_subclass_id) == (Verdict.CORRECT, two.pk)
    assert Image.objects.get(pk=newest.image_id).subclass_id == two.pk
    assert LabelEvent.objects.filter(image_id=newest.image_id).latest("id").to_subclass_id == two.pk

    # l: the library is right, the model wrong; the image keeps its label.
    press("l")
    wait.until(lambda d: "Nothing left to review" in d.find_element(By.ID, "review").text)
    older.refresh_from_db()
    assert (older.verdict, older.true_subclass_id) == (Verdict.WRONG, one.pk)
    assert Image.objects.get(pk=older.image_id).subclass_id == one.pk
