"""Linear ONNX models with a model contract, built directly with ``onnx.helper``.

Per pixel: output = softmax?(W @ normalised_bands + b) (a 1x1 convolution); per patch:
sigmoid(W @ mean of the normalised bands + b). They exercise the engine's contract, band order,
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    helper.set_model_props(model, contract.to_onnx_metadata())
    onnx.checker.check_model(model)
    return model


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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    helper.set_model_props(model, contract.to_onnx_metadata())
    onnx.checker.check_model(model)
    return model
