"""One small library with a row of every kind a page or endpoint can name (classes, images,
batches, jobs, models, evaluations, Double-check items, duplicates, datasets, benchmark sets,
second opinions, exemplars, production logs, tokens), built through the services.

The access, CSRF and XSS tests fill URL ids from it; the XSS tests build it with a hostile
``text`` so that every name, note, label, filename and client id a user can type carries it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from django.test import Client

from accounts.models import Role, User
from accounts.services import token_issue
from curation.models import (
    BenchmarkKind,
    BenchmarkSet,
    DatasetVersion,
    DuplicateGroup,
    DuplicateMember,
    Image,
    ImportBatch,
    ImportKind,
    Job,
    LabelClass,
    LabelReason,
    SubClass,
)
from curation.services.datasets import (
    DatasetParams,
    benchmark_set_create,
    dataset_build,
    dataset_version_create,
)
from curation.services.images import (
    file_inspect,
    image_import,
    image_relabel,
    image_trash,
    import_batch_create,
)
from curation.services.jobs import job_create
from curation.services.taxonomy import class_create, subclass_create
from inference.evaluation import (
    EvaluationScope,
    evaluation_create,
    evaluation_execute,
    queue_add_images,
)
from inference.models import DoubleCheckItem, EvaluationRun, ModelVersion, PredictionLog
from inference.preprocessing import PreprocessSpec
from inference.production import LogEntry, prediction_log_record
from inference.services import model_version_register
from labelling.models import Exemplar, SecondOpinion
from labelling.services import second_opinion_give
from labelling.standards import exemplar_pin
from tests.factories import UserFactory, image_bytes
from tests.inference.onnx_models import labels, linear, to_bytes


@dataclass
class World:
    labeller: User
    reviewer: User
    admin: User
    label_class: LabelClass
    other_class: LabelClass
    subclass: SubClass
    image: Image
    trashed: Image
    batch: ImportBatch
    job: Job
    model: ModelVersion
    evaluation: EvaluationRun
    other_evaluation: EvaluationRun
    double_check: DoubleCheckItem
    duplicate: DuplicateGroup
    dataset: DatasetVersion
    benchmark: BenchmarkSet
    opinion: SecondOpinion
    exemplar: Exemplar
    prediction_log: PredictionLog
    token_key: str

    def user(self, role: Role | None) -> User | None:
        return {
            None: None,
            Role.LABELLER: self.labeller,
            Role.REVIEWER: self.reviewer,
            Role.ADMIN: self.admin,
        }[role]


def signed_in(user: User | None, **client_kwargs: object) -> Client:
    client = Client(**client_kwargs)  # type: ignore[arg-type]
    if user is not None:
        client.force_login(user)
    return client


def _stored(batch: ImportBatch, *, seed: int, name: str) -> Image:
    data = image_bytes(seed=seed)
    result = image_import(
        inspection=file_inspect(data=data, name=name),
        content=io.BytesIO(data),
        subclass=None,
        actor=None,
        batch=batch,
    )
    assert result.image is not None, result.reason
    return result.image


def build_world(text: str = "Robin") -> World:
    """Everything named after ``text``. Services refuse some characters in some names (slashes
    in class names, for one); those names are then written to the rows directly, as if an older
    version or the database itself had let them in: pages must stay inert either way."""
    labeller = UserFactory(username="lena", role=Role.LABELLER)
    reviewer = UserFactory(username="rui", role=Role.REVIEWER)
    admin = UserFactory(username="ada", role=Role.ADMIN, is_staff=True, is_superuser=True)
    second = UserFactory(username="sam", role=Role.LABELLER)

    label_class = class_create(name="Robin", actor=reviewer, description=text)
    other_class = class_create(name="Wren", actor=reviewer)
    subclass = subclass_create(label_class=label_class, name="juvenile", actor=reviewer)
    LabelClass.objects.filter(pk=label_class.pk).update(name=f"Robin {text}")
    SubClass.objects.filter(pk=subclass.pk).update(name=f"juvenile {text}")
    label_class.refresh_from_db()
    subclass.refresh_from_db()
    wren = SubClass.objects.get(label_class=other_class, is_default=True)

    batch = import_batch_create(kind=ImportKind.UPLOAD, name=f"batch {text}", actor=labeller)
    images = [_stored(batch, seed=seed, name=f"{text}{seed}.jpg") for seed in range(5)]
    for image in images[:3]:
        image_relabel(
            image_id=image.pk,
            subclass=subclass,
            actor=labeller,
            reason=LabelReason.LABELLING,
            expected_version=None,
            note=f"note {text}",
        )
    image_relabel(
        image_id=images[3].pk,
        subclass=wren,
        actor=labeller,
        reason=LabelReason.LABELLING,
        expected_version=None,
    )
    trashed = image_trash(image_id=images[4].pk, actor=reviewer, note=f"trashed {text}")
    image = Image.objects.get(pk=images[0].pk)

    job = job_create(kind="test", actor=admin, params={"note": text})
    model = model_version_register(
        onnx_data=to_bytes(linear(classes=2, seed=3)),
        labels=labels(f"Robin {text}", "Wren"),
        name=f"model {text}",
        actor=reviewer,
        spec=PreprocessSpec(input_size=8),
        notes=f"notes {text}",
    ).version
    evaluation = evaluation_create(
        version=model, scope=EvaluationScope(), actor=reviewer, enqueue=False
    )
    evaluation_execute(run=evaluation)
    queue_add_images(run=evaluation, label_class=label_class)
    other_evaluation = evaluation_create(
        version=model, scope=EvaluationScope(), actor=reviewer, enqueue=False
    )
    evaluation_execute(run=other_evaluation)
    double_check = DoubleCheckItem.objects.filter(run=evaluation).order_by("rank").first()
    assert double_check is not None

    duplicate = DuplicateGroup.objects.create(max_distance=8, size=2)
    DuplicateMember.objects.create(group=duplicate, image=images[1], distance=2)
    DuplicateMember.objects.create(group=duplicate, image=images[2], distance=2)

    dataset = dataset_version_create(
        name=f"dataset {text}", params=DatasetParams(min_per_class=1), actor=reviewer
    )
    dataset = dataset_build(version=dataset)
    benchmark = benchmark_set_create(
        name=f"benchmark {text}",
        kind=BenchmarkKind.DIFFICULT,
        image_ids=[images[1].pk],
        actor=reviewer,
        description=text,
    )

    action = second_opinion_give(user=second, image_id=images[2].pk, subclass=wren)
    opinion = SecondOpinion.objects.get(pk=action.opinion_id)
    exemplar = exemplar_pin(
        label_class=label_class, image_id=image.pk, kind="good", actor=reviewer, note=text
    )
    prediction_log = prediction_log_record(
        entry=LogEntry(
            client=f"client {text}",
            model_version_label=str(model.number),
            class_names=[f"Robin {text}", "Wren"],
            scores=[0.6, 0.4],
            request_id=f"request {text}",
            image_data=image_bytes(seed=99),
            image_name=f"{text}.jpg",
        ),
        actor=admin,
    ).log
    instance, _ = token_issue(user=admin)

    return World(
        labeller=labeller,
        reviewer=reviewer,
        admin=admin,
        label_class=label_class,
        other_class=other_class,
        subclass=subclass,
        image=image,
        trashed=trashed,
        batch=batch,
        job=job,
        model=model,
        evaluation=evaluation,
        other_evaluation=other_evaluation,
        double_check=double_check,
        duplicate=duplicate,
        dataset=dataset,
        benchmark=benchmark,
        opinion=opinion,
        exemplar=exemplar,
        prediction_log=prediction_log,
        token_key=instance.token_key,
    )
