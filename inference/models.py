from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from django.conf import settings
from django.db import models
from django.db.models import Q


class TensorLayout(models.TextChoices):
    NCHW = "NCHW", "NCHW (channels first)"
    NHWC = "NHWC", "NHWC (channels last)"


class ChannelOrder(models.TextChoices):
    RGB = "RGB", "RGB"
    BGR = "BGR", "BGR"


class ResizeMode(models.TextChoices):
    LETTERBOX = "letterbox", "Letterbox (square, aspect kept, black padding)"
    STRETCH = "stretch", "Stretch to the input size"
    CENTER_CROP = "center_crop", "Resize the short side, crop the centre"


class OutputKind(models.TextChoices):
    LOGITS = "logits", "Logits (softmax applied by Loupe)"
    PROBABILITIES = "probabilities", "Probabilities"


class ModelVersion(models.Model):
    """An ONNX classifier with its label map and the preprocessing its inputs need.

    The file is self-contained and validated before the row exists; rows are never edited
    except for name, notes and which one is active.
    """

    number = models.PositiveIntegerField(unique=True)
    name = models.CharField(max_length=200)
    onnx_file = models.CharField(max_length=300, help_text="storage name, models/<sha256>.onnx")
    sha256 = models.CharField(max_length=64)
    file_size = models.PositiveBigIntegerField()
    label_map = models.JSONField(help_text="class names in output order")

    input_size = models.PositiveIntegerField(default=224)
    layout = models.CharField(max_length=4, choices=TensorLayout.choices, default="NCHW")
    channel_order = models.CharField(max_length=3, choices=ChannelOrder.choices, default="RGB")
    # Pixel values v in 0..255 become ((v * scale) - mean[c]) / std[c].
    scale = models.FloatField(default=1 / 255)
    mean = models.JSONField(default=list)
    std = models.JSONField(default=list)
    resize_mode = models.CharField(
        max_length=16, choices=ResizeMode.choices, default=ResizeMode.LETTERBOX
    )
    output_kind = models.CharField(
        max_length=16, choices=OutputKind.choices, default=OutputKind.LOGITS
    )
    input_name = models.CharField(max_length=200)
    output_name = models.CharField(max_length=200)
    embedding_output = models.CharField(max_length=200, blank=True)

    is_active = models.BooleanField(default=False)
    notes = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="modelversion_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.number} {self.name}"

    @property
    def class_count(self) -> int:
        return len(self.label_map)


class Prediction(models.Model):
    """Top-k of one model version on one image; computed once, never updated."""

    image = models.ForeignKey(
        "curation.Image", on_delete=models.CASCADE, related_name="predictions"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="predictions"
    )
    class_indices = models.JSONField(help_text="output indices, best first")
    class_names = models.JSONField(help_text="label-map names, best first")
    scores = models.JSONField(help_text="probabilities, best first")
    top1_index = models.PositiveIntegerField()
    top1_score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version"], name="prediction_one_per_image_and_version"
            ),
        ]
        indexes = [
            # Bulk identification: "predicted X", "lowest scores first".
            models.Index(
                fields=["model_version", "top1_index", "top1_score"],
                name="prediction_version_top1",
            ),
            models.Index(fields=["model_version", "top1_score"], name="prediction_version_score"),
        ]

    def __str__(self) -> str:
        return f"{self.image_id} @ v{self.model_version_id}: {self.class_names[:1]}"


class LabelMatch(models.Model):
    """Which library class a label-map entry of a model version stands for."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="label_matches"
    )
    index = models.PositiveIntegerField()
    name = models.CharField(max_length=500)
    label_class = models.ForeignKey(
        "curation.LabelClass",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="model_labels",
    )

    class Meta:
        ordering = ["model_version", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "index"], name="labelmatch_one_per_index"
            ),
        ]
        indexes = [models.Index(fields=["label_class"], name="labelmatch_class")]


# --- Embeddings -----------------------------------------------------------------------------


class ImageEmbedding(models.Model):
    """The embedding model's pooled feature vector of one image, L2-normalised and stored as
    little-endian float16 (2 bytes per dimension), with the image's out-of-distribution score:
    the mean cosine distance to its nearest labelled library images."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="embeddings"
    )
    image = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="embeddings")
    vector = models.BinaryField()
    ood_score = models.FloatField(null=True, blank=True)
    computed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "image"], name="embedding_one_per_model_image"
            )
        ]
        indexes = [models.Index(fields=["model_version", "ood_score"], name="embedding_ood")]

    def __str__(self) -> str:
        return f"Embedding of image {self.image_id} by v{self.model_version.number}"


