"""Builds small ONNX models, as a scikit-learn or PyTorch export would produce them."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def onnx_logistic_regression(
    weights: list[float],
    bias: float,
    features: tuple[str, ...] | list[str] | None,
    *,
    probabilities: bool = False,
) -> bytes:
    """sigmoid(x @ w + b) over a [N, F] float input; `features` goes in the metadata.

    With `probabilities`, the output is [N, 2] (1 - p, p), as classifiers export it.
    """
    width = len(weights)
    w = numpy_helper.from_array(np.asarray(weights, dtype=np.float32).reshape(width, 1), "w")
    b = numpy_helper.from_array(np.asarray([bias], dtype=np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p"]),
    ]
    output = "p"
    initializers = [w, b]
    if probabilities:
        one = numpy_helper.from_array(np.asarray([1.0], dtype=np.float32), "one")
        initializers.append(one)
        nodes += [
            helper.make_node("Sub", ["one", "p"], ["q"]),
            helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1),
        ]
        output = "probabilities"
    columns = 2 if probabilities else 1
    graph = helper.make_graph(
        nodes,
        "nova_test_logreg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [None, columns])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    if features is not None:
        helper.set_model_props(model, {"nova_features": json.dumps(list(features))})
    onnx.checker.check_model(model)
    serialized: bytes = model.SerializeToString()
    return serialized
