"""Model artifacts: reading, validating and scoring the two formats Nova serves.

* `numpy` (`.npz`): Nova's own format for models trained with numpy — logistic regression
  (`w`, `b`) or a small MLP (`W0`, `b0`, `W1`, `b1`, ...; ReLU between layers, sigmoid out),
  with optional per-feature standardisation (`mean`, `std`). A JSON `meta` entry names the
  kind and the features, in column order.
* `onnx` (`.onnx`): models trained elsewhere (scikit-learn, LightGBM, PyTorch exports), run
  with onnxruntime. The graph takes one float32 input of shape [N, F]; its custom metadata
  key `nova_features` holds the JSON list of feature names. A classifier's probability
  output ([N, 2]) is read at column 1; export scikit-learn models with `zipmap=False`.

Every loader raises `ModelError` with a message a data scientist can act on; a score is a
float32 per candidate, higher is better.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ranking.schema import DTYPE

NUMPY_FORMAT = "numpy"
ONNX_FORMAT = "onnx"
FORMATS = (NUMPY_FORMAT, ONNX_FORMAT)
ONNX_FEATURES_KEY = "nova_features"


class ModelError(ValueError):
    """An artifact that cannot be served: unreadable, malformed or inconsistent."""


class Scorer(Protocol):
    features: tuple[str, ...]

    def score(self, matrix: np.ndarray) -> np.ndarray: ...


def _sigmoid(z: np.ndarray) -> np.ndarray:
    result: np.ndarray = (1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))).astype(DTYPE)
    return result


@dataclass
class NumpyModel:
    """Logistic regression or MLP: a chain of affine layers, ReLU between, sigmoid out."""

    kind: str
    features: tuple[str, ...]
    layers: list[tuple[np.ndarray, np.ndarray]]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, matrix: np.ndarray) -> np.ndarray:
        x = np.asarray(matrix, dtype=DTYPE)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        for index, (weights, bias) in enumerate(self.layers):
            x = x @ weights + bias
            if index < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return _sigmoid(x.reshape(len(matrix)))

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        if self.kind == "logreg":
            arrays["w"] = self.layers[0][0].reshape(-1)
            arrays["b"] = np.asarray(self.layers[0][1], dtype=DTYPE).reshape(1)
        else:
            for index, (weights, bias) in enumerate(self.layers):
                arrays[f"W{index}"] = weights
                arrays[f"b{index}"] = bias
        if self.mean is not None and self.std is not None:
            arrays["mean"], arrays["std"] = self.mean, self.std
        meta = {**self.meta, "format": NUMPY_FORMAT, "kind": self.kind, "features": self.features}
        buffer = io.BytesIO()
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(buffer, **arrays)  # type: ignore[arg-type] # numpy's stub types kwargs
        return buffer.getvalue()


def logistic_regression(
    weights: np.ndarray | list[float],
    bias: float,
    features: tuple[str, ...] | list[str],
    *,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
) -> NumpyModel:
    w = np.asarray(weights, dtype=DTYPE).reshape(-1, 1)
    return NumpyModel(
        "logreg",
        tuple(features),
        [(w, np.asarray([bias], dtype=DTYPE))],
        None if mean is None else np.asarray(mean, dtype=DTYPE),
        None if std is None else np.asarray(std, dtype=DTYPE),
        dict(meta or {}),
    )


def _load_numpy(data: bytes) -> NumpyModel:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as exc:
        raise ModelError(f"not a readable .npz model: {exc}") from exc
    if "meta" not in arrays:
        raise ModelError("the .npz model has no `meta` entry (JSON with kind and features)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
        kind = meta["kind"]
        features = tuple(str(name) for name in meta["features"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"the model's `meta` is not valid: {exc}") from exc
    width = len(features)
    layers: list[tuple[np.ndarray, np.ndarray]]
    if kind == "logreg":
        if "w" not in arrays or "b" not in arrays:
            raise ModelError("a logreg model needs arrays `w` and `b`")
        w = arrays["w"].astype(DTYPE).reshape(-1, 1)
        layers = [(w, arrays["b"].astype(DTYPE).reshape(1))]
    elif kind == "mlp":
        layers = []
        while f"W{len(layers)}" in arrays:
            index = len(layers)
            if f"b{index}" not in arrays:
                raise ModelError(f"an mlp model has W{index} but no b{index}")
            layers.append((arrays[f"W{index}"].astype(DTYPE), arrays[f"b{index}"].astype(DTYPE)))
        if not layers:
            raise ModelError("an mlp model needs arrays W0, b0, W1, b1, ...")
    else:
        raise ModelError(f"unknown numpy model kind {kind!r} (logreg or mlp)")
    rows = width
    for index, (weights, bias) in enumerate(layers):
        if weights.ndim != 2 or weights.shape[0] != rows or bias.shape != (weights.shape[1],):
            raise ModelError(
                f"layer {index}: weights {weights.shape} and bias {bias.shape} do not follow "
                f"an input of width {rows}"
            )
        rows = weights.shape[1]
    if rows != 1:
        raise ModelError(f"the last layer must have one output, not {rows}")
    mean, std = arrays.get("mean"), arrays.get("std")
    if (mean is None) != (std is None):
        raise ModelError("standardisation needs both `mean` and `std`")
    if mean is not None and std is not None:
        if mean.shape != (width,) or std.shape != (width,) or not np.all(std > 0):
            raise ModelError("`mean` and `std` must have one positive entry per feature")
        mean, std = mean.astype(DTYPE), std.astype(DTYPE)
    model = NumpyModel(kind, features, layers, mean, std, meta)
    _check_finite(model.score(np.zeros((2, width), dtype=DTYPE)))
    return model


@dataclass
class OnnxModel:
    features: tuple[str, ...]
    session: Any
    input_name: str
    output_name: str

    def score(self, matrix: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(matrix, dtype=DTYPE)
        (out,) = self.session.run([self.output_name], {self.input_name: x})
        scores = np.asarray(out, dtype=DTYPE)
        if scores.ndim == 2 and scores.shape[1] == 2:
            scores = scores[:, 1]
        return scores.reshape(len(matrix))


def _load_onnx(data: bytes) -> OnnxModel:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one replica, one core: no thread pool contention
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load the model: {exc}") from exc
    metadata = session.get_modelmeta().custom_metadata_map
    if ONNX_FEATURES_KEY not in metadata:
        raise ModelError(
            f"the ONNX model has no `{ONNX_FEATURES_KEY}` metadata (a JSON list of the "
            "feature names in input column order)"
        )
    try:
        features = tuple(str(name) for name in json.loads(metadata[ONNX_FEATURES_KEY]))
    except (ValueError, TypeError) as exc:
        raise ModelError(f"`{ONNX_FEATURES_KEY}` is not a JSON list: {exc}") from exc
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"the ONNX model must take one input, not {len(inputs)}")
    outputs = [o for o in session.get_outputs() if o.type == "tensor(float)"]
    if not outputs:
        raise ModelError("the ONNX model has no float tensor output")
    chosen = next((o for o in outputs if "prob" in o.name.lower()), outputs[0])
    model = OnnxModel(features, session, inputs[0].name, chosen.name)
    try:
        _check_finite(model.score(np.zeros((2, len(features)), dtype=DTYPE)))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"the ONNX model fails on a [2, {len(features)}] input: {exc}") from exc
    return model


def _check_finite(scores: np.ndarray) -> None:
    if scores.shape != (2,) or not np.all(np.isfinite(scores)):
        raise ModelError(f"the model's scores for a test batch are unusable: {scores!r}")


def load_model(data: bytes, fmt: str) -> NumpyModel | OnnxModel:
    """Parse and smoke-test an artifact; `ModelError` if it cannot serve."""
    if fmt == NUMPY_FORMAT:
        return _load_numpy(data)
    if fmt == ONNX_FORMAT:
        return _load_onnx(data)
    raise ModelError(f"unknown model format {fmt!r} (one of {', '.join(FORMATS)})")


def format_of(path: Path) -> str:
    """The format a file's name says it has."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return NUMPY_FORMAT
    if suffix == ".onnx":
        return ONNX_FORMAT
    raise ModelError(f"{path.name}: unknown model file type (use .npz or .onnx)")
