"""A second SME re-labels an image blind with the keyboard, and a reviewer settles the
disagreement on the review page with one key, in headless Chromium against a live server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import Role
from curation.models import Image, LabelEvent, SubClass
from curation.services.images import image_relabel
from curation.services.taxonomy import class_create
from labelling.models import OpinionStatus, SecondOpinion
from labelling.standards import standards_describe
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_blind_second_opinion_given_by_keyboard_is_settled_by_keyboard(
    browser: Any, live_server: Any, make_image: Callable[..., Image]
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    robin_class = class_create(name="Robin", actor=None)
    robin = SubClass.objects.get(label_class=robin_class, is_default=True)
    wren = SubClass.objects.get(label_class=class_create(name="Wren", actor=None), is_default=True)
    first = UserFactory(username="lena", role=Role.LABELLER)
    UserFactory(username="sam", role=Role.LABELLER)
    reviewer = UserFactory(username="rui", role=Role.REVIEWER)
    images = [make_image(size=(160, 120)) for _ in range(2)]
    for image in images:
        image_relabel(
            image_id=image.pk, subclass=robin, actor=first, reason="labelling", expected_version=1
        )
    standards_describe(label_class=robin_class, description="A red breast.", actor=reviewer)
    # Pages navigate (login, reloads): a stale element only means "look again".
    wait = WebDriverWait(
        browser, 10, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    )

    def press(*keys: str) -> None:
        ActionChains(browser).send_keys(*keys).perform()

    def log_in(username: str, next_path: str) -> None:
        browser.delete_all_cookies()
        browser.get(f"{live_server.url}/login/?next={next_path}")
        browser.find_element(By.ID, "id_username").send_keys(username)
        browser.find_element(By.ID, "id_password").send_keys("pw", Keys.ENTER)

    def shown() -> int:
        return int(browser.find_element(By.ID, "lab").get_attribute("data-image") or 0)

    def left() -> str:
        return browser.find_element(By.ID, "remaining").text

    def idle() -> None:
        wait.until(lambda d: d.execute_script("return window.__loupePending") == 0)

    def nothing_tells_the_first_label() -> None:
        caption = browser.find_element(By.ID, "caption")
        assert "Robin" not in caption.text
        assert not caption.find_elements(By.TAG_NAME, "a")  # no way to the image page
        assert "Robin" not in browser.find_element(By.ID, "standards").text
        assert "red breast" not in browser.find_element(By.ID, "standards").text

    def answer_wren() -> None:
        press("/")
        wait.until(lambda d: d.switch_to.active_element.get_attribute("id") == "picker-input")
        press("Wren", Keys.ENTER)

    # sam answers "Wren" on the blind whole-library sample: the first label stays hidden.
    log_in("sam", "/label/second:all/")
    wait.until(lambda _: shown() in {i.pk for i in images})
    idle()
    assert "whole library" in browser.find_element(By.CSS_SELECTOR, ".lab-queue").text
    assert left() == "2"
    nothing_tells_the_first_label()
    image = next(i for i in images if i.pk == shown())
    answer_wren()
    wait.until(lambda _: SecondOpinion.objects.filter(image=image).exists())
    idle()
    assert left() == "1"

    # z takes the opinion back: the image returns, still blind, and counts as left again.
    press("z")
    wait.until(lambda _: shown() == image.pk)
    idle()
    assert not SecondOpinion.objects.filter(image=image).exists()
    assert left() == "2"
    nothing_tells_the_first_label()
    answer_wren()
    wait.until(lambda _: SecondOpinion.objects.filter(image=image).exists())
    opinion = SecondOpinion.objects.get(image=image)
    assert (opinion.status, opinion.second_subclass_id) == (OpinionStatus.OPEN, wren.pk)

    # rui takes the second opinion with "2"; the disagreement leaves the page.
    log_in("rui", "/label/second-opinions/")
    item = wait.until(lambda d: d.find_element(By.ID, f"opinion-{opinion.pk}"))
    assert "lena" in item.text and "sam" in item.text
    assert browser.find_element(By.ID, "so-open-count").text == "1"
    press("2")
    wait.until(lambda d: d.find_element(By.ID, "so-empty").is_displayed())
    assert browser.find_element(By.ID, "so-open-count").text == "0"

    opinion.refresh_from_db()
    assert (opinion.status, opinion.settled_by_id) == (OpinionStatus.SETTLED, reviewer.pk)
    event = LabelEvent.objects.filter(image=image).latest("id")
    assert (event.to_subclass_id, event.actor_id) == (wren.pk, reviewer.pk)
