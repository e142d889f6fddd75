"""A reviewer downloads an export from the version page in Chromium: the links are there, and
the browser gets the bytes, whole or (resuming) a byte range of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from accounts.models import Role
from curation.models import Image, JobStatus
from curation.services.dataset_jobs import dataset_export_job_start
from curation.services.datasets import DatasetParams, dataset_build, dataset_version_create
from curation.tasks import export_dataset
from tests.factories import LabelClassFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

FETCH = """
const [url, range, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
fetch(url, {credentials: "same-origin", headers: range ? {Range: range} : {}})
  .then(async (r) => done({status: r.status, range: r.headers.get("Content-Range"),
                           body: Array.from(new Uint8Array(await r.arrayBuffer()))}))
  .catch((e) => done({error: String(e)}));
"""


def test_a_reviewer_downloads_shards_and_the_manifest_from_the_version_page(
    browser: Any,
    live_server: Any,
    make_image: Callable[..., Image],
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.LOUPE_EXPORT_DIR = tmp_path / "exports"
    reviewer = UserFactory(username="rui", role=Role.REVIEWER)
    for name, count in (("Wren", 5), ("Robin", 4)):
        subclass = LabelClassFactory(name=name).subclasses.get(is_default=True)
        for _ in range(count):
            make_image(subclass, size=(48, 32))
    version = dataset_build(
        version=dataset_version_create(
            name="birds v1", params=DatasetParams(min_per_class=2, ratios=(80, 20, 0)), actor=None
        )
    )
    job = dataset_export_job_start(
        version=version, format="webdataset", letterbox=None, shard_size=3, actor=reviewer
    )
    export_dataset(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    out = Path(job.params["out"])

    browser.get(f"{live_server.url}/login/?next=/datasets/{version.pk}/")
    browser.find_element(By.ID, "id_username").send_keys(reviewer.username)
    browser.find_element(By.ID, "id_password").send_keys("pw", Keys.ENTER)
    row = browser.find_element(By.CSS_SELECTOR, f'#export-jobs tr[data-job="{job.pk}"]')
    links = {a.text: a.get_attribute("href") for a in row.find_elements(By.CSS_SELECTOR, "a")}
    shards = sorted(p.name for p in out.glob("*.tar"))
    assert {"manifest.csv", "label_map.json", "dataset.json", *shards} <= set(links)

    browser.set_script_timeout(20)
    whole = browser.execute_async_script(FETCH, links["manifest.csv"], None)
    assert whole["status"] == 200
    assert bytes(whole["body"]) == (out / "manifest.csv").read_bytes()
    shard = (out / shards[0]).read_bytes()
    rest = browser.execute_async_script(FETCH, links[shards[0]], "bytes=1000-")
    assert rest["status"] == 206
    assert rest["range"] == f"bytes 1000-{len(shard) - 1}/{len(shard)}"
    assert bytes(rest["body"]) == shard[1000:]
