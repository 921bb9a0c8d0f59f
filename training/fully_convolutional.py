"""Whether an exported ONNX graph is fully convolutional, and what tiling it then needs.

A graph is fully convolutional when every operation on tensors derived from the image is local
(convolution, pooling, transposed convolution, resizing) or per pixel (activations, sums,
concatenations along the channels, padding and cropping that fit the size to the stride), as in a
U-Net (Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015) or the fully convolutional networks of Long, Shelhamer & Darrell
(CVPR 2015). Its tile size is then a memory choice, and the engine runs it at the largest tile its
memory budget allows (engine/tile_plan.py), stitching tiles with the overlap-tile strategy of the
U-Net paper: each output pixel comes from a tile in which its whole receptive field lies.

The record written into the contract's ``fully_convolutional`` field:

- ``receptive_radius``: input pixels on each side that one output pixel can depend on: the window
  of every convolution, pooling, transposed convolution and resize followed through the graph with
  its padding (Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural Networks",
  Distill 2019), each side apart; a resize counts two input cells each side, whatever its mode, and
  an automatic padding its whole window on both sides.
- ``size_multiple``: the total stride (largest down-sampling): tile sizes and tile origins that are
  multiples of it keep the tiled result equal to a whole-image run.
- ``activation_bytes_per_px``: the memory onnxruntime's CPU provider takes to run the graph, per input
  pixel: the peak resident memory a fresh process gains running a ``MEMORY_PROBE_SIZE`` px tile 3 times
  (its arena and operator work space included; a count of the tensors alive at once gave 3.4 times
  less for the shipped bathymetry U-Net).

Shapes come from one onnxruntime run at ``PROBE_SIZE`` px with every intermediate tensor exposed.
Any other operation on an image-derived tensor (a reshape, a global pooling, a matrix product over
pixels) makes the graph not fully convolutional (None).
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

PROBE_SIZE = 256  # px; a multiple of every stride up to 256
MEMORY_PROBE_SIZE = 1024  # px, fewer for many bands: MEMORY_PROBE_INPUT_BYTES at most
MEMORY_PROBE_INPUT_BYTES = 64 * 2**20
MEMORY_PROBE = """
import resource, sys
import numpy as np, onnxruntime

def peak_kib():
    # Linux: VmHWM, the peak of this process's own memory; ru_maxrss carries the parent's peak over fork and
    # exec, so that a probe started by a large process (python -m training export, after torch) measured 0
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
before = peak_kib()
size, bands = int(sys.argv[2]), int(sys.argv[3])
tile = np.random.default_rng(0).standard_normal((1, bands, size, size), np.float32)
for _ in range(3):  # the arena grows on the second run too
    session.run(None, {session.get_inputs()[0].name: tile})
