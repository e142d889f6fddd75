"""A labeller picks inbox images with the mouse and the keyboard in headless Chromium (click,
Shift+click range, select all on the page, Esc) and labels two of them in one confirmed
action: each gets its bulk label event, the others stay in the inbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import Role
from curation.models import Image, LabelEvent, LabelReason, SubClass
from curation.services.taxonomy import class_create
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_picking_inbox_images_and_labelling_two_of_them(
    browser: Any, live_server: Any, make_image: Callable[..., Image]
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    robin = SubClass.objects.get(label_class=class_create(name="Robin", actor=None))
    images = [make_image() for _ in range(6)]  # the inbox shows them oldest first
    labeller = UserFactory(username="lena", role=Role.LABELLER)
    wait = WebDriverWait(browser, 10, poll_frequency=0.05)

    browser.get(f"{live_server.url}/login/?next=/inbox/")
    browser.find_element(By.ID, "id_username").send_keys(labeller.username)
    browser.find_element(By.ID, "id_password").send_keys("pw", Keys.ENTER)
    wait.until(lambda d: d.find_elements(By.ID, "grid-selection"))

    def tiles() -> list[Any]:
        return browser.find_elements(By.CSS_SELECTOR, ".tile.pickable")

    def box(index: int) -> Any:
        return tiles()[index].find_element(By.CSS_SELECTOR, "input.pick")

    def ticked() -> list[int]:
        return [i for i in range(len(tiles())) if box(i).is_selected()]

    def count() -> str:
        return str(browser.find_element(By.ID, "selected-count").text)

    def shift_click(element: Any) -> None:
        ActionChains(browser).key_down(Keys.SHIFT).click(element).key_up(Keys.SHIFT).perform()

    label_button = browser.find_element(By.CSS_SELECTOR, '[data-open="label-dialog"]')
    assert len(tiles()) == 6 and count() == "0 selected" and not label_button.is_enabled()

    # Click a box, then Shift+click another: the range between them.
    box(1).click()
    shift_click(box(4))
    assert ticked() == [1, 2, 3, 4] and count() == "4 selected"
    assert label_button.is_enabled()
    # While something is picked, a click on a tile's picture picks it instead of opening it.
    tiles()[5].find_element(By.TAG_NAME, "img").click()
    assert ticked() == [1, 2, 3, 4, 5] and browser.current_url.endswith("/inbox/")
    # Shift+click on a ticked one clears the range back to the last click.
    shift_click(box(3))
    assert ticked() == [1, 2]

    # Esc clears; "Select all on this page" takes every tile, and gives them back.
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    assert ticked() == [] and count() == "0 selected"
    select_page = browser.find_element(By.ID, "select-page")
    select_page.click()
    assert ticked() == [0, 1, 2, 3, 4, 5] and count() == "6 selected"
    select_page.click()
    assert ticked() == []
    ActionChains(browser).send_keys("a").perform()  # the key does the same
    assert count() == "6 selected"
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()

    # Pick two and label them: the dialog says what will happen before anything does.
    box(0).click()
    shift_click(box(1))
    label_button.click()
    dialog = browser.find_element(By.ID, "label-dialog")
    wait.until(lambda d: dialog.is_displayed())
    assert "Label 2 images" in dialog.find_element(By.TAG_NAME, "h2").text
    Select(dialog.find_element(By.NAME, "subclass")).select_by_value(str(robin.pk))
    summary = dialog.find_element(By.CSS_SELECTOR, "[data-summary]").text
    assert summary == "2 images move to Robin / default."
    dialog.find_element(By.CSS_SELECTOR, "[data-confirm]").click()

    wait.until(lambda d: "Labelled as Robin / default: 2 images." in d.page_source)
    events = LabelEvent.objects.filter(reason=LabelReason.BULK, to_subclass=robin)
    assert sorted(events.values_list("image_id", flat=True)) == [images[0].pk, images[1].pk]
    assert {event.actor_id for event in events} == {labeller.pk}
    assert len(tiles()) == 4 and count() == "0 selected"  # the rest are still in the inbox
