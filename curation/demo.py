"""The demo library: built only from data that ships inside installed packages.

- scikit-learn's handwritten digits (1,797 scans of 43 writers, 8x8 pixels, ink 0..16) become
  ten classes "Digit 0" … "Digit 9", upscaled to 128x128 with dark ink on white paper;
- each digit class gets a ``staged`` sub-class of printed digits rendered with Pillow's bundled
  font (size, rotation, offset and stroke vary);
- about one digit in ten waits in the inbox, unlabelled;
- a holding class "Unknown" keeps ambiguous digits (two writers' digits blended, faded ink);
- scikit-image's bundled sample photos go to "Not a digit", each with near-duplicates
  (re-encoded at low JPEG quality, resized, cropped, brightened), some of which wait in the
  inbox, so duplicate review has work to do.

Everything is generated from fixed seeds, so the files and their hashes are the same on every
run and a second run finds every image already stored and creates nothing.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageEnhance, ImageFilter, ImageFont

from accounts.models import User
from curation.models import (
    ClassKind,
    Image,
    ImageStatus,
    ImportKind,
    ImportOutcome,
    LabelClass,
    Source,
)
from curation.services.images import (
    Pending,
    file_inspect,
    images_record,
    import_batch_create,
    inspection_store,
)
from curation.services.imports import SubclassCache, folder_parts
from curation.services.processing import chunked, thumbnails_make
from curation.services.taxonomy import class_create

T = TypeVar("T")

SEED = 20240611
DIGIT_CLASS = "Digit {}"
UNKNOWN_CLASS = "Unknown"
NOT_A_DIGIT_CLASS = "Not a digit"
STAGED_SUBCLASS = "staged"
CANVAS = 128
INBOX_SHARE = 0.1
RECORD_CHUNK = 200

# scikit-image samples that ship inside the wheel (the others need pooch and a download).
SAMPLE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)

CLASS_DESCRIPTIONS = {
    DIGIT_CLASS: (
        "Handwritten {digit}s from scikit-learn's digits data (UCI, 43 writers), upscaled from "
        "8x8 scans; the 'staged' sub-class holds printed {digit}s."
    ),
    UNKNOWN_CLASS: "Digits nobody can read with confidence: kept, never exported for training.",
    NOT_A_DIGIT_CLASS: "Photos from scikit-image's samples: anything that is not a digit.",
}


@dataclass(frozen=True)
class DemoFile:
    """One generated file: ``path`` is ``<class>/<file>``, ``<class>/<sub-class>/<file>`` or a
    bare file name for the inbox, as in an imported folder tree."""

    path: str
    data: bytes
    source: str = Source.REAL

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class DemoSummary:
    files: int = 0
    created: int = 0
    already_stored: int = 0
    rejected: int = 0
    classes_created: int = 0
    thumbnails_made: int = 0
    batch: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    rejections: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "created": self.created,
            "already_stored": self.already_stored,
            "rejected": self.rejected,
            "classes_created": self.classes_created,
            "thumbnails_made": self.thumbnails_made,
            "batch": self.batch,
            "seconds": self.seconds,
            "rejections": self.rejections,
        }


# --- Rendering ------------------------------------------------------------------------------


def _png(image: PILImage.Image) -> bytes:
    out = io.BytesIO()
    # Default compression: "optimize" makes files ~10% smaller at five times the time.
    image.save(out, format="PNG")
    return out.getvalue()


def _jpeg(image: PILImage.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def handwriting(ink: np.ndarray) -> PILImage.Image:
    """An 8x8 scan (ink 0..16) as a 128x128 greyscale image: dark ink on white paper.

    Bicubic upscaling turns the 4x4-pixel blocks of the scan into smooth strokes; a gentle
    S-curve then darkens the ink and whitens the paper the way a pen on paper looks, instead
    of the grey haze that plain interpolation leaves.
    """
    inner = CANVAS * 3 // 4
    scan = PILImage.fromarray((np.clip(ink, 0, 16) / 16.0 * 255).astype(np.uint8), "L")
    strokes = np.asarray(scan.resize((inner, inner), PILImage.Resampling.BICUBIC)) / 255.0

    def curve(x: np.ndarray | float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(np.asarray(x) - 0.5) * 8.0))

    low, high = curve(0.0), curve(1.0)
    strokes = (curve(strokes) - low) / (high - low)
    page = np.zeros((CANVAS, CANVAS))
    margin = (CANVAS - inner) // 2
    page[margin : margin + inner, margin : margin + inner] = strokes
    return PILImage.fromarray((255 - page * 255).clip(0, 255).round().astype(np.uint8), "L")


def printed_digit(digit: int, rng: np.random.Generator) -> PILImage.Image:
    """A printed digit as a phone photo of a label would show it: size, stroke, rotation,
    offset, paper tone and focus vary."""
    size = int(rng.integers(56, 100))
    stroke = int(rng.integers(0, 4))
    paper = int(rng.integers(215, 256))
    ink = int(rng.integers(0, 60))
    font = ImageFont.load_default(size=size)
    image = PILImage.new("L", (CANVAS, CANVAS), paper)
    draw = ImageDraw.Draw(image)
    dx, dy = (int(v) for v in rng.integers(-14, 15, size=2))
    draw.text(
        (CANVAS // 2 + dx, CANVAS // 2 + dy),
        str(digit),
        font=font,
        fill=ink,
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=ink,
    )
    angle = float(rng.uniform(-18, 18))
    image = image.rotate(angle, resample=PILImage.Resampling.BICUBIC, fillcolor=paper)
    blur = float(rng.uniform(0, 1.2))
    if blur > 0.3:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    return image


def _sample_photo(name: str) -> PILImage.Image | None:
    """A scikit-image sample as RGB or greyscale, or None where this installation lacks it
    (never downloads: samples outside the wheel raise before any network access without
    pooch, and are skipped)."""
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None:
        return None
    try:
        pixels = np.asarray(loader())
    except Exception:  # missing file, pooch absent or offline: this sample is simply left out
        return None
    if pixels.dtype != np.uint8:
        return None
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    mode = "L" if pixels.ndim == 2 else "RGB"
    return PILImage.fromarray(pixels, mode)


def photo_variants(photo: PILImage.Image) -> dict[str, bytes]:
    """The photo and four near-duplicates of it, the kinds a real library collects."""
    width, height = photo.size
    crop_w, crop_h = int(width * 0.9), int(height * 0.9)
    left, top = (width - crop_w) // 2, (height - crop_h) // 3
    return {
        "": _jpeg(photo, 92),
        "-recompressed": _jpeg(photo, 25),
        "-small": _jpeg(photo.resize((width // 2, height // 2), PILImage.Resampling.LANCZOS), 88),
        "-cropped": _jpeg(photo.crop((left, top, left + crop_w, top + crop_h)), 92),
        "-brighter": _jpeg(ImageEnhance.Brightness(photo).enhance(1.12), 92),
    }


# Near-duplicates that arrive again later, unlabelled: the inbox is where a labeller meets them.
_INBOX_VARIANTS = {"-recompressed", "-brighter"}


def _ambiguous(
    images: np.ndarray, targets: np.ndarray, rng: np.random.Generator, n: int
) -> Iterator[tuple[str, PILImage.Image]]:
    """Digits nobody should label with confidence: two writers' digits blended, or ink so
    faded and smudged that the shape is a guess."""
    by_digit = {d: np.flatnonzero(targets == d) for d in range(10)}
    pairs = [(1, 7), (3, 8), (4, 9), (5, 6), (3, 5), (0, 6), (2, 7), (8, 9)]
    for k in range(n):
        if k % 3 == 2:
            index = int(rng.choice(by_digit[int(rng.integers(0, 10))]))
            faded = images[index] * 0.45 + rng.uniform(0, 3, size=(8, 8))
            image = handwriting(faded).filter(ImageFilter.GaussianBlur(2.5))
            yield f"unknown-{k:02d}-faded.png", image
        else:
            a, b = pairs[k % len(pairs)]
            ia = int(rng.choice(by_digit[a]))
            ib = int(rng.choice(by_digit[b]))
            yield f"unknown-{k:02d}-{a}or{b}.png", handwriting((images[ia] + images[ib]) / 2.0)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images nx8x8, targets n).

    Read straight from the CSV inside the scikit-learn wheel, which spares the two seconds that
    importing scikit-learn costs; ``sklearn.datasets.load_digits`` is the fallback.
    """
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location, "datasets", "data", "digits.csv.gz")
        if path.is_file():
            with gzip.open(path, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",")
            return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(int)
    from sklearn.datasets import load_digits as sklearn_load_digits

    digits = sklearn_load_digits()
    return digits.images, digits.target


