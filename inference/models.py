from __future__ import annotations

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

# --- Evaluations ----------------------------------------------------------------------------


class EvaluationScopeKind(models.TextChoices):
    LIBRARY = "library", "Labelled library"
    DATASET = "dataset", "Dataset version"
    BENCHMARK = "benchmark", "Benchmark set"


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
        indexes = [models.Index(fields=["run", "status", "rank"], name="doublecheck_queue")]
