"""Preprocessing pixel by pixel: every layout, channel order and normalisation against the
formula the spec documents, ``(x * scale - mean) / std``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image as PILImage

from inference.preprocessing import PreprocessSpec, resize, to_array

NORMALISATIONS = [
    (1 / 255, (), ()),
    (1.0, (127.0,), (128.0,)),
    (1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    (1.0, (123.7, 116.3, 103.5), ()),
    (2.0, (), (4.0, 2.0, 1.0)),
]


def expected(image: PILImage.Image, spec: PreprocessSpec) -> np.ndarray:
    pixels = np.asarray(
        resize(image, size=spec.input_size, mode=spec.resize_mode), np.float64
    ).copy()
    if spec.channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    mean = np.asarray(spec.mean or (0.0,), np.float64)
    std = np.asarray(spec.std or (1.0,), np.float64)
    pixels = (pixels * spec.scale - mean) / std
    return pixels.transpose(2, 0, 1) if spec.layout == "NCHW" else pixels


@pytest.mark.parametrize(
    ("layout", "order", "mode", "normalisation"),
    list(
        itertools.product(
            ("NCHW", "NHWC"),
            ("RGB", "BGR"),
            ("letterbox", "stretch", "center_crop"),
            NORMALISATIONS,
        )
    ),
)
def test_each_sample_matches_the_documented_formula(
    layout: str, order: str, mode: str, normalisation: tuple[float, tuple, tuple]
) -> None:
    scale, mean, std = normalisation
    rng = np.random.default_rng(7)
    image = PILImage.fromarray(rng.integers(0, 256, (27, 45, 3), dtype=np.uint8))
    spec = PreprocessSpec(
        input_size=16,
        layout=layout,
        channel_order=order,
        scale=scale,
        mean=mean,
        std=std,
        resize_mode=mode,
    )
    sample = to_array(image, spec)
    assert sample.dtype == np.float32
    assert sample.flags.c_contiguous
    assert sample.shape == ((3, 16, 16) if layout == "NCHW" else (16, 16, 3))
    np.testing.assert_allclose(sample, expected(image, spec), rtol=1e-5, atol=1e-5)
