"""Pages that wait for a job follow it with a progress bar and show the result in place when it
ends, with no reload by the user, in headless Chromium against a live server. The test plays the
worker: it claims the job, reports progress, does the work and marks the job done."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import Role
from curation.models import Image, SubClass
from curation.services.jobs import job_claim, job_create, job_progress, job_succeed
from curation.services.quality import QUALITY_BASELINE_JOB, quality_baseline_update
from curation.services.taxonomy import class_create
from inference.evaluation import EvaluationScope, evaluation_create, evaluation_execute
from inference.models import Prediction
from inference.preprocessing import PreprocessSpec
from inference.services import model_version_register
from tests.factories import UserFactory
from tests.inference.onnx_models import labels, linear, to_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def wait_for(browser: Any, live_server: Any) -> Callable[..., Any]:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    UserFactory(username="rui", role=Role.REVIEWER)
    browser.get(f"{live_server.url}/login/")
    browser.find_element(By.ID, "id_username").send_keys("rui")
    browser.find_element(By.ID, "id_password").send_keys("pw", Keys.ENTER)
    wait = WebDriverWait(
        browser, 15, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    return wait.until


def _open(browser: Any, live_server: Any, path: str) -> None:
    browser.get(f"{live_server.url}{path}")
    # Survives only as long as the page is not reloaded.
    browser.execute_script("window.__sameDocument = true;")


def _bar(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, "[data-job-wait] .progress").get_attribute(
        "aria-valuenow"
    )


def _text(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "main").text


def test_the_quality_page_follows_its_recompute_job_and_updates_in_place(
    browser: Any, live_server: Any, wait_for: Callable[..., Any], make_image: Callable[..., Image]
) -> None:
    for _ in range(3):
        make_image(size=(64, 48))
    job = job_create(kind=QUALITY_BASELINE_JOB, actor=None)
    _open(browser, live_server, "/quality/")
    assert "have not been computed yet" in _text(browser)
    assert "reload" not in _text(browser).lower()
    assert _bar(browser) == "0"

    job_claim(job_id=job.pk)
    job_progress(job_id=job.pk, done=1, total=2, message="reading the library")
    wait_for(lambda _: _bar(browser) == "50" and "reading the library" in _text(browser))

    quality_baseline_update()
    job_succeed(job_id=job.pk, result={})
    wait_for(lambda d: not d.find_elements("css selector", "[data-job-wait]"))
    page = _text(browser)
    assert "Flags use thresholds adapted to this library" in page
    assert "have not been computed yet" not in page
    assert browser.execute_script("return window.__sameDocument") is True


def test_the_evaluation_report_follows_its_job_and_shows_the_reports_in_place(
    browser: Any, live_server: Any, wait_for: Callable[..., Any], make_image: Callable[..., Image]
) -> None:
    names = ("Robin", "Sparrow", "Wren")
    # The classes first: registering the model matches its labels to them.
    subclasses = [
        SubClass.objects.get(label_class=class_create(name=name, actor=None), is_default=True)
        for name in names
    ]
    version = model_version_register(
        onnx_data=to_bytes(linear(classes=3, seed=3)),
        labels=labels(*names),
        name="tiny",
        actor=None,
        spec=PreprocessSpec(input_size=8),
    ).version
    for n in range(6):
        image = make_image(subclasses[n % 3])
        Prediction.objects.filter(image=image, model_version=version).delete()
        right = n % 3
        order = [right] + [i for i in range(3) if i != right]
        Prediction.objects.create(
            image=image,
            model_version=version,
            class_indices=order,
            class_names=[names[i] for i in order],
            scores=[0.9, 0.06, 0.04],
            top1_index=right,
            top1_score=0.9,
        )
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    _open(browser, live_server, f"/models/evaluations/{run.pk}/")
    assert "reload" not in _text(browser).lower()

    job_claim(job_id=run.job_id)
    job_progress(job_id=run.job_id, done=3, total=4, message="scoring images")
    wait_for(lambda _: _bar(browser) == "75" and "scoring images" in _text(browser))

    evaluation_execute(run=run)
    job_succeed(job_id=run.job_id, result={"evaluation_id": run.pk})
    wait_for(lambda _: "Confidence threshold" in _text(browser))
    assert not browser.find_elements("css selector", "[data-job-wait]")
    assert browser.execute_script("return window.__sameDocument") is True
    # The report's own script ran again on the new content: its slider recomputes the table.
    browser.execute_script(
        "const s = document.getElementById('threshold-input'); s.value = '0.50';"
        "s.dispatchEvent(new Event('input'));"
    )
    wait_for(lambda d: d.find_element("id", "threshold-value").text == "0.50")