def demo_files(*, small: bool = False) -> Iterator[DemoFile]:
    """Every file of the demo library, in a fixed order. ``small`` keeps a subset (about 200
    files) for tests and quick looks."""
    images, targets = load_digits()
    rng = np.random.default_rng(SEED)
    to_inbox = rng.random(len(images)) < INBOX_SHARE
    per_digit_limit = 15 if small else None
    kept: dict[int, int] = {}
    for index, (ink, target) in enumerate(zip(images, targets, strict=True)):
        digit = int(target)
        if per_digit_limit is not None:
            if kept.get(digit, 0) >= per_digit_limit:
                continue
            kept[digit] = kept.get(digit, 0) + 1
        name = f"digit-{index:04d}.png"
        path = name if to_inbox[index] else f"{DIGIT_CLASS.format(digit)}/{name}"
        yield DemoFile(path, _png(handwriting(ink)))

    printed_rng = np.random.default_rng(SEED + 1)
    for digit in range(10):
        for k in range(2 if small else 12):
            image = printed_digit(digit, printed_rng)
            path = f"{DIGIT_CLASS.format(digit)}/{STAGED_SUBCLASS}/printed-{digit}-{k:02d}.png"
            yield DemoFile(path, _png(image), Source.STAGED)

    unknown_rng = np.random.default_rng(SEED + 2)
    for name, image in _ambiguous(images, targets, unknown_rng, 3 if small else 12):
        yield DemoFile(f"{UNKNOWN_CLASS}/{name}", _png(image))

    for photo_name in SAMPLE_PHOTOS[: 3 if small else None]:
        photo = _sample_photo(photo_name)
        if photo is None:
            continue
        for suffix, data in photo_variants(photo).items():
            name = f"photo-{photo_name}{suffix}.jpg"
            path = name if suffix in _INBOX_VARIANTS else f"{NOT_A_DIGIT_CLASS}/{name}"
            yield DemoFile(path, data)


