from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from inference.head import HEAD_OUTPUT, HeadError, compose, head_fit, head_onnx, l2_normalise
from tests.inference import onnx_models


def _clusters(n: int, dims: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw (unnormalised) non-negative embeddings around one centre per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims))
    labels = rng.integers(0, classes, n)
    features = np.abs(centres[labels] + rng.normal(size=(n, dims)) * 2.0)
    return features.astype(np.float32), labels


def _session(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("classes", [2, 7])
def test_the_head_only_onnx_gives_scikit_learns_probabilities(classes: int) -> None:
    raw, labels = _clusters(300, 64, classes)
    head, pipeline = head_fit(features=l2_normalise(raw), labels=labels, class_count=classes, C=0.5)
    fresh = np.abs(np.random.default_rng(9).normal(size=(50, 64))).astype(np.float32) * 3
    onnx_probabilities = _session(head_onnx(head)).run([HEAD_OUTPUT], {"embedding": fresh})[0]
    expected = pipeline.predict_proba(l2_normalise(fresh))
    assert onnx_probabilities.shape == (50, classes)
    np.testing.assert_allclose(onnx_probabilities, expected, atol=1e-4)
    np.testing.assert_allclose(head.probabilities(l2_normalise(fresh)), expected, atol=1e-6)


def test_a_class_without_training_images_is_never_predicted() -> None:
    raw, labels = _clusters(200, 16, 3)
    head, _ = head_fit(features=l2_normalise(raw), labels=labels, class_count=5)
    probabilities = head.probabilities(l2_normalise(raw))
    assert probabilities.shape == (200, 5)
    assert probabilities[:, 3:].max() < 1e-12
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_a_head_needs_two_classes() -> None:
    raw, _ = _clusters(20, 8, 2)
    with pytest.raises(HeadError, match="two classes"):
        head_fit(features=raw, labels=np.zeros(20, np.int64), class_count=2)


def test_the_composed_model_keeps_the_embedding_and_drops_the_old_classifier() -> None:
    base = onnx_models.to_bytes(onnx_models.linear(classes=4))  # embedding is 3-d here
    raw, labels = _clusters(120, 3, 3)
    head, pipeline = head_fit(features=l2_normalise(raw), labels=labels, class_count=3)
    composed = compose(embedding_model=base, embedding_output="embedding", head=head)
    model = onnx.load_model_from_string(composed)
    assert [o.name for o in model.graph.output] == [HEAD_OUTPUT, "embedding"]
    assert "logits" not in {name for node in model.graph.node for name in node.output}
    images = np.random.default_rng(3).uniform(0, 1, size=(6, 3, 8, 8)).astype(np.float32)
    embedding = _session(base).run(["embedding"], {"image": images})[0]
    probabilities, embedding_again = _session(composed).run(None, {"image": images})
    np.testing.assert_array_equal(embedding_again, embedding)
    np.testing.assert_allclose(
        probabilities, pipeline.predict_proba(l2_normalise(embedding)), atol=1e-4
    )


def test_composing_refuses_an_embedding_of_another_size() -> None:
    base = onnx_models.to_bytes(onnx_models.linear(classes=4))
    raw, labels = _clusters(60, 5, 2)
    head, _ = head_fit(features=l2_normalise(raw), labels=labels, class_count=2)
    with pytest.raises(HeadError, match="expects"):
        compose(embedding_model=base, embedding_output="embedding", head=head)