# --- Evaluations ----------------------------------------------------------------------------


class EvaluationScopeKind(models.TextChoices):
    LIBRARY = "library", "Labelled library"
    DATASET = "dataset", "Dataset version"
    BENCHMARK = "benchmark", "Benchmark set"
    # Out-of-sample probabilities from K-fold quick-trainer heads on the labelled library; the
    # run's model version is the embedding model the features came from.
    CROSS_VALIDATION = "cross_validation", "Cross-validated label-error ranking"


class EvaluationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class EvaluationRun(models.Model):
    """A model version over a scope (the labelled library, a dataset version or one of its
    splits, a benchmark set), with its reports and a Double-check queue."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="evaluations"
    )
    scope_kind = models.CharField(max_length=16, choices=EvaluationScopeKind.choices)
    dataset = models.ForeignKey(
        "curation.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="evaluations",
    )
    split = models.CharField(max_length=8, blank=True, help_text="blank: every split")
    benchmark_set = models.ForeignKey(
        "curation.BenchmarkSet",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="evaluations",
    )
    threshold = models.FloatField(default=0.95)
    # [{"a": class name, "b": class name, "weight": 0.5}, ...]; unordered pairs.
    confused_pairs = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16, choices=EvaluationStatus.choices, default=EvaluationStatus.QUEUED
    )
    job = models.ForeignKey(
        "curation.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metrics = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Evaluation {self.pk} of v{self.model_version.number}"


class DoubleCheckStatus(models.TextChoices):
    OPEN = "open", "Open"
    KEPT = "kept", "Kept"
    RELABELLED = "relabelled", "Relabelled"
    TRASHED = "trashed", "Trashed"
    SKIPPED = "skipped", "Skipped"


class DoubleCheckKind(models.TextChoices):
    """Why an item is in the queue, from the model's answer on it: a confident answer of
    another class doubts the label; an unconfident wrong answer says more about the model."""

    LABEL_DOUBTFUL = "label_doubtful", "Label looks wrong"
    MODEL_WRONG = "model_wrong", "Model is wrong, label looks right"
    MODEL_UNSURE = "model_unsure", "Model is unsure"
    MODEL_AGREES = "model_agrees", "Model agrees"


class DoubleCheckItem(models.Model):
    """One image of an evaluation run's Double-check queue; lower ranks come first."""

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="+")
    true_class = models.ForeignKey(
        "curation.LabelClass", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    predicted_class = models.ForeignKey(
        "curation.LabelClass", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    predicted_name = models.CharField(max_length=500, blank=True)
    top1_score = models.FloatField(default=0.0)
    given_probability = models.FloatField(
        default=0.0, help_text="the model's probability of the image's label"
    )
    rank = models.PositiveIntegerField()
    why = models.CharField(max_length=32, blank=True)
    kind = models.CharField(max_length=16, choices=DoubleCheckKind.choices, blank=True)
    status = models.CharField(
        max_length=16, choices=DoubleCheckStatus.choices, default=DoubleCheckStatus.OPEN
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["run", "image"], name="doublecheck_one_per_run_image")
        ]
        indexes = [
            models.Index(fields=["run", "status", "rank"], name="doublecheck_queue"),
            models.Index(fields=["run", "kind", "status", "rank"], name="doublecheck_queue_kind"),
        ]


# --- Production logs


class Verdict(models.TextChoices):
    """A reviewer's verdict on one production prediction."""

    CORRECT = "correct", "Correct"
    WRONG = "wrong", "Wrong class"
    BAD_PICTURE = "bad_picture", "Bad picture"
    OUT_OF_SCOPE = "out_of_scope", "Out of scope"
    SHOULD_BE_CONFIDENT = "should_be_confident", "Should have been confident"


class PredictionLog(models.Model):
    """One production transaction: the image a serving system classified, what the model said,
    and (later) a reviewer's verdict. Never edited except for the verdict fields."""

    image = models.ForeignKey(
        "curation.Image", on_delete=models.CASCADE, related_name="production_logs"
    )
    # The label exactly as the client sent it; ``model_version`` is set when it names one.
    model_version_label = models.CharField(max_length=100)
    model_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="production_logs",
    )
    class_names = models.JSONField(help_text="top-k class names, best first")
    scores = models.JSONField(help_text="top-k scores, best first")
    top1_name = models.CharField(max_length=500)
    top1_score = models.FloatField()
    logged_at = models.DateTimeField(help_text="the client's clock")
    received_at = models.DateTimeField(help_text="server time the log arrived")
    client = models.CharField(max_length=100, help_text="serving system or app id")
    request_id = models.CharField(max_length=200, blank=True)
    logged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    verdict = models.CharField(max_length=32, choices=Verdict.choices, blank=True)
    true_subclass = models.ForeignKey(
        "curation.SubClass", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    out_of_scope_subject = models.CharField(max_length=200, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            # Idempotency: a client retrying a call with its request id gets the first log.
            models.UniqueConstraint(
                fields=["client", "request_id"],
                condition=~Q(request_id=""),
                name="predictionlog_one_per_request",
            ),
        ]
        indexes = [
            # Dashboard: every usage aggregate is a range scan on received_at. On PostgreSQL,
            # migration 0004 adds predictionlog_received_cover (the same key INCLUDE label,
            # score and top-1 name) so the scan never reads the wide rows; SQLite has no
            # covering indexes.
            models.Index(fields=["received_at"], name="predictionlog_received"),
            models.Index(
                fields=["model_version_label", "received_at"], name="predictionlog_version_time"
            ),
            # Review queues (unreviewed, newest first) and accuracy (reviewed only).
            models.Index(fields=["verdict", "received_at"], name="predictionlog_verdict"),
            models.Index(
                fields=["-received_at"],
                condition=Q(verdict=""),
                name="predictionlog_unreviewed",
            ),
        ]

    def __str__(self) -> str:
        return f"Log {self.pk}: {self.top1_name} {self.top1_score:.2f} ({self.client})"


# --- Production roll-ups


class PredictionLogHour(models.Model):
    """Calls of one hour per model version label and client. The hour is ``received_at``
    truncated in UTC. Like the other roll-ups below, the production services write it in the
    transaction that writes the logs or verdicts (``inference.rollups``), and
    ``rebuild_production_rollups`` recomputes it from the logs; the dashboard reads whole hours
    from the roll-ups and only the partial hours at the edges of its range from the logs."""

    hour = models.DateTimeField()
    model_version_label = models.CharField(max_length=100)
    client = models.CharField(max_length=100)
    calls = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "model_version_label", "client"], name="loghour_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.model_version_label} {self.client}: {self.calls}"


