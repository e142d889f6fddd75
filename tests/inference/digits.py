"""The demo's digits (a small subset) with the real EfficientNet-Lite0 backbone installed: the
library the end-to-end trainer and label-error tests run on."""

from __future__ import annotations

from curation.demo import DIGIT_CLASS, demo_build
from curation.models import Image, ImageStatus, LabelReason, SubClass
from curation.services.images import image_relabel
from inference import backbone
from inference.models import ModelVersion, OutputKind
from inference.services import model_version_register


def digits_with_backbone() -> ModelVersion:
    """About 135 labelled handwritten digits (13-15 per class), 20 printed ones, a few photos;
    returns the registered backbone (the embedding model)."""
    demo_build(small=True, make_thumbnails=False)
    return model_version_register(
        onnx_data=backbone.build_from_package(),
        labels=backbone.imagenet_labels(),
        name=backbone.NAME,
        actor=None,
        spec=backbone.SPEC,
        output_kind=OutputKind.LOGITS,
        embedding_output="embedding",
    ).version


def swap_labels(pairs: list[tuple[int, int]]) -> list[int]:
    """For each (digit, wrong digit): label the first handwritten image of ``digit`` as
    ``wrong digit``, the mistake an SME makes. Returns the swapped image ids."""
    swapped = []
    for digit, wrong in pairs:
        image = (
            Image.objects.filter(
                status=ImageStatus.ACTIVE,
                subclass__label_class__name=DIGIT_CLASS.format(digit),
                subclass__is_default=True,
            )
            .order_by("pk")
            .first()
        )
        assert image is not None
        target = SubClass.objects.get(label_class__name=DIGIT_CLASS.format(wrong), is_default=True)
        image_relabel(
            image_id=image.pk,
            subclass=target,
            actor=None,
            reason=LabelReason.LABELLING,
            expected_version=None,
        )
        swapped.append(image.pk)
    return swapped
