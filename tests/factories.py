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
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Class {n}")

    @factory.post_generation
    def default_subclass(
        obj: LabelClass, create: bool, extracted: object, **kwargs: object
    ) -> None:
        if create:
            SubClass.objects.get_or_create(
                label_class=obj,
                is_default=True,
                defaults={"name": DEFAULT_SUBCLASS_NAME, "source": Source.REAL},
            )


class SubClassFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SubClass

    label_class = factory.SubFactory(LabelClassFactory)
    name = factory.Sequence(lambda n: f"variant {n}")
    source = Source.REAL


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels: the shape of a decompression
    bomb, without the memory cost of a real one."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    pixels = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def jpeg_with_orientation(
    orientation: int, *, size: tuple[int, int] = (64, 48), seed: int = 0
) -> bytes:
    """A JPEG carrying an EXIF orientation tag (and a camera model, so metadata is visible)."""
    rng = random.Random(seed)
    image = PILImage.new("RGB", size, (rng.randrange(256), 10, 10))
    exif = PILImage.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x0110] = "Secret Camera 3000"  # Model
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def zip_bytes(entries: dict[str, bytes] | list[tuple[str, bytes]], **zip_kwargs: object) -> bytes:
    """A zip archive holding ``entries`` (name → bytes), deflated."""
    import zipfile

    items = entries.items() if isinstance(entries, dict) else entries
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, **zip_kwargs) as archive:
        for name, data in items:
            archive.writestr(name, data)
    return out.getvalue()
