"""Model artifacts: both formats load and score as their weights say; bad ones are refused."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from ranking.models import ModelError, NumpyModel, format_of, load_model, logistic_regression
from ranking.schema import FINGERPRINT, NAMES, SchemaMismatch, check_schema, fingerprint
from tests.support.onnx_models import onnx_logistic_regression

RNG = np.random.default_rng(7)
X = RNG.normal(size=(64, len(NAMES))).astype(np.float32)
W = RNG.normal(size=len(NAMES)).astype(np.float32)


def expected(weights: np.ndarray, bias: float, x: np.ndarray = X) -> np.ndarray:
    scores: np.ndarray = 1.0 / (1.0 + np.exp(-(x @ weights + bias)))
    return scores


def test_numpy_logistic_regression_round_trips_and_scores_by_its_weights() -> None:
    data = logistic_regression(W, 0.3, NAMES).to_bytes()
    model = load_model(data, "numpy")
    assert model.features == NAMES
    np.testing.assert_allclose(model.score(X), expected(W, 0.3), rtol=1e-5)


def test_standardisation_is_applied_before_the_weights() -> None:
    mean = X.mean(axis=0)
    std = X.std(axis=0) + 0.5
    model = load_model(logistic_regression(W, 0.0, NAMES, mean=mean, std=std).to_bytes(), "numpy")
    np.testing.assert_allclose(model.score(X), expected(W, 0.0, (X - mean) / std), rtol=1e-5)


def test_a_small_mlp_scores_with_relu_between_layers() -> None:
    w0 = RNG.normal(size=(len(NAMES), 8)).astype(np.float32)
    b0 = RNG.normal(size=8).astype(np.float32)
    w1 = RNG.normal(size=(8, 1)).astype(np.float32)
    b1 = np.asarray([0.1], dtype=np.float32)
    model = NumpyModel("mlp", NAMES, [(w0, b0), (w1, b1)])
    loaded = load_model(model.to_bytes(), "numpy")
    hidden = np.maximum(X @ w0 + b0, 0)
    np.testing.assert_allclose(
        loaded.score(X), 1 / (1 + np.exp(-(hidden @ w1 + b1).ravel())), rtol=1e-4
    )


def test_onnx_models_score_like_the_same_numpy_model() -> None:
    numpy_model = load_model(logistic_regression(W, -0.2, NAMES).to_bytes(), "numpy")
    for probabilities in (False, True):
        onnx_model = load_model(
            onnx_logistic_regression(list(W), -0.2, NAMES, probabilities=probabilities), "onnx"
        )
        assert onnx_model.features == NAMES
        np.testing.assert_allclose(onnx_model.score(X), numpy_model.score(X), rtol=1e-4)


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"not a zip archive", "numpy", "not a readable .npz"),
        (b"\x08\x01garbage", "onnx", "onnxruntime cannot load"),
        (onnx_logistic_regression([1.0] * len(NAMES), 0.0, None), "onnx", "nova_features"),
        (b"", "pickle", "unknown model format"),
    ],
)
def test_unreadable_artifacts_are_refused_with_the_reason(
    data: bytes, fmt: str, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        load_model(data, fmt)


def test_inconsistent_numpy_models_are_refused() -> None:
    buffer = io.BytesIO()
    meta = json.dumps({"kind": "logreg", "features": list(NAMES)})
    np.savez(buffer, meta=np.array(meta), w=np.ones(3, dtype=np.float32), b=np.zeros(1))
    with pytest.raises(ModelError, match="do not follow an input of width"):
        load_model(buffer.getvalue(), "numpy")
    truncated = logistic_regression(W, 0.0, NAMES).to_bytes()[:-40]
    with pytest.raises(ModelError):
        load_model(truncated, "numpy")


def test_the_schema_check_names_what_differs() -> None:
    check_schema(NAMES)
    with pytest.raises(SchemaMismatch, match=r"missing .*mutual_follow"):
        check_schema(NAMES[:-1])
    with pytest.raises(SchemaMismatch, match=r"unknown .*shoe_size"):
        check_schema((*NAMES, "shoe_size"))
    with pytest.raises(SchemaMismatch, match="different order"):
        check_schema(tuple(reversed(NAMES)))
    assert fingerprint(list(NAMES)) == FINGERPRINT != fingerprint(list(reversed(NAMES)))


def test_file_types_decide_the_format() -> None:
    from pathlib import Path

    assert format_of(Path("m.npz")) == "numpy"
    assert format_of(Path("m.ONNX")) == "onnx"
    with pytest.raises(ModelError):
        format_of(Path("m.pkl"))
