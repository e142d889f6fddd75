from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from curation.imaging import needs_rendition
from curation.models import (
    ClassKind,
    Image,
    ImageStatus,
    ImportBatch,
    ImportItem,
    Job,
    LabelClass,
    LabelEvent,
    Source,
    SubClass,
)


class SubClassSerializer(serializers.ModelSerializer[SubClass]):
    class_name = serializers.CharField(source="label_class.name", read_only=True)

    class Meta:
        model = SubClass
        fields = ["id", "name", "label_class", "class_name", "source", "is_default", "image_count"]
        read_only_fields = ["is_default", "image_count"]


class SubClassBriefSerializer(serializers.ModelSerializer[SubClass]):
    class Meta:
        model = SubClass
        fields = ["id", "name", "source", "is_default", "image_count"]


class LabelClassSerializer(serializers.ModelSerializer[LabelClass]):
    subclasses = SubClassBriefSerializer(many=True, read_only=True)
    image_count = serializers.SerializerMethodField()

    class Meta:
        model = LabelClass
        fields = ["id", "name", "kind", "description", "image_count", "subclasses", "created_at"]

    def get_image_count(self, obj: LabelClass) -> int:
        return sum(s.image_count for s in obj.subclasses.all())


class ImageSerializer(serializers.ModelSerializer[Image]):
    subclass_name = serializers.CharField(source="subclass.name", read_only=True, default=None)
    class_id = serializers.IntegerField(
        source="subclass.label_class_id", read_only=True, default=None
    )
    class_name = serializers.CharField(
        source="subclass.label_class.name", read_only=True, default=None
    )
    # The stubs read this as overriding Field.source; the serializer metaclass takes
    # declared fields off the class, so there is no clash at run time.
    source = serializers.CharField(  # type: ignore[assignment]
        source="subclass.source", read_only=True, default=None
    )
    labelled_by = serializers.CharField(source="labelled_by.username", read_only=True, default=None)
    bad_reason = serializers.SerializerMethodField()
    file_url = serializers.SerializerMethodField(help_text="the original, as stored")
    display_url = serializers.SerializerMethodField(
        help_text="what a browser can show: the original, or a JPEG rendition of a TIFF "
        "(null until the worker has made it)"
    )
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "sha256",
            "format",
            "content_type",
            "width",
            "height",
            "file_size",
            "original_filename",
            "status",
            "trashed_reason",
            "trashed_at",
            "version",
            "subclass",
            "subclass_name",
            "class_id",
            "class_name",
            "source",
            "labelled_by",
            "labelled_at",
            "import_batch",
            "created_at",
            "bad_reason",
            "file_url",
            "display_url",
            "thumbnail_url",
        ]
        read_only_fields = fields

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_bad_reason(self, obj: Image) -> str | None:
        """The SME's bad-image verdict, if any (the image stays in the library)."""
        verdict = getattr(obj, "bad_verdict", None)
        return verdict.reason if verdict else None

    def get_file_url(self, obj: Image) -> str:
        return self._absolute(reverse("api:image-file", args=[obj.pk]))

    def get_display_url(self, obj: Image) -> str | None:
        if needs_rendition(obj.extension) and not obj.thumbnail_ready:
            return None
        return self._absolute(reverse("api:image-display", args=[obj.pk]))

    def get_thumbnail_url(self, obj: Image) -> str | None:
        if not obj.thumbnail_ready:
            return None
        return self._absolute(reverse("api:image-thumbnail", args=[obj.pk]))


class ImageUploadSerializer(serializers.Serializer[Any]):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        allow_empty=False,
        help_text="one or more image files (also accepted under the name 'file')",
    )
    subclass = serializers.PrimaryKeyRelatedField(
        queryset=SubClass.objects.select_related("label_class"), required=False, allow_null=True
    )
    label_class = serializers.PrimaryKeyRelatedField(
        queryset=LabelClass.objects.all(),
        required=False,
        allow_null=True,
        help_text="class id: files go to its default sub-class",
    )
    batch = serializers.IntegerField(
        required=False,
        help_text="add these files to an earlier upload batch of yours (one report for an "
        "upload sent in several requests)",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        subclass = attrs.get("subclass")
        label_class = attrs.get("label_class")
        if subclass and label_class and subclass.label_class_id != label_class.pk:
            raise serializers.ValidationError(
                f"Sub-class {subclass.pk} does not belong to class {label_class.pk}."
            )
        if label_class and not subclass:
            attrs["subclass"] = SubClass.objects.get(label_class=label_class, is_default=True)
        return attrs


class ImageRelabelSerializer(serializers.Serializer[Any]):
    subclass = serializers.PrimaryKeyRelatedField(
        queryset=SubClass.objects.select_related("label_class"),
        allow_null=True,
        help_text="the new sub-class, or null to send the image back to the inbox",
    )
    version = serializers.IntegerField(
        min_value=1, help_text="the version you last saw; a newer one gives 409"
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)


class ImageTrashSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=500)
    version = serializers.IntegerField(min_value=1, required=False)


class ImageRestoreSerializer(serializers.Serializer[Any]):
    version = serializers.IntegerField(min_value=1, required=False)


class LabelEventSerializer(serializers.ModelSerializer[LabelEvent]):
    actor = serializers.CharField(source="actor.username", read_only=True, default=None)

    class Meta:
        model = LabelEvent
        fields = [
            "id",
            "actor",
            "reason",
            "note",
            "from_subclass",
            "to_subclass",
            "from_status",
            "to_status",
            "created_at",
        ]


class ImportItemSerializer(serializers.ModelSerializer[ImportItem]):
    class Meta:
        model = ImportItem
        fields = ["name", "outcome", "image", "reason"]


class ImportBatchSerializer(serializers.ModelSerializer[ImportBatch]):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    job_status = serializers.CharField(source="job.status", read_only=True, default=None)

    class Meta:
        model = ImportBatch
        fields = [
            "id",
            "kind",
            "name",
            "created_by",
            "created_at",
            "job",
            "job_status",
            "created_count",
            "duplicate_count",
            "rejected_count",
        ]


class ArchiveImportSerializer(serializers.Serializer[Any]):
    archive = serializers.FileField(help_text="a zip archive; folders map to class/sub-class")
    subclass = serializers.PrimaryKeyRelatedField(
        queryset=SubClass.objects.all(),
        required=False,
        allow_null=True,
        help_text="put every file here instead of following the archive's folders",
    )
    inbox = serializers.BooleanField(
        default=False, help_text="put every file in the inbox, ignoring folders"
    )
    # The stubs read this as overriding Field.source; the serializer metaclass takes
    # declared fields off the class, so there is no clash at run time.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=Source.choices, default=Source.REAL
    )

    def validate_archive(self, value: Any) -> Any:
        limit: int = settings.LOUPE_ZIP_MAX_BYTES
        if value.size > limit:
            raise serializers.ValidationError(
                f"The archive is {value.size:,} bytes; the limit is {limit:,}. Split it into "
                "smaller archives."
            )
        return value


class JobSerializer(serializers.ModelSerializer[Job]):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "done",
            "total",
            "percent",
            "message",
            "params",
            "result",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]


class LabelClassWriteSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    kind = serializers.ChoiceField(choices=ClassKind.choices, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class SubClassWriteSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    # The stubs read this as overriding Field.source; the serializer metaclass takes
    # declared fields off the class, so there is no clash at run time.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=Source.choices, required=False
    )
    label_class = serializers.PrimaryKeyRelatedField(
        queryset=LabelClass.objects.all(),
        required=False,
        help_text="moving a sub-class to another class merges it there",
    )


STATUS_CHOICES = ImageStatus.choices