class PredictionLogScoreHour(models.Model):
    """Calls of one hour per top-1 score centile: ``centile`` is the largest k in 0..100 with
    ``top1_score >= k / 100``, so the count at or above any threshold on the 0.01 grid is a sum
    of whole centiles."""

    hour = models.DateTimeField()
    centile = models.PositiveSmallIntegerField()
    calls = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "centile"], name="logscorehour_key")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h ≥ {self.centile / 100:.2f}: {self.calls}"


class PredictionLogClassHour(models.Model):
    """Calls of one hour per predicted (top-1) class name."""

    hour = models.DateTimeField()
    top1_name = models.CharField(max_length=500)
    calls = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "top1_name"], name="logclasshour_key")
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.top1_name}: {self.calls}"


class PredictionLogVerdictHour(models.Model):
    """Reviewed logs of one hour (the hour the log was received, not reviewed) per model version
    label, top-1 class, score centile, verdict and out-of-scope subject. A changed verdict moves
    its log from one row to another; rows that reach zero are deleted.

    The row is unique on its hour and ``digest``, a hash of the other key fields: a unique
    index on the fields themselves could pass PostgreSQL's 2,704-byte limit on an index row (a
    500-character class name and a 200-character subject in four-byte characters do)."""

    KEY_FIELDS = (
        "hour",
        "model_version_label",
        "top1_name",
        "centile",
        "verdict",
        "out_of_scope_subject",
    )

    hour = models.DateTimeField()
    model_version_label = models.CharField(max_length=100)
    top1_name = models.CharField(max_length=500)
    centile = models.PositiveSmallIntegerField()
    verdict = models.CharField(max_length=32, choices=Verdict.choices)
    out_of_scope_subject = models.CharField(max_length=200, blank=True)
    digest = models.CharField(max_length=32, help_text="hash of the key fields after the hour")
    logs = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "digest"], name="logverdicthour_key")
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.top1_name} {self.verdict}: {self.logs}"

    @staticmethod
    def key_digest(key_after_hour: Sequence[object]) -> str:
        """``digest`` of a row whose key fields after ``hour`` hold ``key_after_hour``."""
        text = json.dumps([str(value) for value in key_after_hour], ensure_ascii=False)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