# --- Building -------------------------------------------------------------------------------


def _ensure_classes(*, actor: User | None) -> int:
    """Create the demo's classes with their descriptions (and "Unknown" as a holding class)
    where no class of that name exists; a class the user made or renamed is left alone."""
    wanted = [
        (DIGIT_CLASS.format(d), ClassKind.NORMAL, CLASS_DESCRIPTIONS[DIGIT_CLASS].format(digit=d))
        for d in range(10)
    ]
    wanted.append((UNKNOWN_CLASS, ClassKind.HOLDING, CLASS_DESCRIPTIONS[UNKNOWN_CLASS]))
    wanted.append((NOT_A_DIGIT_CLASS, ClassKind.NORMAL, CLASS_DESCRIPTIONS[NOT_A_DIGIT_CLASS]))
    created = 0
    for name, kind, description in wanted:
        if not LabelClass.objects.filter(name__iexact=name).exists():
            class_create(name=name, kind=kind, description=description, actor=actor)
            created += 1
    return created


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _stored_hashes(hashes: list[str]) -> set[str]:
    stored: set[str] = set()
    for chunk in _chunks(hashes, 500):
        stored.update(Image.objects.filter(sha256__in=chunk).values_list("sha256", flat=True))
    return stored


def demo_build(
    *,
    actor: User | None = None,
    small: bool = False,
    make_thumbnails: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> DemoSummary:
    """Import the demo library through the ordinary import service, so every image has its
    row, label event and sub-class count like any other import.

    Images already stored (same bytes) are skipped before anything is written: a second run
    creates no import batch, no class and no image. The new images' processing is queued for
    the worker after their rows commit.
    """
    summary = DemoSummary()
    started = time.monotonic()
    files = list(demo_files(small=small))
    summary.files = len(files)
    summary.seconds["generate"] = round(time.monotonic() - started, 2)

    stored = _stored_hashes([f.sha256 for f in files])
    missing = [f for f in files if f.sha256 not in stored]
    summary.already_stored = len(files) - len(missing)
    if not missing:
        return summary

    t0 = time.monotonic()
    summary.classes_created = _ensure_classes(actor=actor)
    batch = import_batch_create(kind=ImportKind.FOLDER, name="demo library", actor=actor)
    summary.batch = batch.pk
    caches: dict[str, SubclassCache] = {
        Source.REAL: SubclassCache(source=Source.REAL, actor=actor),
        Source.STAGED: SubclassCache(source=Source.STAGED, actor=actor),
    }
    created_ids: list[int] = []
    done = 0
    for chunk in _chunks(missing, RECORD_CHUNK):
        pending = []
        for demo_file in chunk:
            class_name, subclass_name = folder_parts(demo_file.path)
            subclass = (
                caches[demo_file.source].get(class_name, subclass_name) if class_name else None
            )
            inspection = file_inspect(data=demo_file.data, name=demo_file.path)
            # The original is stored before its row is recorded, as every import does.
            inspection_store(inspection=inspection, content=io.BytesIO(demo_file.data))
            pending.append(Pending(inspection, subclass))
        for result in images_record(pending=pending, actor=actor, batch=batch):
            if result.outcome == ImportOutcome.CREATED and result.image is not None:
                created_ids.append(result.image.pk)
            elif result.outcome == ImportOutcome.REJECTED:
                summary.rejections.append({"name": result.name, "reason": result.reason})
        done += len(chunk)
        if progress is not None:
            progress("import", done, len(missing))
    summary.created = len(created_ids)
    summary.rejected = len(summary.rejections)
    summary.seconds["import"] = round(time.monotonic() - t0, 2)

    if make_thumbnails:
        # The worker would make these too; making them here means the first page a `make run`
        # user opens already shows pictures. The worker skips what is done.
        t0 = time.monotonic()
        for done, ids in enumerate(chunked(created_ids, 200), start=1):
            summary.thumbnails_made += thumbnails_make(image_ids=ids)
            if progress is not None:
                progress("thumbnails", min(done * 200, len(created_ids)), len(created_ids))
        summary.seconds["thumbnails"] = round(time.monotonic() - t0, 2)

    # Queue the rest of each image's processing (and any thumbnail that failed above) for the
    # worker, after the rows commit.
    from curation.tasks import enqueue_processing

    enqueue_processing(created_ids)
    summary.seconds["total"] = round(time.monotonic() - started, 2)
    return summary


# --- Stages the apps above the library add ---------------------------------------------------


@dataclass(frozen=True)
class DemoOptions:
    """What ``manage.py demo`` asked for, handed to every registered stage."""

    actor: User | None
    small: bool
    # --no-embeddings: leave the whole library's embeddings (similar images, OOD scores) to
    # the worker.
    embeddings: bool = True
    # --no-model: no backbone, dataset, trained model or suggestions.
    model: bool = True
    progress: Callable[[str, int, int], None] | None = None


class DemoError(Exception):
    """A stage cannot finish; the message says why (the command prints it)."""


# A stage returns its summary: "lines" to print and any figures for --json.
DemoStage = Callable[[DemoOptions], dict[str, object]]
_STAGES: dict[str, DemoStage] = {}


def demo_stage_register(name: str, stage: DemoStage) -> None:
    """Run ``stage`` after the demo library is imported (inference: the backbone, a dataset, a
    trained model and its suggestions). Registering a name again replaces it."""
    _STAGES[name] = stage


def demo_stages_run(*, options: DemoOptions) -> dict[str, dict[str, object]]:
    """Every registered stage, in the order registered; their summaries by name."""
    return {name: stage(options) for name, stage in _STAGES.items()}


def demo_overview() -> dict[str, object]:
    """What the demo classes hold now, for the command's summary."""
    from django.db.models import Sum

    rows = (
        LabelClass.objects.filter(
            name__in=[DIGIT_CLASS.format(d) for d in range(10)] + [UNKNOWN_CLASS, NOT_A_DIGIT_CLASS]
        )
        .annotate(images=Sum("subclasses__image_count"))
        .order_by("name")
        .values_list("name", "kind", "images")
    )
    inbox = Image.objects.filter(subclass__isnull=True, status=ImageStatus.ACTIVE).count()
    return {
        "classes": [{"name": n, "kind": k, "images": i or 0} for n, k, i in rows],
        "inbox": inbox,
    }
