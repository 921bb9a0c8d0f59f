"""Linear ONNX models with a model contract, built directly with ``onnx.helper``.

Per pixel: output = softmax?(W @ normalised_bands + b) (a 1x1 convolution); per patch:
sigmoid(W @ mean of the normalised bands + b); per pixel of a time series: softmax of W @ the
masked temporal mean + b. They exercise the engine's contract, band order,
normalisation, tiling and blending with outputs computable by hand (tests), and give the memory
benchmark a model whose cost is negligible (bench/).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.contract import ModelContract

OPSET = 17


def pointwise_model(contract: ModelContract, weights: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """weights [channels, bands], bias [channels]; softmax over channels for 'classes' contracts."""
    channels, bands = weights.shape
    conv_w = numpy_helper.from_array(weights.reshape(channels, bands, 1, 1).astype(np.float32), "weight")
    conv_b = numpy_helper.from_array(bias.astype(np.float32), "bias")
    classes = contract.outputs.kind == "classes"
    nodes = [helper.make_node("Conv", ["image", "weight", "bias"], ["logits" if classes else "output"])]
    if classes:
        nodes.append(helper.make_node("Softmax", ["logits"], ["output"], axis=1))
    graph = helper.make_graph(
        nodes, "pointwise",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", bands, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", channels, "height", "width"])],
        initializer=[conv_w, conv_b],
    )
    return _contract_model(graph, contract)


def patch_classifier_model(contract: ModelContract, weights: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """Multi-label patch classifier: sigmoid(W @ patch-mean of normalised bands + b) -> [N, classes, 1, 1]."""
    classes, bands = weights.shape
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Conv", ["pooled", "weight", "bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "patch_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", bands, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", classes, 1, 1])],
        initializer=[numpy_helper.from_array(weights.reshape(classes, bands, 1, 1).astype(np.float32), "weight"),
                     numpy_helper.from_array(bias.astype(np.float32), "bias")],
    )
    return _contract_model(graph, contract)


def time_series_classifier_model(contract: ModelContract, weights: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """Per pixel: softmax(W @ masked temporal mean of the first modality's bands + b) -> [N, K, H, W].

    Takes every input of a multi-temporal contract (engine.contract.Modality convention); only the
    first modality's values and mask enter the result, so outputs are computable by hand.
    """
    first = contract.modalities[0].name
    classes, bands = weights.shape
    inputs = []
    for modality in contract.modalities:
        c = len(modality.bands)
        inputs += [
            helper.make_tensor_value_info(modality.name, TensorProto.FLOAT, ["batch", f"t_{modality.name}", c, "h", "w"]),
            helper.make_tensor_value_info(f"{modality.name}_doy", TensorProto.INT64, ["batch", f"t_{modality.name}"]),
            helper.make_tensor_value_info(f"{modality.name}_mask", TensorProto.FLOAT,
                                          ["batch", f"t_{modality.name}", "h", "w"]),
        ]
    nodes = [
        helper.make_node("Unsqueeze", [f"{first}_mask", "axis2"], ["mask5"]),
        helper.make_node("Mul", [first, "mask5"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask5", "axis1"], ["count"], keepdims=0),
        helper.make_node("Max", ["count", "one"], ["safe_count"]),
        helper.make_node("Div", ["total", "safe_count"], ["mean"]),
        helper.make_node("Conv", ["mean", "weight", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["output"], axis=1),
    ]
    initializers = [
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(weights.reshape(classes, bands, 1, 1).astype(np.float32), "weight"),
        numpy_helper.from_array(bias.astype(np.float32), "bias"),
    ]
    graph = helper.make_graph(
        nodes, "time_series_classifier", inputs,
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", classes, "h", "w"])],
        initializer=initializers,
    )
    return _contract_model(graph, contract)


def _contract_model(graph: onnx.GraphProto, contract: ModelContract) -> onnx.ModelProto:
    """The checked model of ``graph`` with ``contract`` in its metadata."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    helper.set_model_props(model, contract.to_onnx_metadata())
    onnx.checker.check_model(model)
    return model
