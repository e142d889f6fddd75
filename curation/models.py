from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Coalesce


class ClassKind(models.TextChoices):
    NORMAL = "normal", "Normal"
    HOLDING = "holding", "Holding"


class Source(models.TextChoices):
    REAL = "real", "Real"
    STAGED = "staged", "Staged"
    SYNTHETIC = "synthetic", "Synthetic"


DEFAULT_SUBCLASS_NAME = "default"

# Sorts after every probability: images the active model has not scored come last in
# least-confident-first order.
UNSCORED = 2.0


class LabelClass(models.Model):
    """A training label. Holding classes (e.g. "Unknown") keep good but unidentified images and
    are never exported for training."""

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=ClassKind.choices, default=ClassKind.NORMAL)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "class"
        verbose_name_plural = "classes"

    def __str__(self) -> str:
        return self.name


class SubClass(models.Model):
    """A variation inside a class. Moving a sub-class to another class is how classes merge."""

    label_class = models.ForeignKey(LabelClass, on_delete=models.PROTECT, related_name="subclasses")
    name = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.REAL)
    is_default = models.BooleanField(default=False)
    # Active images in this sub-class, kept by the services in the same transaction as the
    # change, so the library overview never counts a million rows.
    image_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label_class__name", "-is_default", "name"]
        verbose_name = "sub-class"
        verbose_name_plural = "sub-classes"
        constraints = [
            models.UniqueConstraint(fields=["label_class", "name"], name="subclass_unique_name"),
            models.UniqueConstraint(
                fields=["label_class"],
                condition=Q(is_default=True),
                name="subclass_one_default_per_class",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label_class.name} / {self.name}"


class ImageStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    TRASHED = "trashed", "Trashed"


class ImportKind(models.TextChoices):
    UPLOAD = "upload", "Upload"
    ZIP = "zip", "Zip archive"
    FOLDER = "folder", "Folder"


class ImportBatch(models.Model):
    """One import: its per-file report lives in ImportItem rows."""

    kind = models.CharField(max_length=16, choices=ImportKind.choices)
    name = models.CharField(max_length=500, blank=True, help_text="archive or folder name")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    job = models.ForeignKey(
        "Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="import_batches"
    )
    created_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Import #{self.pk} ({self.kind})"


class Image(models.Model):
    sha256 = models.CharField(max_length=64, unique=True)
    extension = models.CharField(max_length=8)
    content_type = models.CharField(max_length=32)
    format = models.CharField(max_length=8)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    file_size = models.PositiveBigIntegerField()
    # The uploader's name for the file, kept as metadata only: never used in a path, always
    # escaped on output.
    original_filename = models.CharField(max_length=255, blank=True)

    # No index of its own: image_subclass_status_id starts with it.
    subclass = models.ForeignKey(
        SubClass,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="images",
        db_index=False,
    )
    labelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    labelled_at = models.DateTimeField(null=True, blank=True)

    status = models.CharField(
        max_length=16, choices=ImageStatus.choices, default=ImageStatus.ACTIVE
    )
    trashed_reason = models.CharField(max_length=500, blank=True)
    trashed_at = models.DateTimeField(null=True, blank=True)

    # Bumped on every label or status change; a relabel names the version it saw.
    version = models.PositiveIntegerField(default=1)
    import_batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="images"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    thumbnail_ready = models.BooleanField(default=False)
    # The active model's top-1 score for this image, kept with the predictions so that the
    # labelling queues can walk "least confident first" on an index.
    suggestion_score = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Class pages: active images of some sub-classes, newest first.
            models.Index(fields=["subclass", "status", "-id"], name="image_subclass_status_id"),
            # Inbox: active unlabelled images, oldest first.
            models.Index(
                fields=["id"],
                condition=Q(subclass__isnull=True, status="active"),
                name="image_inbox",
            ),
            # Inbox labelling queue: least confident first, then oldest (unscored last).
            models.Index(
                Coalesce("suggestion_score", Value(UNSCORED)),
                "id",
                condition=Q(subclass__isnull=True, status="active"),
                name="image_inbox_by_score",
            ),
            models.Index(fields=["-trashed_at"], condition=Q(status="trashed"), name="image_trash"),
            models.Index(
                fields=["id"], condition=Q(thumbnail_ready=False), name="image_needs_thumbnail"
            ),
        ]

    def __str__(self) -> str:
        return f"Image {self.pk} ({self.sha256[:12]})"

    @property
    def storage_name(self) -> str:
        from curation.storage import original_name

        return original_name(self.sha256, self.extension)

    @property
    def thumbnail_name(self) -> str:
        from curation.storage import thumbnail_name

        return thumbnail_name(self.sha256)

    @property
    def is_trashed(self) -> bool:
        return self.status == ImageStatus.TRASHED


