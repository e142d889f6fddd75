from __future__ import annotations

from typing import Any

from rest_framework import serializers

from inference.models import ModelVersion, OutputKind, ResizeMode


class ModelVersionSerializer(serializers.ModelSerializer[ModelVersion]):
    uploaded_by = serializers.CharField(source="uploaded_by.username", read_only=True, default=None)
    class_count = serializers.IntegerField(read_only=True)
    unmatched_labels = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "number",
            "name",
            "is_active",
            "class_count",
            "sha256",
            "file_size",
            "input_size",
            "layout",
            "channel_order",
            "scale",
            "mean",
            "std",
            "resize_mode",
            "output_kind",
            "input_name",
            "output_name",
            "embedding_output",
            "notes",
            "uploaded_by",
            "created_at",
            "activated_at",
            "unmatched_labels",
        ]
        read_only_fields = fields

    def get_unmatched_labels(self, version: ModelVersion) -> list[str]:
        # Only on a single version: the list can hold thousands of names.
        if not self.context.get("detail"):
            return []
        return list(
            version.label_matches.filter(label_class__isnull=True).values_list("name", flat=True)
        )


class ModelUploadSerializer(serializers.Serializer[Any]):
    onnx = serializers.FileField(help_text="a self-contained .onnx file")
    labels = serializers.FileField(
        required=False, help_text="JSON list of class names in output order"
    )
    label_map = serializers.CharField(
        required=False, help_text="the same JSON list, as a form field instead of a file"
    )
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    input_size = serializers.IntegerField(min_value=8, max_value=2048, default=224)
    layout = serializers.ChoiceField(choices=["NCHW", "NHWC"], default="NCHW")
    channel_order = serializers.ChoiceField(choices=["RGB", "BGR"], default="RGB")
    scale = serializers.FloatField(default=1 / 255)
    mean = serializers.ListField(child=serializers.FloatField(), required=False, default=list)
    std = serializers.ListField(child=serializers.FloatField(), required=False, default=list)
    resize_mode = serializers.ChoiceField(choices=ResizeMode.choices, default="letterbox")
    output_kind = serializers.ChoiceField(choices=OutputKind.choices, default="logits")
    embedding_output = serializers.CharField(required=False, allow_blank=True, default="")
    activate = serializers.BooleanField(default=False)
    create_classes = serializers.BooleanField(default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("labels") and not attrs.get("label_map"):
            raise serializers.ValidationError(
                {"labels": "Send the label map as a JSON file (labels) or field (label_map)."}
            )
        return attrs


class ModelVersionUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    notes = serializers.CharField(required=False, allow_blank=True)


class PredictSerializer(serializers.Serializer[Any]):
    file = serializers.FileField()
    model_version = serializers.IntegerField(
        required=False, min_value=1, help_text="version number; default: the active version"
    )
    k = serializers.IntegerField(required=False, min_value=1, max_value=50, default=5)