print((peak_kib() - before) * 1024 / size ** 2)
"""
WINDOW_OPS = {"Conv", "MaxPool", "AveragePool", "LpPool"}
PER_PIXEL_OPS = {
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus", "Softsign",
    "Gelu", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Clip", "Add", "Sub", "Mul", "Div", "Pow",
    "Max", "Min", "Sum", "Mean", "Where", "Identity", "Cast", "Dropout", "BatchNormalization",
    "InstanceNormalization", "Softmax", "LogSoftmax", "Concat", "Pad", "Slice", "Mish", "Celu", "ThresholdedRelu",
}
SHAPE_OPS = {"Shape", "Size"}  # read an image tensor's size only


def fully_convolutional_record(path: str | Path) -> dict | None:
    """The ``fully_convolutional`` contract record of the single-image-input ONNX model at ``path``,
    or None when the graph is not fully convolutional (or takes a fixed tile size)."""
    field = receptive_field(path)
    if field is None:
        return None
    bands = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    return {**field, "activation_bytes_per_px": round(measured_bytes_per_px(path, bands), 1)}


def receptive_field(path: str | Path) -> dict | None:
    """``receptive_radius`` and ``size_multiple`` of a fully convolutional graph, else None."""
    model = onnx.load(str(path))
    graph = model.graph
    initialisers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        return None
    height, width = inputs[0].type.tensor_type.shape.dim[2:]
    if height.HasField("dim_value") or width.HasField("dim_value"):
        return None  # a fixed tile size
    if not _local_operators_only(graph, inputs[0].name):
        return None  # decided before running the graph: a probe of a transformer's attention takes GBs
    bands = inputs[0].type.tensor_type.shape.dim[1].dim_value
    shapes = _tensor_shapes(model, inputs[0].name, bands)
    # per image-derived tensor: the input px its pixel t depends on lie in [t * step + low, t * step + high]
    low, high, stride = {inputs[0].name: 0.0}, {inputs[0].name: 0.0}, {inputs[0].name: 1.0}
    for node in graph.node:
        spatial = [name for name in node.input if name in stride]
        if not spatial or node.op_type in SHAPE_OPS:
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        first, last, step = min(low[n] for n in spatial), max(high[n] for n in spatial), stride[spatial[0]]
        if node.op_type in WINDOW_OPS | {"ConvTranspose"}:
            kernel = attributes.get("kernel_shape") or list(shapes[node.input[1]][2:])
            dilation = attributes.get("dilations", [1] * len(kernel))
            strides = attributes.get("strides", [1] * len(kernel))
            span = max((k - 1) * d for k, d in zip(kernel, dilation))
            automatic = attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")
            pad = 0 if automatic else min(attributes.get("pads", [0] * 2 * len(kernel))[:len(kernel)])
            pad_most = span if automatic else max(attributes.get("pads", [0] * 2 * len(kernel))[:len(kernel)])
            if node.op_type == "ConvTranspose":  # output o takes inputs t with t * s - pad + i = o, i < span + 1
                step /= max(strides)
                first -= (span - pad) * step if not automatic else span * step
                last += pad_most * step
            else:  # output o takes inputs o * s - pad + i, 0 <= i <= span
                first -= pad_most * step
                last += (span - pad) * step if not automatic else span * step
                step *= max(strides)
        elif node.op_type in ("Resize", "Upsample"):
            step *= shapes[node.input[0]][2] / shapes[node.output[0]][2]
            first, last = first - 2 * stride[spatial[0]], last + 2 * stride[spatial[0]]
        elif node.op_type not in PER_PIXEL_OPS or _mixes_pixels(node, attributes, shapes):
            return None
        for output in node.output:
            if output in shapes and len(shapes[output]) == 4:
                low[output], high[output], stride[output] = first, last, step
    output = graph.output[0].name
    if output not in stride or stride[output] != 1:
        return None
    return {"receptive_radius": math.ceil(max(-low[output], high[output])),
            "size_multiple": int(round(max(stride.values())))}


def measured_bytes_per_px(path: str | Path, bands: int) -> float:
    """Peak resident memory gained running one tile in a fresh process (Linux: VmHWM in KiB)."""
    size = min(MEMORY_PROBE_SIZE, max(PROBE_SIZE, math.isqrt(MEMORY_PROBE_INPUT_BYTES // (4 * bands)) // 64 * 64))
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), str(size), str(bands)],
                           capture_output=True, text=True, check=True)
    return float(probe.stdout.strip().splitlines()[-1])


def _local_operators_only(graph: onnx.GraphProto, image: str) -> bool:
    """Whether every operator fed by the image (directly or not) is a window, resampling or
    per-pixel one: the graph's operator types alone, without running it."""
    derived = {image}
    for node in graph.node:
        if node.op_type in SHAPE_OPS or not any(name in derived for name in node.input):
            continue
        if node.op_type not in WINDOW_OPS | PER_PIXEL_OPS | {"ConvTranspose", "Resize", "Upsample"}:
            return False
        derived.update(node.output)
    return True


def _mixes_pixels(node, attributes: dict, shapes: dict) -> bool:
    """A listed per-pixel operator used across pixels: softmax or concatenation over a spatial axis."""
    if node.op_type in ("Softmax", "LogSoftmax", "Concat"):
        axis = attributes.get("axis", 1 if node.op_type == "Concat" else -1)
        return axis % len(shapes[node.output[0]]) != 1
    return False


def _tensor_shapes(model: onnx.ModelProto, image: str, bands: int) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of one run on a [1, bands, PROBE_SIZE, PROBE_SIZE] input."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in known:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {image: np.zeros((1, bands, PROBE_SIZE, PROBE_SIZE), np.float32)})
    shapes = {name: value.shape for name, value in zip(names, values)}
    shapes.update({t.name: tuple(t.dims) for t in model.graph.initializer})
    shapes[image] = (1, bands, PROBE_SIZE, PROBE_SIZE)
    return shapes
