"""factory_boy factories and small image builders shared by the tests."""

from __future__ import annotations

import io
import random

import factory
from PIL import Image as PILImage

from accounts.models import Role, User
from curation.models import DEFAULT_SUBCLASS_NAME, LabelClass, Source, SubClass


def image_bytes(
    *, fmt: str = "JPEG", size: tuple[int, int] = (64, 48), seed: int | None = None
) -> bytes:
    """A small, valid image whose pixels differ per seed (so hashes differ)."""
    rng = random.Random(seed)
    image = PILImage.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    for _ in range(20):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        image.putpixel((x, y), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    role = Role.LABELLER
    password = factory.django.Password("pw")


class LabelClassFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LabelClass

    name = factory.Sequence(lambda n: f"Class {n}")

    @factory.post_generation
    def default_subclass(obj: LabelClass, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            SubClass.objects.get_or_create(
                label_class=obj, is_default=True,
                defaults={"name": DEFAULT_SUBCLASS_NAME, "source": Source.REAL},
            )


class SubClassFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SubClass

    label_class = factory.SubFactory(LabelClassFactory)
    name = factory.Sequence(lambda n: f"variant {n}")
    source = Source.REAL
