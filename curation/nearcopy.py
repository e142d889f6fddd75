"""Copy detection: the probe hashes that bring edited copies within pHash range, and the
verification that decides whether two candidate images are copies of one another.

Near-duplicate search runs in two stages. The first finds candidates cheaply: pairs whose
pHashes or dHashes are within a few bits, and pairs where one image's *probe hash* is within
a few bits of the other's pHash. A probe hash is the pHash of the image rotated by 4° either
way, or cropped by 5% at one corner or around the centre: pHash compares the layout of the
whole frame, so a 5° rotation of a photograph moves it 16 bits on median and an 8% crop 10
to 20, out of reach of any threshold that leaves distinct photographs apart, while the probe
that undoes most of the edit lands within 8 bits.

The second stage verifies each candidate pair with local features: ORB keypoints matched
between the two images and a RANSAC fit of one similarity transform (rotation, scale, shift)
to the matches. A copy has dozens to hundreds of matches that agree on a transform close to
the identity and spread over the frame; two different photographs of one subject, two tiles
of one texture, or two photographs carrying the same small watermark do not. Images with too
few keypoints for that (flat skies, small drawings, blank frames, scanned pages) are the
ones whose hashes chain, and so are images that are mostly plain background (drawings on
paper, skies, pages), whose few keypoints agree between different drawings of one kind. For
them a candidate must be within ``LOW_INFORMATION_BITS`` of pHash and their grey pixels,
aligned by the keypoints where they allow it, must correlate at
``LOW_INFORMATION_CORRELATION`` or more: a much tighter test than the hashes alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fftpack
from PIL import Image as PILImage

PROBE_SIDE = 64
PROBE_ROTATIONS = (-4.0, 4.0)
PROBE_CROP = 0.05
PROBE_COUNT = len(PROBE_ROTATIONS) + 5

# Both images of a pair are scaled so their longer side has this many pixels before
# keypoints are found, so an image and its half- or double-size copy look alike.
VERIFY_SIDE = 256
MAX_KEYPOINTS = 500
MIN_KEYPOINTS = 60  # fewer on either side: the pair is judged as low-information
MIN_MATCHES = 15
# Between low-information images (fewer than MIN_KEYPOINTS on a side), fewer matches count
# when they are a large share of the keypoints there are.
MIN_MATCHES_FEW = 8
MIN_MATCHED_SHARE_FEW = 0.4
# The matched keypoints must span this share of each image's width and of its height: a
# logo, caption band or watermark two different photographs share matches well but spans
# a corner or a strip.
MIN_MATCHED_EXTENT = 0.25
MAX_ROTATION_DEGREES = 10.0
SCALE_RANGE = (0.75, 1.33)
# Low-information images: fewer than MIN_KEYPOINTS keypoints, or this share of the image
# or more background (within BACKGROUND_LEVELS grey levels of the median). Such a pair
# must be within LOW_INFORMATION_BITS of pHash and its pixels, aligned, must correlate at
# LOW_INFORMATION_CORRELATION or more: different handwritten digits of one kind correlate
# up to 0.977, a re-encoded or resized copy above 0.99.
LOW_INFORMATION_BACKGROUND = 0.6
# ... unless the rest is textured enough for this many keypoints (a star field, a brick wall;
# drawings of digits have up to 280, printed ones mostly under 370).
TEXTURED_KEYPOINTS = 400
BACKGROUND_LEVELS = 10
LOW_INFORMATION_BITS = 4
LOW_INFORMATION_CORRELATION = 0.985
# ... or, with MIN_KEYPOINTS or more on each side, this share of them must agree on one
# geometry (two handwritten digits of one kind: up to 0.30 of 60 to 280 keypoints).
LOW_INFORMATION_SHARE = 0.35
SMALL_SIDE = 64


def phash_values(images: list[PILImage.Image]) -> list[int]:
    """``imagehash.phash`` of each grey image (mode ``L``) as an unsigned 64-bit integer,
    first bit most significant, with the same values bit for bit: each image is resized to
    32x32 the way imagehash does it, and the DCTs and medians run over the whole stack at once
    instead of image by image."""
    if not images:
        return []
    stack = np.stack(
        [np.asarray(image.resize((32, 32), PILImage.Resampling.LANCZOS)) for image in images]
    )
    # imagehash: dct(dct(pixels, axis=0), axis=1)[:8, :8]. The second transform runs along
    # rows, so the first 8 rows of the first are all the corner needs.
    columns = scipy.fftpack.dct(stack, axis=1)[:, :8, :]
    corner = scipy.fftpack.dct(columns, axis=2)[:, :, :8].reshape(len(images), 64)
    bits = corner > np.median(corner, axis=1, keepdims=True)
    packed = np.packbits(bits, axis=1)
    return [int.from_bytes(row.tobytes(), "big") for row in packed]


def probe_images(grey: PILImage.Image) -> list[PILImage.Image]:
    """The images the probe hashes are the pHashes of: ``grey`` (mode ``L``) scaled to
    ``PROBE_SIDE``, rotated by each of ``PROBE_ROTATIONS``, then cropped by ``PROBE_CROP`` at
    each corner and around the centre."""
    small = grey.resize((PROBE_SIDE, PROBE_SIDE), PILImage.Resampling.BILINEAR)
    probes = [
        small.rotate(angle, resample=PILImage.Resampling.BILINEAR) for angle in PROBE_ROTATIONS
    ]
    cut = round(PROBE_SIDE * PROBE_CROP)
    far = PROBE_SIDE - cut
    half = cut // 2
    boxes = [
        (0, 0, far, far),
        (cut, 0, PROBE_SIDE, far),
        (0, cut, far, PROBE_SIDE),
        (cut, cut, PROBE_SIDE, PROBE_SIDE),
        (half, half, PROBE_SIDE - half, PROBE_SIDE - half),
    ]
    probes.extend(small.crop(box) for box in boxes)
    return probes


def probe_hashes(grey: PILImage.Image) -> list[int]:
    """The probe hashes of a grey image (mode ``L``), unsigned (see ``probe_images``)."""
    return phash_values(probe_images(grey))


def pack_probes(probes: list[int]) -> bytes:
    return b"".join(value.to_bytes(8, "big") for value in probes)


def unpack_probes(packed: bytes | memoryview) -> npt.NDArray[np.uint64]:
    return np.frombuffer(bytes(packed), dtype=">u8").astype(np.uint64)


@dataclass(frozen=True)
class CopyFeatures:
    """What verification compares: ORB keypoints (positions on the image scaled to
    ``VERIFY_SIDE``, and their binary descriptors), the grey image at ``SMALL_SIDE`` for
    the photometric check, and whether the image carries little information."""

    points: npt.NDArray[np.float32]
    descriptors: npt.NDArray[np.uint8] | None
    size: tuple[int, int]
    small: npt.NDArray[np.float32]
    # Share of the small image within a few grey levels of its median: the plain paper
    # around a drawing, the sky, the blank page.
    background: float

    @property
    def keypoints(self) -> int:
        return len(self.points)

    @property
    def low_information(self) -> bool:
        mostly_background = (
            self.background >= LOW_INFORMATION_BACKGROUND and self.keypoints < TEXTURED_KEYPOINTS
        )
        return self.keypoints < MIN_KEYPOINTS or mostly_background


def _resized(grey: PILImage.Image, side: int) -> PILImage.Image:
    scale = side / max(grey.size)
    return grey.resize(
        (max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
        PILImage.Resampling.BILINEAR,
    )


def copy_features(image: PILImage.Image) -> CopyFeatures:
    import cv2

    grey = _resized(image.convert("L"), VERIFY_SIDE)
    orb = cv2.ORB.create(nfeatures=MAX_KEYPOINTS, edgeThreshold=15, patchSize=15, fastThreshold=10)
    keypoints, descriptors = orb.detectAndCompute(np.asarray(grey), None)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    small = np.asarray(_resized(grey, SMALL_SIDE), dtype=np.float32)
    background = float((np.abs(small - np.median(small)) <= BACKGROUND_LEVELS).mean())
    return CopyFeatures(
        points=points,
        descriptors=(
            np.asarray(descriptors, dtype=np.uint8)
            if descriptors is not None and len(points)
            else None
        ),
        size=(grey.width, grey.height),
        small=small,
        background=background,
    )


@dataclass(frozen=True)
class Verdict:
    is_copy: bool
    # Keypoint matches that agree on one transform; None when none was found.
    matches: int | None
    evidence: str


@dataclass(frozen=True)
class _Geometry:
    matches: int
    transform: npt.NDArray[np.float64]  # 2 x 3, from ``a``'s VERIFY_SIDE frame to ``b``'s

    def describe(self) -> str:
        scale = float(np.hypot(self.transform[0, 0], self.transform[1, 0]))
        rotation = float(np.degrees(np.arctan2(self.transform[1, 0], self.transform[0, 0])))
        return (
            f"{self.matches} local features agree on one geometry "
            f"(scale {scale:.2f}, rotation {rotation:+.1f}°)"
        )


def _geometry(a: CopyFeatures, b: CopyFeatures) -> _Geometry | None:
    """The plausible similarity transform most of ``a``'s matched keypoints agree on, with
    how many agree; None when there is none."""
    import cv2

    if a.descriptors is None or b.descriptors is None or a.keypoints < 3 or b.keypoints < 3:
        return None
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(a.descriptors, b.descriptors, k=2)
    # Lowe's ratio test: a match counts only when clearly better than the second best.
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < MIN_MATCHES_FEW:
        return None
    source = a.points[[m.queryIdx for m in good]]
    target = b.points[[m.trainIdx for m in good]]
    transform, inliers = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=4.0
    )
    if transform is None or inliers is None:
        return None
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    rotation = float(np.degrees(np.arctan2(transform[1, 0], transform[0, 0])))
    if not (SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]) or abs(rotation) > MAX_ROTATION_DEGREES:
        return None
    kept = inliers.ravel().astype(bool)
    matches = int(kept.sum())
    # Most of the keypoints there are matched: the whole image agrees, however small it is.
    if matches < MIN_MATCHED_SHARE_FEW * min(a.keypoints, b.keypoints):
        for points, (width, height) in ((source[kept], a.size), (target[kept], b.size)):
            extent = np.ptp(points, axis=0)
            if extent[0] < MIN_MATCHED_EXTENT * width or extent[1] < MIN_MATCHED_EXTENT * height:
                return None
    return _Geometry(matches, np.asarray(transform, dtype=np.float64))


def _aligned_correlation(
    a: CopyFeatures, b: CopyFeatures, transform: npt.NDArray[np.float64] | None
) -> float | None:
    """Correlation of ``a``'s small grey image with ``b``'s brought into ``a``'s frame by
    ``transform`` (or as they are), over the inner part both cover; None when either is
    flat there."""
    import cv2

    height, width = a.small.shape
    if transform is None:
        if a.small.shape != b.small.shape:
            return None
        warped = b.small
    else:
        # ``transform`` maps a's VERIFY_SIDE frame to b's; bring it to the small frames.
        scale_a = width / a.size[0]
        scale_b = b.small.shape[1] / b.size[0]
        small = transform.copy()
        small[:, :2] *= scale_b / scale_a
        small[:, 2] *= scale_b
        warped = np.asarray(
            cv2.warpAffine(
                b.small,
                small,
                (width, height),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderValue=-1.0,
            ),
            dtype=np.float32,
        )
    inner = np.zeros((height, width), dtype=bool)
    inner[height // 8 : height - height // 8, width // 8 : width - width // 8] = True
    mask = inner & (warped >= 0)
    x, y = a.small[mask], warped[mask]
    if len(x) < 16 or x.std() < 1.0 or y.std() < 1.0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def verify_copy(a: CopyFeatures, b: CopyFeatures, *, hash_bits: int) -> Verdict:
    """Whether ``a`` and ``b`` are copies of one image; ``hash_bits`` is the pair's
    smallest pHash distance (the pHashes, or a probe hash against a pHash)."""
    geometry = _geometry(a, b)
    if not (a.low_information or b.low_information):
        if geometry is not None and geometry.matches >= MIN_MATCHES:
            return Verdict(True, geometry.matches, geometry.describe())
        matches = geometry.matches if geometry is not None else 0
        return Verdict(False, matches, f"only {matches} local features agree")
    # Low information: drawings of one kind, skies and blank pages agree on their few
    # keypoints and their hashes without being copies. Where both have keypoints enough,
    # most of them agreeing counts; otherwise only near-identical pixels do.
    fewest = min(a.keypoints, b.keypoints)
    if (
        geometry is not None
        and fewest >= MIN_KEYPOINTS
        and geometry.matches >= max(MIN_MATCHES, LOW_INFORMATION_SHARE * fewest)
    ):
        return Verdict(True, geometry.matches, f"{geometry.describe()}, of {fewest} keypoints")
    correlation = _aligned_correlation(a, b, geometry.transform if geometry else None)
    same = (
        hash_bits <= LOW_INFORMATION_BITS
        and correlation is not None
        and correlation >= LOW_INFORMATION_CORRELATION
    )
    aligned = "aligned by their keypoints" if geometry else "as they are"
    described = "flat" if correlation is None else f"{correlation:.3f}"
    return Verdict(
        same,
        geometry.matches if geometry else None,
        f"low-information images: pHash {hash_bits} bits, pixels {aligned} correlate {described}",
    )