class LabelReason(models.TextChoices):
    IMPORT = "import", "Import"
    LABELLING = "labelling", "Labelling"
    DOUBLE_CHECK = "double_check", "Double-check"
    DUPLICATE = "duplicate", "Duplicate review"
    BULK = "bulk", "Bulk"
    API = "api", "API"
    UNDO = "undo", "Undo"
    TRASH = "trash", "Trash"
    RESTORE = "restore", "Restore"


class LabelEvent(models.Model):
    """Every change of an image's sub-class or status. Never edited or deleted; undo is a new
    event."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="label_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=32, choices=LabelReason.choices)
    note = models.CharField(max_length=500, blank=True)
    from_subclass = models.ForeignKey(
        SubClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    to_subclass = models.ForeignKey(
        SubClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_status = models.CharField(max_length=16, choices=ImageStatus.choices)
    to_status = models.CharField(max_length=16, choices=ImageStatus.choices)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["image", "-id"], name="labelevent_image_id")]


class TaxonomyAction(models.TextChoices):
    CREATE_CLASS = "create_class", "Class created"
    RENAME_CLASS = "rename_class", "Class renamed"
    DELETE_CLASS = "delete_class", "Class deleted"
    CREATE_SUBCLASS = "create_subclass", "Sub-class created"
    RENAME_SUBCLASS = "rename_subclass", "Sub-class renamed"
    MOVE_SUBCLASS = "move_subclass", "Sub-class moved (merge or split)"
    DELETE_SUBCLASS = "delete_subclass", "Sub-class deleted"


class TaxonomyEvent(models.Model):
    """A change to the class/sub-class tree: the tree is the merge configuration, so every change
    to it is kept."""

    action = models.CharField(max_length=32, choices=TaxonomyAction.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    subclass = models.ForeignKey(
        SubClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_class = models.ForeignKey(
        LabelClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    to_class = models.ForeignKey(
        LabelClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]


class ImportOutcome(models.TextChoices):
    CREATED = "created", "Created"
    DUPLICATE = "duplicate", "Duplicate"
    REJECTED = "rejected", "Rejected"


class ImportItem(models.Model):
    """One line of an import's per-file report."""

    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="items")
    name = models.CharField(max_length=1000)
    outcome = models.CharField(max_length=16, choices=ImportOutcome.choices)
    image = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Job(models.Model):
    """A background run with progress, visible in the UI and the API."""

    kind = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Refreshed with every progress report; a running job whose heartbeat has gone stale lost
    # its worker and may be claimed again.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Job #{self.pk} {self.kind} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == JobStatus.SUCCEEDED:
            return 100
        if not self.total:
            return 0
        return min(100, int(100 * self.done / self.total))

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class ImageFeatures(models.Model):
    """Perceptual hashes and quality metrics of one image, computed by the worker after import
    (or by ``find_duplicates`` for images that predate it). ``phash`` is null when the pixels
    could not be read; ``error`` says why."""

    image = models.OneToOneField(
        Image, primary_key=True, on_delete=models.CASCADE, related_name="features"
    )
    # 64-bit hashes stored signed, so PostgreSQL's bigint (and its indexes) can hold them.
    phash = models.BigIntegerField(null=True, blank=True)
    dhash = models.BigIntegerField(null=True, blank=True)
    # The pHash cut in three (22 + 21 + 21 bits) for the multi-index near-duplicate lookup: two
    # hashes within k bits agree within floor(k/3) bits on at least one part (pigeonhole).
    phash_part0 = models.IntegerField(null=True, blank=True)
    phash_part1 = models.IntegerField(null=True, blank=True)
    phash_part2 = models.IntegerField(null=True, blank=True)
    # How the pixels were decoded for the hash: "draft-1/8" (JPEG DCT scaling) or "full".
    decode_mode = models.CharField(max_length=16, blank=True)

    brightness_p05 = models.FloatField(null=True, blank=True)
    brightness_p50 = models.FloatField(null=True, blank=True)
    brightness_p95 = models.FloatField(null=True, blank=True)
    contrast = models.FloatField(null=True, blank=True, help_text="standard deviation of grey")
    sharpness = models.FloatField(
        null=True, blank=True, help_text="variance of the Laplacian on a 256-pixel grey image"
    )
    entropy = models.FloatField(null=True, blank=True, help_text="bits per pixel of grey")
    colourfulness = models.FloatField(null=True, blank=True, help_text="mean chroma distance")
    is_grayscale = models.BooleanField(default=False)
    aspect_ratio = models.FloatField(null=True, blank=True, help_text="width / height")
    megapixels = models.FloatField(null=True, blank=True)

    error = models.CharField(max_length=500, blank=True)
    computed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "image features"
        indexes = [
            # The near-duplicate look-up reads (image, pHash) from these alone: each also holds
            # the hash and the image, so no table row is visited for a probed part.
            models.Index(fields=["phash_part0", "phash", "image"], name="features_phash_part0"),
            models.Index(fields=["phash_part1", "phash", "image"], name="features_phash_part1"),
            models.Index(fields=["phash_part2", "phash", "image"], name="features_phash_part2"),
            # Quality filters and "worst images" lists order by these.
            models.Index(fields=["brightness_p50"], name="features_brightness"),
            models.Index(fields=["sharpness"], name="features_sharpness"),
            models.Index(fields=["entropy"], name="features_entropy"),
            models.Index(fields=["aspect_ratio"], name="features_aspect_ratio"),
            models.Index(fields=["megapixels"], name="features_megapixels"),
        ]

    def __str__(self) -> str:
        return f"Features of image {self.image_id}"


class DuplicateStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"
    DISMISSED = "dismissed", "Not duplicates"


class DuplicateMethod(models.TextChoices):
    PHASH = "phash", "pHash"
    EMBEDDING = "embedding", "Embedding"
    ALL = "all", "pHash and embedding"


class ImageProbe(models.Model):
    """One probe hash of an image (see ``curation.nearcopy``): the pHash of the image rotated
    a little or cropped a little, so a rotated or cropped copy arriving later is found by
    the same indexed lookup as the pHash itself. Several rows per image."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="probes")
    value = models.BigIntegerField()  # signed, like ImageFeatures.phash
    part0 = models.IntegerField()
    part1 = models.IntegerField()
    part2 = models.IntegerField()

    class Meta:
        indexes = [
            # Covering, like ImageFeatures' part indexes: seven million rows at a million
            # images, and the look-up reads none of them.
            models.Index(fields=["part0", "value", "image"], name="probe_part0"),
            models.Index(fields=["part1", "value", "image"], name="probe_part1"),
            models.Index(fields=["part2", "value", "image"], name="probe_part2"),
        ]

    def __str__(self) -> str:
        return f"Probe hash of image {self.image_id}"


class DuplicateGroup(models.Model):
    """Near-duplicate images reviewed together, waiting for or past review. ``method`` says
    which graph: pHashes within ``max_distance`` bits, or embeddings at or above a cosine
    similarity (``max_distance`` is then 0).

    A group is one star of its connected component of that graph (its members near its
    ``centre``), so a chain of images that are each near the next is reviewed in parts.
    ``component`` is the key the groups split from one component share (the id of one of
    them); NULL means a component of this group alone. Dataset builds keep a whole component
    in one split."""

    status = models.CharField(
        max_length=16, choices=DuplicateStatus.choices, default=DuplicateStatus.OPEN
    )
    method = models.CharField(
        max_length=16, choices=DuplicateMethod.choices, default=DuplicateMethod.PHASH
    )
    max_distance = models.PositiveSmallIntegerField()
    size = models.PositiveIntegerField(default=0)
    component = models.PositiveBigIntegerField(null=True, blank=True)
    # The image every other member was grouped around (NULL for groups older than centres).
    centre = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    keeper = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "id"], name="duplicategroup_status_id"),
            # The review page and API filtered by method.
            models.Index(fields=["status", "method", "id"], name="duplicategroup_method_id"),
            # The parts of a component, for the review page and component merges.
            models.Index(fields=["component", "id"], name="duplicategroup_component_id"),
        ]

    def __str__(self) -> str:
        return f"Duplicate group {self.pk} ({self.size} images, {self.status})"

    @property
    def component_key(self) -> int:
        """The component's key: ``component``, or this group's id when it stands alone."""
        return self.component if self.component is not None else self.pk


class DuplicateMember(models.Model):
    group = models.ForeignKey(DuplicateGroup, on_delete=models.CASCADE, related_name="members")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="duplicate_members")
    # pHash bits to the group's centre (the keeper candidate); 0 for the centre itself.
    distance = models.PositiveSmallIntegerField(default=0)
    # Why the image is in the group, in words for the review page ("pHash 10 bits from
    # image 12; 84 local features agree on one geometry").
    evidence = models.CharField(max_length=300, blank=True, default="")
    # Local features of this image that the verification matched to the centre's under one
    # geometric transform; None for the centre and for members verified by hashes alone.
    matches = models.PositiveIntegerField(null=True, blank=True)
    # Mirrors the group's status being open, so the database holds "one open group per image".
    is_open = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["group", "image"], name="duplicatemember_unique"),
            models.UniqueConstraint(
                fields=["image"], condition=Q(is_open=True), name="duplicatemember_one_open"
            ),
        ]

    def __str__(self) -> str:
        return f"Image {self.image_id} in duplicate group {self.group_id}"


class QualityBaseline(models.Model):
    """The library's quality thresholds: robust statistics of each metric (median and MAD),
    recomputed by a job, with per-library overrides that win over the adaptive values.
    A single row (pk 1)."""

    stats = models.JSONField(default=dict, blank=True)
    overrides = models.JSONField(default=dict, blank=True)
    # Per metric: bin edges and counts over the active library, and the count each flag
    # raises, computed with the thresholds so the quality page never scans the library.
    histograms = models.JSONField(default=dict, blank=True)
    image_count = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Quality baseline ({self.image_count} images)"


class LibraryCounter(models.Model):
    """Counts kept by the services in the same transaction as the change, for numbers every
    page shows (the inbox) that would otherwise be a count over a large part of the library."""

    INBOX = "inbox"

    name = models.CharField(max_length=32, primary_key=True)
    value = models.BigIntegerField(default=0)


class BenchmarkKind(models.TextChoices):
    DIFFICULT = "difficult", "Difficult"
    OUT_OF_SCOPE = "out_of_scope", "Out of scope"
    MOST_COMMON = "most_common", "Most common"
    LEAST_COMMON = "least_common", "Least common"
    CUSTOM = "custom", "Custom"


class BenchmarkSet(models.Model):
    """A named, versioned set of images kept out of every dataset version's train/val/test.
    Editing a set makes a new version under the same name; each version is frozen."""

    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    kind = models.CharField(max_length=16, choices=BenchmarkKind.choices)
    description = models.TextField(blank=True)
    member_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="benchmarkset_name_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class BenchmarkMember(models.Model):
    benchmark_set = models.ForeignKey(
        BenchmarkSet, on_delete=models.CASCADE, related_name="members"
    )
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="benchmark_members")
    # The image's class when it joined; out-of-scope members have none.
    label_class = models.ForeignKey(
        LabelClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["benchmark_set", "image"], name="benchmarkmember_unique"
            )
        ]


class DatasetStatus(models.TextChoices):
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VAL = "val", "Validation"
    TEST = "test", "Test"


class DatasetVersion(models.Model):
    """A frozen train/val/test assignment of the library, built from ``params``. The same
    parameters on the same library give the identical assignment."""

    name = models.CharField(max_length=200, unique=True)
    params = models.JSONField(default=dict, blank=True)
    seed = models.IntegerField(default=0)
    # Throw-away builds with a lower minimum: for bulk identification, never for production.
    exploratory = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=DatasetStatus.choices, default=DatasetStatus.BUILDING
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Per class: counts per split, real/staged mix, exclusions and why; totals; label map.
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name


class DatasetAssignment(models.Model):
    version = models.ForeignKey(
        DatasetVersion, on_delete=models.CASCADE, related_name="assignments"
    )
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    split = models.CharField(max_length=8, choices=Split.choices)
    # Frozen at build time: a later relabel does not change a built version.
    label_class = models.ForeignKey(LabelClass, on_delete=models.PROTECT, related_name="+")
    subclass = models.ForeignKey(SubClass, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=16, choices=Source.choices)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["version", "image"], name="datasetassignment_unique")
        ]
        indexes = [
            models.Index(fields=["version", "split"], name="datasetassignment_split"),
        ]


class BadReason(models.TextChoices):
    """Reasons an image fails the labelling standards. The key is what the SME presses after
    ``b`` on the labelling page."""

    BLURRY = "blurry", "Blurry"
    TOO_DARK = "too_dark", "Too dark"
    BACK_LIT = "back_lit", "Back-lit"
    HIGH_CONTRAST = "high_contrast", "High contrast or shadows"
    OBSCURED = "obscured", "Obscured features"
    MULTIPLE_SUBJECTS = "multiple_subjects", "Multiple subjects"
    DOCTORED = "doctored", "Doctored / drawn on"
    UNUSUAL_ANGLE = "unusual_angle", "Unusual angle"
    SCREEN_PHOTO = "screen_photo", "Photo of a screen"
    TOO_SMALL = "too_small", "Subject too small"
    TOO_CLOSE = "too_close", "Subject too close"


BAD_REASON_KEYS: dict[str, str] = {
    BadReason.BLURRY: "1",
    BadReason.TOO_DARK: "2",
    BadReason.BACK_LIT: "3",
    BadReason.HIGH_CONTRAST: "4",
    BadReason.OBSCURED: "5",
    BadReason.MULTIPLE_SUBJECTS: "6",
    BadReason.DOCTORED: "7",
    BadReason.UNUSUAL_ANGLE: "8",
    BadReason.SCREEN_PHOTO: "9",
    BadReason.TOO_SMALL: "0",
    BadReason.TOO_CLOSE: "-",
}


class BadVerdict(models.Model):
    """An SME's verdict that an image fails the labelling standards. The image stays in the
    library (trashing is a reviewer's decision); datasets leave it out. A fact about the library
    that labelling, Double-check and production review all write and read."""

    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="bad_verdict")
    reason = models.CharField(max_length=32, choices=BadReason.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["reason"], name="badverdict_reason")]


class SavedFilter(models.Model):
    """A named image filter (from bulk identification or the quality page) usable as a
    labelling queue. ``params`` are the library's filter fields; a higher app may add its own
    (``curation.filters.SAVED_FILTER_REFINEMENTS``)."""

    name = models.CharField(max_length=200)
    params = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
