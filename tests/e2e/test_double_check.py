"""A reviewer steps through an evaluation run's Double-check queue with the keyboard, in
headless Chromium against a live server, and each answer comes out as the right label event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import Role
from curation.models import Image, ImageStatus, LabelEvent, LabelReason, SubClass
from curation.services.taxonomy import class_create
from inference.evaluation import EvaluationScope, evaluation_create, evaluation_execute
from inference.models import DoubleCheckItem, DoubleCheckStatus
from tests.factories import UserFactory
from tests.inference.test_evaluation import NAMES, predict, register

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_double_check_queue_is_worked_through_by_keyboard(
    browser: Any, live_server: Any, make_image: Callable[..., Image]
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    subclasses = {
        name: SubClass.objects.get(label_class=class_create(name=name, actor=None), is_default=True)
        for name in NAMES
    }
    reviewer = UserFactory(username="rui", role=Role.REVIEWER)
    version = register()
    # Confident, right images (exemplars), then four planted mislabels, surest first.
    for n in range(6):
        name = NAMES[n % 3]
        scores = [0.01, 0.01, 0.01]
        scores[NAMES.index(name)] = 0.98
        predict(make_image(subclasses[name]), version, scores)
    planted = []
    for given, truth, p_given in (
        ("Robin", "Wren", 0.001),
        ("Sparrow", "Robin", 0.002),
        ("Wren", "Sparrow", 0.003),
        ("Robin", "Sparrow", 0.004),
    ):
        image = make_image(subclasses[given])
        scores = [0.005, 0.005, 0.005]
        scores[NAMES.index(given)] = p_given
        scores[NAMES.index(truth)] = 0.99 - p_given
        predict(image, version, scores)
        planted.append(image)
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    evaluation_execute(run=run)
    items = list(DoubleCheckItem.objects.filter(run=run).order_by("rank"))
    assert [item.image_id for item in items] == [image.pk for image in planted]

    # The page reloads after each answer: an element found a moment ago may belong to the old
    # page, so a stale reference only means "look again".
    wait = WebDriverWait(
        browser, 10, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    )
    browser.get(f"{live_server.url}/login/?next=/models/evaluations/{run.pk}/double-check/")
    browser.find_element(By.ID, "id_username").send_keys(reviewer.username)
    browser.find_element(By.ID, "id_password").send_keys("pw", Keys.ENTER)

    def on_item(item: DoubleCheckItem) -> None:
        wait.until(
            lambda d: (
                d.find_elements(By.ID, "dc-item")
                and d.find_element(By.ID, "dc-item").get_attribute("data-item") == str(item.pk)
            )
        )

    def press(*keys: str) -> None:
        ActionChains(browser).send_keys(*keys).perform()

    on_item(items[0])
    assert "0 of 4 done" in browser.find_element(By.CLASS_NAME, "lab-head").text
    press("p")  # Robin -> the predicted Wren
    on_item(items[1])
    assert "1 of 4 done" in browser.find_element(By.CLASS_NAME, "lab-head").text
    press("k")  # keep Sparrow
    on_item(items[2])
    press("x")
    wait.until(lambda d: d.find_element(By.ID, "dc-trash").is_displayed())
    press("1")  # the first bad-image reason
    on_item(items[3])
    press("/")
    browser.switch_to.active_element.send_keys("Wren / default", Keys.ENTER)
    wait.until(lambda d: d.find_elements(By.ID, "dc-empty"))

    events = {
        event.image_id: event
        for event in LabelEvent.objects.filter(reason=LabelReason.DOUBLE_CHECK, actor=reviewer)
    }
    assert len(events) == 4
    assert events[planted[0].pk].to_subclass == subclasses["Wren"]
    assert events[planted[0].pk].from_subclass == subclasses["Robin"]
    assert events[planted[1].pk].to_subclass == events[planted[1].pk].from_subclass
    assert events[planted[2].pk].to_status == ImageStatus.TRASHED
    assert events[planted[3].pk].to_subclass == subclasses["Wren"]
    statuses = list(
        DoubleCheckItem.objects.filter(run=run).order_by("rank").values_list("status", flat=True)
    )
    assert statuses == [
        DoubleCheckStatus.RELABELLED,
        DoubleCheckStatus.KEPT,
        DoubleCheckStatus.TRASHED,
        DoubleCheckStatus.RELABELLED,
    ]
