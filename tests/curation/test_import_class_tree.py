"""An import may create the classes and sub-classes its folders name only for someone who may
change the class tree (reviewers and admins, as on ``POST /api/v1/classes/``). A labeller's
archive never changes it: files in folders naming an existing class and sub-class go there,
the others go to the inbox, and the report says so for each of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import (
    Image,
    ImportKind,
    ImportOutcome,
    LabelClass,
    SubClass,
    TaxonomyEvent,
)
from curation.services.images import import_batch_create
from curation.services.imports import Destination, folder_import
from curation.services.taxonomy import class_create, subclass_create
from curation.tasks import import_archive
from tests.factories import image_bytes, zip_bytes

pytestmark = pytest.mark.django_db

IMPORTS = "/api/v1/imports/"


@pytest.fixture
def robin(reviewer: User) -> LabelClass:
    label_class = class_create(name="Robin", actor=reviewer)
    subclass_create(label_class=label_class, name="juvenile", actor=reviewer)
    return label_class


def tree() -> list[tuple[str, str]]:
    return sorted(SubClass.objects.values_list("label_class__name", "name"))


ENTRIES = [
    ("Cat/real/cat.jpg", 4101),
    ("Mug/mug.jpg", 4102),
    ("Robin/robin.jpg", 4103),
    ("robin/Juvenile/young.jpg", 4104),
    ("Robin/adult/old.jpg", 4105),
    ("loose.jpg", 4106),
]


def labelled_archive() -> bytes:
    return zip_bytes([(name, image_bytes(seed=seed)) for name, seed in ENTRIES])


def run_archive(client: APIClient) -> dict[str, tuple[str, str, int | None]]:
    upload = SimpleUploadedFile("pets.zip", labelled_archive(), content_type="application/zip")
    response = client.post(IMPORTS, {"archive": upload}, format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    import_archive(body["job"]["id"])  # what the worker runs
    items = client.get(f"{IMPORTS}{body['batch']['id']}/items/").json()["results"]
    return {item["name"]: (item["outcome"], item["reason"], item["image"]) for item in items}


def placed(name: str) -> tuple[str, str] | None:
    image = Image.objects.select_related("subclass__label_class").get(original_filename=name)
    if image.subclass is None:
        return None
    return image.subclass.label_class.name, image.subclass.name


def test_a_labellers_archive_leaves_the_class_tree_as_it_was(
    api: APIClient, robin: LabelClass
) -> None:
    before, events = tree(), TaxonomyEvent.objects.count()

    report = run_archive(api)

    assert tree() == before  # no "Cat", "Mug" or "real", no "adult" under Robin
    assert TaxonomyEvent.objects.count() == events
    assert not LabelClass.objects.filter(name__in=["Cat", "Mug"]).exists()
    assert {outcome for outcome, _, _ in report.values()} == {ImportOutcome.CREATED}


def test_a_labellers_files_go_where_existing_folders_say_and_the_rest_to_the_inbox(
    api: APIClient, robin: LabelClass
) -> None:
    report = run_archive(api)

    assert placed("robin.jpg") == ("Robin", "default")
    assert placed("young.jpg") == ("Robin", "juvenile")  # names match ignoring case
    for name in ("cat.jpg", "mug.jpg", "old.jpg", "loose.jpg"):
        assert placed(name) is None, name
    assert report["Cat/real/cat.jpg"][1] == (
        "put in the inbox: there is no class 'Cat', and only reviewers create classes"
    )
    assert "there is no class 'Mug'" in report["Mug/mug.jpg"][1]
    assert report["Robin/adult/old.jpg"][1] == (
        "put in the inbox: class 'Robin' has no sub-class 'adult', and only reviewers "
        "create sub-classes"
    )
    assert report["Robin/robin.jpg"][1] == ""
    assert report["loose.jpg"][1] == ""  # top-level files go to the inbox for everyone


def test_the_import_report_page_shows_why_a_file_went_to_the_inbox(
    api: APIClient, labeller: User, robin: LabelClass
) -> None:
    from django.test import Client

    run_archive(api)
    browser = Client()
    browser.force_login(labeller)
    batch = Image.objects.get(original_filename="cat.jpg").import_batch

    page = browser.get(f"/imports/{batch.pk}/").content.decode()

    assert "put in the inbox: there is no class &#x27;Cat&#x27;" in page


def test_a_reviewers_archive_creates_the_classes_its_folders_name(
    reviewer_api: APIClient, robin: LabelClass
) -> None:
    report = run_archive(reviewer_api)

    assert placed("cat.jpg") == ("Cat", "real")
    assert placed("mug.jpg") == ("Mug", "default")
    assert placed("old.jpg") == ("Robin", "adult")
    assert all(reason == "" for _, reason, _ in report.values())


def test_the_command_line_creates_classes_unless_it_imports_as_a_labeller(
    tmp_path: Path, labeller: User, robin: LabelClass
) -> None:
    root = tmp_path / "tree"
    for name, seed in ENTRIES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(image_bytes(seed=seed))
    before = tree()

    batch = import_batch_create(kind=ImportKind.FOLDER, name="tree", actor=labeller)
    folder_import(root=root, destination=Destination(), actor=labeller, batch=batch)

    assert tree() == before
    assert placed("cat.jpg") is None
    reasons = dict(batch.items.values_list("name", "reason"))
    assert "there is no class 'Cat'" in reasons["Cat/real/cat.jpg"]

    Image.objects.all().delete()
    batch = import_batch_create(kind=ImportKind.FOLDER, name="tree", actor=None)
    folder_import(root=root, destination=Destination(), actor=None, batch=batch)
    assert placed("cat.jpg") == ("Cat", "real")


def test_a_labeller_can_still_import_everything_into_one_sub_class_or_the_inbox(
    api: APIClient, robin: LabelClass
) -> None:
    juvenile = SubClass.objects.get(label_class=robin, name="juvenile")
    upload = SimpleUploadedFile(
        "young.zip", zip_bytes({"Cat/a.jpg": image_bytes(seed=4201)}), "application/zip"
    )
    body = api.post(
        IMPORTS, {"archive": upload, "subclass": juvenile.pk}, format="multipart"
    ).json()
    import_archive(body["job"]["id"])

    assert placed("a.jpg") == ("Robin", "juvenile")
    assert not LabelClass.objects.filter(name="Cat").exists()
