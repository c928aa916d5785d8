"""ncnn ``.param`` + ``.bin`` files: parsing, mapping onto srhub architectures, and running ncnn itself.

The formats, as ncnn defines them:

``.param``: a line with the magic number 7767517, a line ``layer_count blob_count``,
then one line per layer: ``type name n_in n_out in_blobs... out_blobs... k=v ...``.
Keys ``0..`` hold an int (no ``.``/``e`` in the value) or a float; a key
``-23300 - k`` holds array ``k`` written as ``count,v1,v2,...``.

``.bin``: the layers' weights back to back in layer order. A Convolution stores
its weight blob as a 4-byte storage tag followed by the data (tag 0: float32;
0x01306B47: float16, padded to 4 bytes; 0x000D4B38: int8; other non-zero tags:
a 256-entry quantisation table and uint8 indices), then, if ``5=1``, its bias
as raw float32 without a tag. Deconvolution stores like Convolution (weights laid out
(out, in, kh, kw), where PyTorch's transposed convolution keeps (in, out, kh, kw)), and
InnerProduct (``0=`` outputs, ``1=`` bias, ``2=`` weight count) likewise. PReLU stores its
slopes as raw float32. Input, Split, Concat, Eltwise, BinaryOp, Interp, PixelShuffle,
Pooling, Crop and Scale with ``0=-233`` (scale taken from a second input) store nothing.

Real-CUGAN's and waifu2x's graphs are U-Nets of unpadded convolutions whose
squeeze-excitation blocks are Pooling + InnerProduct (ReLU) + InnerProduct (sigmoid) + a
multiply (BinaryOp, or Scale in waifu2x's Caffe export); their weighted layers map onto the
srhub model's modules in registration order, each checked for type, shape, stride, padding
and fused activation, and the skip crops (4, 4, 16, 20 px, and 1 px before Real-CUGAN x4's
pixel shuffle) are checked too. The graphs expect an input padded by the ncnn tool:
:func:`ncnn_tool_net` adds that padding for parity checks.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .common import ConversionError, ConvertedModel, skeleton_model, with_weights

NCNN_MAGIC = 7767517
NCNN_FP32_TAG = 0x00000000
NCNN_FP16_TAG = 0x01306B47
NCNN_INT8_TAG = 0x000D4B38
NCNN_FP32_SCALED_TAG = 0x0002C056

# ncnn's Convolution parameter ids (operation-param-weight-table).
_CONV_NUM_OUTPUT, _CONV_KERNEL_W, _CONV_DILATION_W, _CONV_STRIDE_W, _CONV_PAD_LEFT = (0, 1, 2, 3, 4)
(_CONV_BIAS_TERM, _CONV_WEIGHT_SIZE, _CONV_INT8_SCALE, _CONV_ACTIVATION, _CONV_ACTIVATION_PARAMS) = 5, 6, 8, 9, 10
_CONV_KERNEL_H, _CONV_DILATION_H, _CONV_STRIDE_H, _CONV_PAD_TOP = 11, 12, 13, 14
_CONV_PAD_RIGHT, _CONV_PAD_BOTTOM, _CONV_DYNAMIC_WEIGHT = 15, 16, 19
_ACTIVATION_NAMES = {0: "none", 1: "relu", 2: "leakyrelu", 3: "clip", 4: "sigmoid", 5: "mish", 6: "hardswish"}

# Layer types whose weights this reader understands, and those that store none.
_WEIGHTLESS_LAYERS = {
    "Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle",
    "ReLU", "Sigmoid", "TanH", "Clip", "Noop", "Pooling", "Crop",
}  # fmt: skip
_WEIGHTED_LAYERS = {"Convolution", "Deconvolution", "PReLU", "InnerProduct"}


# ======================================================================================
# ncnn: the .param graph
# ======================================================================================


@dataclass(frozen=True)
class NcnnLayer:
    """One layer line of an ncnn ``.param`` file."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, Any]
    line: int

    def get(self, key: int, default: Any = None) -> Any:
        return self.params.get(key, default)

    def describe(self) -> str:
        return f"layer {self.name!r} ({self.type}, line {self.line})"


@dataclass(frozen=True)
class NcnnGraph:
    """A parsed ``.param`` file: its layers in file (= execution) order."""

    path: str
    layers: tuple[NcnnLayer, ...]

    def consumers(self, blob: str) -> list[NcnnLayer]:
        return [layer for layer in self.layers if blob in layer.inputs]

    def count(self, layer_type: str) -> int:
        return sum(layer.type == layer_type for layer in self.layers)


def _parse_number(text: str, *, where: str) -> int | float:
    try:
        if "." in text or "e" in text.lower():
            return float(text)
        return int(text)
    except ValueError:
        raise ConversionError(f"{where}: {text!r} is not a number") from None


def _parse_param_value(key: int, value: str, *, where: str) -> tuple[int, Any]:
    if key <= -23300:  # an array: -23300 - id = count,v1,v2,...
        items = value.split(",")
        count = _parse_number(items[0], where=where)
        values = [_parse_number(item, where=where) for item in items[1:]]
        if not isinstance(count, int) or count != len(values):
            raise ConversionError(f"{where}: array parameter {key} declares {items[0]} values but has {len(values)}")
        return -23300 - key, values
    return key, _parse_number(value, where=where)


def read_ncnn_param(path: str | os.PathLike) -> NcnnGraph:
    """Parse an ncnn ``.param`` text file; raise :class:`ConversionError` on anything malformed."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConversionError(f"cannot read ncnn param file {path}: {error}") from error
    lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines or lines[0][1] != [str(NCNN_MAGIC)]:
        raise ConversionError(f"{path} is not an ncnn .param file: the first line must be the magic {NCNN_MAGIC}")
    if len(lines) < 2 or len(lines[1][1]) != 2 or not all(token.isdigit() for token in lines[1][1]):
        raise ConversionError(f"{path}: the second line must be 'layer_count blob_count'")
    layer_count = int(lines[1][1][0])
    layers = []
    names = set()
    for number, tokens in lines[2:]:
        where = f"{path}, line {number}"
        if len(tokens) < 4 or not tokens[2].isdigit() or not tokens[3].isdigit():
            raise ConversionError(f"{where}: expected 'type name n_in n_out blobs... params...'")
        layer_type, name, n_in, n_out = (tokens[0], tokens[1], int(tokens[2]), int(tokens[3]))
        blobs = tokens[4 : 4 + n_in + n_out]
        if len(blobs) != n_in + n_out or any("=" in blob for blob in blobs):
            raise ConversionError(f"{where}: layer {name!r} declares {n_in} inputs and {n_out} outputs but lists fewer")
        if name in names:
            raise ConversionError(f"{where}: layer name {name!r} is used twice")
        names.add(name)
        params: dict[int, Any] = {}
        for item in tokens[4 + n_in + n_out :]:
            key_text, sep, value = item.partition("=")
            if not sep or not re.fullmatch(r"-?\d+", key_text):
                raise ConversionError(f"{where}: {item!r} is not a key=value parameter")
            key, parsed = _parse_param_value(int(key_text), value, where=where)
            params[key] = parsed
        layers.append(NcnnLayer(layer_type, name, tuple(blobs[:n_in]), tuple(blobs[n_in:]), params, number))
    if len(layers) != layer_count:
        raise ConversionError(f"{path}: header declares {layer_count} layers, the file has {len(layers)}")
    return NcnnGraph(path=path, layers=tuple(layers))


# ======================================================================================
# ncnn: the .bin weights
# ======================================================================================


@dataclass(frozen=True)
class NcnnWeights:
    """The weights of one layer, as float32 arrays, and how they were stored."""

    layer: NcnnLayer
    arrays: dict[str, np.ndarray]
    storage: str  # "fp32", "fp16" or "raw" (untagged fp32 only)


class _BinReader:
    def __init__(self, data: bytes, path: str):
        self.data = data
        self.path = path
        self.offset = 0

    def take(self, size: int, layer: NcnnLayer, what: str) -> bytes:
        if self.offset + size > len(self.data):
            raise ConversionError(
                f"{self.path} is truncated: {layer.describe()} needs {size} bytes for its {what} at offset "
                f"{self.offset}, only {len(self.data) - self.offset} remain"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def raw_fp32(self, count: int, layer: NcnnLayer, what: str) -> np.ndarray:
        return np.frombuffer(self.take(4 * count, layer, what), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, layer: NcnnLayer, what: str) -> tuple[np.ndarray, str]:
        tag = int.from_bytes(self.take(4, layer, f"{what} storage tag"), "little")
        if tag == NCNN_FP32_TAG:
            return self.raw_fp32(count, layer, what), "fp32"
        if tag == NCNN_FP16_TAG:
            padded = (2 * count + 3) // 4 * 4
            chunk = self.take(padded, layer, what)
            return np.frombuffer(chunk[: 2 * count], dtype="<f2").astype(np.float32), "fp16"
        kinds = {NCNN_INT8_TAG: "int8-quantised", NCNN_FP32_SCALED_TAG: "scaled float32"}
        kind = kinds.get(tag, "table-quantised (uint8 indices into a 256-entry table) or unknown")
        raise ConversionError(
            f"{self.path}: {layer.describe()} stores its {what} with storage tag 0x{tag:08X} ({kind}); "
            "srhub converts only float32 (tag 0) and float16 (tag 0x01306B47) weights"
            + ("" if tag in kinds else "; a tag like this also appears when the .bin does not belong to the .param")
        )


def _conv_geometry(layer: NcnnLayer) -> dict[str, int]:
    """Kernel, stride, dilation and padding of a Convolution layer, with ncnn's defaults."""
    kernel_w = layer.get(_CONV_KERNEL_W, 0)
    dilation_w = layer.get(_CONV_DILATION_W, 1)
    stride_w = layer.get(_CONV_STRIDE_W, 1)
    pad_left = layer.get(_CONV_PAD_LEFT, 0)
    return {
        "num_output": layer.get(_CONV_NUM_OUTPUT, 0),
        "kernel_w": kernel_w,
        "kernel_h": layer.get(_CONV_KERNEL_H, kernel_w),
        "dilation_w": dilation_w,
        "dilation_h": layer.get(_CONV_DILATION_H, dilation_w),
        "stride_w": stride_w,
        "stride_h": layer.get(_CONV_STRIDE_H, stride_w),
        "pad_left": pad_left,
        "pad_right": layer.get(_CONV_PAD_RIGHT, pad_left),
        "pad_top": layer.get(_CONV_PAD_TOP, pad_left),
        "pad_bottom": layer.get(_CONV_PAD_BOTTOM, layer.get(_CONV_PAD_TOP, pad_left)),
        "bias_term": layer.get(_CONV_BIAS_TERM, 0),
        "weight_data_size": layer.get(_CONV_WEIGHT_SIZE, 0),
    }


def read_ncnn_weights(graph: NcnnGraph, bin_path: str | os.PathLike) -> list[NcnnWeights]:
    """Read the weights of every weighted layer of ``graph`` from ``bin_path``, in layer order.

    Checks that the file is consumed exactly: a truncated file, trailing bytes
    (a ``.bin`` of another graph) and unknown storage tags raise :class:`ConversionError`.
    """
    bin_path = str(bin_path)
    try:
        data = Path(bin_path).read_bytes()
    except OSError as error:
        raise ConversionError(f"cannot read ncnn weights file {bin_path}: {error}") from error
    reader = _BinReader(data, bin_path)
    result = []
    for layer in graph.layers:
        if layer.type in _WEIGHTLESS_LAYERS:
            continue
        if layer.type == "Scale" and layer.get(0) == -233:  # scales by its second input: no weights
            continue
        if layer.type not in _WEIGHTED_LAYERS:
            raise ConversionError(
                f"{graph.path}: {layer.describe()} is a layer type srhub cannot read weights for; "
                f"known: {', '.join(sorted(_WEIGHTED_LAYERS | _WEIGHTLESS_LAYERS))}"
            )
        if layer.type == "PReLU":
            count = layer.get(0, 0)
            result.append(NcnnWeights(layer, {"slope": reader.raw_fp32(count, layer, "slopes")}, "raw"))
            continue
        if layer.type == "InnerProduct":  # 0=num_output 1=bias_term 2=weight_data_size 8=int8 9=activation
            if layer.get(8, 0):
                raise ConversionError(f"{graph.path}: {layer.describe()} is int8-quantised; not supported")
            weight, storage = reader.tagged(layer.get(2, 0), layer, "weight")
            arrays = {"weight": weight}
            if layer.get(1, 0):
                arrays["bias"] = reader.raw_fp32(layer.get(0, 0), layer, "bias")
            result.append(NcnnWeights(layer, arrays, storage))
            continue
        geometry = _conv_geometry(layer)
        if layer.get(_CONV_INT8_SCALE, 0) or layer.get(_CONV_DYNAMIC_WEIGHT, 0):
            raise ConversionError(
                f"{graph.path}: {layer.describe()} is int8-quantised or takes dynamic weights; not supported"
            )
        weight, storage = reader.tagged(geometry["weight_data_size"], layer, "weight")
        arrays = {"weight": weight}
        if geometry["bias_term"]:
            arrays["bias"] = reader.raw_fp32(geometry["num_output"], layer, "bias")
        result.append(NcnnWeights(layer, arrays, storage))
    if reader.offset != len(data):
        raise ConversionError(
            f"{bin_path} has {len(data) - reader.offset} bytes left after the last layer of {graph.path}: "
            "the .bin does not belong to this .param"
        )
    return result


# ======================================================================================
# ncnn: graph -> srhub architecture
# ======================================================================================


def infer_ncnn_architecture(graph: NcnnGraph) -> str:
    """Guess the srhub architecture an ncnn graph was exported from."""
    if graph.count("PReLU") and graph.count("PixelShuffle"):
        return "srvggnet-compact"
    if graph.count("Concat") and graph.count("Eltwise"):
        return "rrdbnet"
    if graph.count("InnerProduct") and graph.count("Crop"):  # cascaded U-Nets with squeeze-excitation
        return "waifu2x-cunet" if graph.count("Scale") else "realcugan"  # waifu2x's Caffe export gates by Scale
    weighted = [layer.type for layer in graph.layers if layer.type in _WEIGHTED_LAYERS]
    if weighted == ["Convolution"] * 6 + ["Deconvolution"]:
        return "waifu2x-upconv7"
    kinds = sorted({layer.type for layer in graph.layers})
    raise ConversionError(
        f"{graph.path}: cannot tell which architecture this graph is (layer types: {', '.join(kinds)}); "
        "srhub converts RRDBNet (Real-ESRGAN x4plus, RealSR), SRVGGNetCompact (animevideov3), Real-CUGAN and "
        "waifu2x (upconv_7, cunet) graphs"
    )


def _convolutions(graph: NcnnGraph) -> list[NcnnLayer]:
    return [layer for layer in graph.layers if layer.type == "Convolution"]


def _conv_in_channels(layer: NcnnLayer) -> int:
    g = _conv_geometry(layer)
    denominator = max(g["num_output"] * g["kernel_w"] * g["kernel_h"], 1)
    return g["weight_data_size"] // denominator


def _ncnn_config(graph: NcnnGraph, architecture: str) -> dict[str, Any]:
    """The target configuration read off the graph (lenient: the layer walk checks it)."""
    convs = _convolutions(graph)
    if not convs:
        raise ConversionError(f"{graph.path}: the graph has no Convolution layer")
    first, last = convs[0], convs[-1]
    in_channels = _conv_in_channels(first)
    num_features = first.get(_CONV_NUM_OUTPUT, 0)
    if architecture == "rrdbnet":
        growth = convs[1].get(_CONV_NUM_OUTPUT, 32) if len(convs) > 1 else 32
        return {
            "scale": 4,
            "in_channels": in_channels,
            "out_channels": last.get(_CONV_NUM_OUTPUT, 3),
            "num_features": num_features,
            "num_blocks": max(1, (len(convs) - 6) // 15),
            "growth_channels": growth,
        }
    if architecture == "srvggnet-compact":
        shuffles = [layer for layer in graph.layers if layer.type == "PixelShuffle"]
        scale = shuffles[0].get(0, 4) if shuffles else 4
        return {
            "scale": scale,
            "in_channels": in_channels,
            "out_channels": in_channels,  # the input is added to the output; the walk checks the last conv
            "num_features": num_features,
            "num_convs": max(1, len(convs) - 2),
            "activation": "prelu",
        }
    if architecture in _UNET_ARCHITECTURES:
        return _unet_config(graph, architecture, in_channels)
    raise ConversionError(f"srhub has no ncnn importer for architecture {architecture!r}")


def _parameter_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules holding parameters directly, in registration order."""
    found = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.PReLU)):
                raise ConversionError(f"{type(model).__name__}.{name} is a {type(module).__name__}; no ncnn mapping")
            found.append((name, module))
    return found


def _expected_fused_activation(architecture: str, prefix: str) -> tuple[str, float | None]:
    """The activation ncnn fuses into the convolution at ``prefix`` (BasicSR semantics)."""
    fused = re.search(r"rdb\d\.conv[1-4]$", prefix) or prefix in {"conv_up1", "conv_up2", "conv_hr"}
    if architecture == "rrdbnet" and fused:
        return "leakyrelu", 0.2
    return "none", None


def _fused_activation(graph: NcnnGraph, layer: NcnnLayer) -> tuple[str, float | None, NcnnLayer | None]:
    """A convolution's activation: fused (``9=``) or a ReLU layer that alone consumes its output."""
    kind = _ACTIVATION_NAMES.get(layer.get(_CONV_ACTIVATION, 0), f"type {layer.get(_CONV_ACTIVATION)}")
    if kind != "none":
        params = layer.get(_CONV_ACTIVATION_PARAMS, [])
        slope = float(params[0]) if kind == "leakyrelu" and params else (0.0 if kind == "relu" else None)
        if kind == "relu":
            kind, slope = "leakyrelu", 0.0
        return kind, slope, None
    consumers = graph.consumers(layer.outputs[0]) if layer.outputs else []
    if len(consumers) == 1 and consumers[0].type == "ReLU":
        return "leakyrelu", float(consumers[0].get(0, 0.0)), consumers[0]
    return "none", None, None


def _mismatch(graph: NcnnGraph, layer: NcnnLayer, expected: str, found: str) -> ConversionError:
    return ConversionError(f"{graph.path}: {layer.describe()} does not fit the target model: {expected}, {found}")


def _walk(graph: NcnnGraph, weights: list[NcnnWeights], model: nn.Module, architecture: str) -> dict[str, torch.Tensor]:
    """Pair ncnn's weighted layers with the model's parameter modules, checking each pair."""
    targets = _parameter_modules(model)
    cls_name = type(model).__name__
    state: dict[str, torch.Tensor] = {}
    for index, item in enumerate(weights):
        layer = item.layer
        if index >= len(targets):
            raise _mismatch(graph, layer, f"{cls_name} has only {len(targets)} weighted modules", "this is one more")
        prefix, module = targets[index]
        if isinstance(module, nn.PReLU):
            if layer.type != "PReLU":
                raise _mismatch(graph, layer, f"{cls_name} expects a PReLU at {prefix}", f"found {layer.type}")
            if item.arrays["slope"].size != module.weight.numel():
                raise _mismatch(
                    graph, layer, f"{prefix} has {module.weight.numel()} slopes", f"found {item.arrays['slope'].size}"
                )
            state[f"{prefix}.weight"] = torch.from_numpy(item.arrays["slope"].copy()).reshape(module.weight.shape)
            continue
        if layer.type != "Convolution":
            raise _mismatch(graph, layer, f"{cls_name} expects a Convolution at {prefix}", f"found {layer.type}")
        g = _conv_geometry(layer)
        out_c, in_c, k_h, k_w = module.weight.shape
        expected = (out_c, in_c * k_h * k_w, k_h, k_w, module.stride, module.padding, module.dilation)
        found = (
            g["num_output"],
            g["weight_data_size"] // max(g["num_output"], 1),
            g["kernel_h"],
            g["kernel_w"],
            (g["stride_h"], g["stride_w"]),
            (g["pad_top"], g["pad_left"]),
            (g["dilation_h"], g["dilation_w"]),
        )
        if expected != found or g["pad_bottom"] != g["pad_top"] or g["pad_right"] != g["pad_left"]:
            raise _mismatch(
                graph,
                layer,
                f"{prefix} is a {k_h}x{k_w} conv {in_c}->{out_c} (stride {module.stride}, padding {module.padding})",
                f"found {g['kernel_h']}x{g['kernel_w']} with {g['num_output']} outputs and "
                f"{g['weight_data_size']} weights (stride {found[4]}, padding {found[5]})",
            )
        if bool(g["bias_term"]) != (module.bias is not None):
            raise _mismatch(
                graph, layer, f"{prefix} bias={module.bias is not None}", f"found bias_term={g['bias_term']}"
            )
        want_kind, want_slope = _expected_fused_activation(architecture, prefix)
        kind, slope, _ = _fused_activation(graph, layer)
        if kind != want_kind or (want_slope is not None and (slope is None or abs(slope - want_slope) > 1e-6)):
            raise _mismatch(
                graph,
                layer,
                f"{prefix} is followed by activation {want_kind} {want_slope or ''}".rstrip(),
                f"found {kind} {slope if slope is not None else ''}".rstrip(),
            )
        state[f"{prefix}.weight"] = torch.from_numpy(item.arrays["weight"].copy()).reshape(module.weight.shape)
        if module.bias is not None:
            state[f"{prefix}.bias"] = torch.from_numpy(item.arrays["bias"].copy())
    if len(weights) < len(targets):
        last = weights[-1].layer.describe() if weights else "the first layer"
        raise ConversionError(
            f"{graph.path}: the graph ends after {last} but {cls_name} still expects "
            f"{targets[len(weights)][0]} ({len(targets) - len(weights)} more weighted modules)"
        )
    return state


def _check_rrdbnet_graph(graph: NcnnGraph) -> None:
    for layer in graph.layers:
        if layer.type == "Eltwise":
            coeffs = [float(c) for c in layer.get(1, [])]
            if layer.get(0) != 1 or coeffs != [0.2, 1.0]:
                raise _mismatch(graph, layer, "RRDBNet's residuals are 0.2 * x + skip (Eltwise sum 0.2, 1.0)",
                                f"found op {layer.get(0)} coefficients {coeffs}")  # fmt: skip
        elif layer.type == "Interp":
            if layer.get(0) != 1 or float(layer.get(1, 1.0)) != 2.0 or float(layer.get(2, 1.0)) != 2.0:
                raise _mismatch(graph, layer, "RRDBNet upsamples by nearest x2", "found another resize")
        elif layer.type not in {"Input", "Split", "Concat", "BinaryOp", "Convolution", "ReLU"}:
            raise _mismatch(graph, layer, "RRDBNet has no such layer", f"found {layer.type}")
    interps = graph.count("Interp")
    if interps != 2:
        raise ConversionError(f"{graph.path}: RRDBNet x4 upsamples twice (two Interp layers); the graph has {interps}")


def _check_srvgg_graph(graph: NcnnGraph, scale: int) -> int | None:
    """Check SRVGGNetCompact's tail; return the graph's overall factor if it resizes its output."""
    outscale = None
    for layer in graph.layers:
        if layer.type == "PixelShuffle":
            if layer.get(0) != scale:
                raise _mismatch(graph, layer, f"pixel shuffle by {scale}", f"found {layer.get(0)}")
        elif layer.type == "Interp":
            h, w = float(layer.get(1, 1.0)), float(layer.get(2, 1.0))
            if layer.get(0) == 1 and h == w == float(scale):
                continue  # the nearest-upsampled input that SRVGGNetCompact adds in forward
            if layer.get(0) == 3 and h == w and h < 1 and not graph.consumers(layer.outputs[0]):
                factor = scale * h
                if abs(factor - round(factor)) > 1e-6:
                    raise _mismatch(graph, layer, "an integer overall factor", f"found x{factor}")
                outscale = round(factor)
                continue
            raise _mismatch(graph, layer, f"nearest x{scale} of the input (or a final bicubic downscale)",
                            f"found mode {layer.get(0)} x{h}")  # fmt: skip
        elif layer.type not in {"Input", "Split", "BinaryOp", "Convolution", "PReLU"}:
            raise _mismatch(graph, layer, "SRVGGNetCompact has no such layer", f"found {layer.type}")
    if graph.count("Interp") - (outscale is not None) != 1:
        raise ConversionError(f"{graph.path}: SRVGGNetCompact adds the nearest-upsampled input once; graph differs")
    return outscale



# --------------------------------------------------------------------------------------
# Real-CUGAN and waifu2x: unpadded U-Nets and upconv_7
# --------------------------------------------------------------------------------------

_UNET_ARCHITECTURES = ("realcugan", "waifu2x-cunet", "waifu2x-upconv7")
_NCNN_ACTIVATIONS = {0: "none", 1: "relu", 2: "leakyrelu", 4: "sigmoid"}


def _unet_config(graph: NcnnGraph, architecture: str, in_channels: int) -> dict[str, Any]:
    """Scale of a Real-CUGAN / waifu2x graph, read off its upscaling layers."""
    if architecture == "waifu2x-upconv7":
        return {"scale": 2, "in_channels": in_channels}
    # UNet1 ends in the first layer back to the image's channels (or to 64 before Real-CUGAN x4's pixel shuffle)
    if graph.count("PixelShuffle"):
        scale = 4
    else:
        bottom = next(
            (layer for layer in graph.layers if layer.type in {"Convolution", "Deconvolution"}
             and layer.get(_CONV_NUM_OUTPUT) == in_channels),
            None,
        )  # fmt: skip
        if bottom is None:
            raise ConversionError(f"{graph.path}: no layer brings the U-Net back to {in_channels} channels")
        scale = 1 if bottom.type == "Convolution" else int(bottom.get(_CONV_STRIDE_W, 1))
    config: dict[str, Any] = {"scale": scale, "in_channels": in_channels}
    if architecture == "realcugan":
        config["pro_normalization"] = False  # the ncnn graphs take [0, 1] input, Pro ones included
    return config


def _unet_activation(prefix: str) -> tuple[str, float | None]:
    """The activation ncnn fuses into the layer for the parameter module at ``prefix``."""
    if prefix.endswith("seblock.conv1"):
        return "relu", None
    if prefix.endswith("seblock.conv2"):
        return "sigmoid", None
    if prefix.endswith(("conv_bottom", "conv_final")) or prefix == "net.12":
        return "none", None
    return "leakyrelu", 0.1


def _walk_unet(graph: NcnnGraph, weights: list[NcnnWeights], model: nn.Module) -> dict[str, torch.Tensor]:
    """Pair the graph's Convolution / Deconvolution / InnerProduct layers with the model's modules, in order."""
    targets = _parameter_modules(model)
    cls_name = type(model).__name__
    if len(weights) != len(targets):
        raise ConversionError(
            f"{graph.path}: the graph has {len(weights)} weighted layers, {cls_name} {len(targets)} weighted modules"
        )
    state: dict[str, torch.Tensor] = {}
    for item, (prefix, module) in zip(weights, targets):
        layer = item.layer
        transposed = isinstance(module, nn.ConvTranspose2d)
        one_by_one = not transposed and module.kernel_size == (1, 1) and "seblock" in prefix
        want = "InnerProduct" if one_by_one else ("Deconvolution" if transposed else "Convolution")
        if layer.type != want:
            raise _mismatch(graph, layer, f"{cls_name} expects a {want} at {prefix}", f"found {layer.type}")
        shape = tuple(module.weight.shape)
        out_c = shape[1] if transposed else shape[0]
        if layer.type == "InnerProduct":
            found = (layer.get(0, 0), layer.get(2, 0), bool(layer.get(1, 0)))
            expected = (out_c, module.weight.numel(), module.bias is not None)
        else:
            g = _conv_geometry(layer)
            found = (g["num_output"], g["weight_data_size"], bool(g["bias_term"]), g["kernel_h"], g["kernel_w"],
                     (g["stride_h"], g["stride_w"]), (g["pad_top"], g["pad_left"]), (g["pad_bottom"], g["pad_right"]),
                     (g["dilation_h"], g["dilation_w"]))  # fmt: skip
            expected = (out_c, module.weight.numel(), module.bias is not None, *module.kernel_size,
                        module.stride, module.padding, module.padding, module.dilation)  # fmt: skip
        if found != expected:
            raise _mismatch(graph, layer, f"{prefix} is {cls_name}'s {type(module).__name__} {shape}", f"found {found}")
        kind = _NCNN_ACTIVATIONS.get(layer.get(_CONV_ACTIVATION, 0), f"type {layer.get(_CONV_ACTIVATION)}")
        params = layer.get(_CONV_ACTIVATION_PARAMS, [])
        slope = float(params[0]) if kind == "leakyrelu" and params else None
        want_kind, want_slope = _unet_activation(prefix)
        if kind != want_kind or (want_slope is not None and (slope is None or abs(slope - want_slope) > 1e-6)):
            raise _mismatch(graph, layer, f"{prefix} is followed by {want_kind} {want_slope or ''}".rstrip(),
                            f"found {kind} {slope if slope is not None else ''}".rstrip())  # fmt: skip
        weight = torch.from_numpy(item.arrays["weight"].copy())
        if transposed:  # ncnn stores (out, in, kh, kw); PyTorch's transposed conv keeps (in, out, kh, kw)
            weight = weight.reshape(shape[1], shape[0], *shape[2:]).transpose(0, 1)
        state[f"{prefix}.weight"] = weight.reshape(shape).contiguous()
        if module.bias is not None:
            state[f"{prefix}.bias"] = torch.from_numpy(item.arrays["bias"].copy())
    return state


def _crop_border(layer: NcnnLayer) -> int:
    """The border a Crop layer removes: pnnx's ``-23309=starts`` form or Caffe's ``0=woffset 1=hoffset``."""
    starts = layer.get(9)
    if isinstance(starts, list) and starts:
        return int(starts[-1])
    return int(layer.get(0, 0))


def _check_unet_graph(graph: NcnnGraph, architecture: str, scale: int) -> None:
    """Check the weightless layers: the U-Nets' crops, their gates and sums, nothing else."""
    allowed = {"Input", "Split", "Convolution", "Deconvolution"}
    if architecture != "waifu2x-upconv7":
        allowed |= {"Pooling", "InnerProduct", "Crop", "BinaryOp", "Eltwise", "Scale", "PixelShuffle"}
    for layer in graph.layers:
        if layer.type not in allowed:
            raise _mismatch(graph, layer, f"{architecture} has no such layer", f"found {layer.type}")
        if layer.type == "Pooling" and (layer.get(0) != 1 or layer.get(4) != 1):
            raise _mismatch(graph, layer, "a global average pooling (squeeze-excitation)", "found another pooling")
        if layer.type == "PixelShuffle" and layer.get(0) != 2:
            raise _mismatch(graph, layer, "a pixel shuffle by 2", f"found {layer.get(0)}")
    if architecture == "waifu2x-upconv7":
        return
    crops = [_crop_border(layer) for layer in graph.layers if layer.type == "Crop"]
    expected = [4, 4, 16, 20] + ([1] if scale == 4 else [])
    if crops != expected:
        raise ConversionError(f"{graph.path}: the U-Nets crop {expected} px at their skips; the graph crops {crops}")


def _ncnn_io_names(graph: NcnnGraph) -> tuple[str, str]:
    inputs = [layer for layer in graph.layers if layer.type == "Input"]
    if len(inputs) != 1:
        raise ConversionError(f"{graph.path}: expected one Input layer, found {len(inputs)}")
    consumed = {blob for layer in graph.layers for blob in layer.inputs}
    outputs = [blob for layer in graph.layers for blob in layer.outputs if blob not in consumed]
    if len(outputs) != 1:
        raise ConversionError(f"{graph.path}: expected one output blob, found {outputs}")
    return inputs[0].outputs[0], outputs[0]


def ncnn_io_names(param_path: str | os.PathLike) -> tuple[str, str]:
    """The input and output blob names of an ncnn graph (for running it with the ``ncnn`` package)."""
    return _ncnn_io_names(read_ncnn_param(param_path))


def convert_ncnn(
    param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None, *, architecture: str | None = None
) -> ConvertedModel:
    """Convert an ncnn ``.param`` + ``.bin`` pair into an srhub model (weights in float32).

    ``bin_path`` defaults to the ``.bin`` next to the ``.param``. ``architecture``
    ("rrdbnet" or "srvggnet-compact") is inferred from the graph when omitted;
    a graph that does not fit it raises :class:`ConversionError` naming the first
    mismatching layer.
    """
    from ..models import get_model_class

    param_path = Path(param_path)
    bin_path = Path(bin_path) if bin_path is not None else param_path.with_suffix(".bin")
    graph = read_ncnn_param(param_path)
    _ncnn_io_names(graph)
    architecture = architecture or infer_ncnn_architecture(graph)
    config = _ncnn_config(graph, architecture)
    try:
        cls = get_model_class(architecture)
    except KeyError as error:
        raise ConversionError(str(error.args[0])) from None
    weights = read_ncnn_weights(graph, bin_path)
    try:
        skeleton = skeleton_model(cls, config)  # shapes only: a wrong graph fails before any real allocation
    except ValueError as error:
        raise ConversionError(f"{graph.path}: the graph implies {architecture} {config}, which is invalid: {error}")
    outscale = None
    if architecture in _UNET_ARCHITECTURES:
        state = _walk_unet(graph, weights, skeleton)
        _check_unet_graph(graph, architecture, config["scale"])
    else:
        state = _walk(graph, weights, skeleton, architecture)
        if architecture == "rrdbnet":
            _check_rrdbnet_graph(graph)
        else:
            outscale = _check_srvgg_graph(graph, config["scale"])
    model = with_weights(cls, config, state, source=str(param_path))
    storages = sorted({w.storage for w in weights if w.storage != "raw"})
    notes = []
    if outscale is not None:
        notes.append(
            f"The ncnn graph resizes the x{config['scale']} output bicubically to x{outscale}; the folder holds "
            f"the x{config['scale']} network: `srhub.upscale(..., outscale={outscale})` gives x{outscale} output "
            "(antialiased bicubic), `srhub.convert.ncnn_bicubic_resize` the graph's exact plain-bicubic resize."
        )
    return ConvertedModel(
        model=model.eval(),
        architecture=architecture,
        config={**config, "architecture": architecture},
        source=f"ncnn {param_path.name} + {bin_path.name}",
        storage="+".join(storages) or "fp32",
        outscale=outscale,
        notes=notes,
    )


def ncnn_bicubic_resize(sr: torch.Tensor, *, scale: int, outscale: int) -> torch.Tensor:
    """Resize a x``scale`` output to x``outscale`` as ncnn's Interp (bicubic, half-pixel, clamped edges) does."""
    if outscale == scale:
        return sr
    return F.interpolate(sr, scale_factor=outscale / scale, mode="bicubic", align_corners=False)


def ncnn_net(param_path: str | os.PathLike, bin_path: str | os.PathLike, *, threads: int):
    """Load an ncnn graph once for CPU float32 runs (no Vulkan, no fp16).

    Returns ``run(lq) -> (1, 3, H', W')`` for ``lq`` of shape (3, H, W) or (1, 3, H, W),
    so benchmarks can time runs without the load.
    """
    import ncnn  # the reference implementation; a dev dependency, not a runtime one

    input_name, output_name = ncnn_io_names(param_path)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_fp16_packed = False
    net.opt.num_threads = threads
    if net.load_param(str(param_path)) != 0 or net.load_model(str(bin_path)) != 0:
        raise ConversionError(f"ncnn could not load {param_path} / {bin_path}")

    def run(lq: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(lq.reshape(lq.shape[-3:]).detach().float().cpu().numpy())
        mat = ncnn.Mat(array)  # wraps ``array`` without a copy: keep it alive until extraction ends
        extractor = net.create_extractor()
        extractor.input(input_name, mat)
        status, out = extractor.extract(output_name)
        if status != 0:
            raise ConversionError(f"ncnn failed to run {param_path} (status {status})")
        result = torch.from_numpy(np.array(out, dtype=np.float32, copy=True))
        del extractor, mat, array
        return result.unsqueeze(0)

    return run


#: How the ncnn command-line tools prepare a whole image for these graphs (their unpadded
#: convolutions shrink it): (border per side, bottom/right alignment, ncnn border type).
#: From realcugan-ncnn-vulkan and waifu2x-ncnn-vulkan's ``process_cpu``: reflect (type 2,
#: edge pixel not repeated) for Real-CUGAN, replicate (type 1) for waifu2x. Real-CUGAN x4's
#: graph outputs a residual: the tool adds the nearest-upsampled input.
NCNN_TOOL_PADDING: dict[tuple[str, int], tuple[int, int, int]] = {
    ("realcugan", 2): (18, 2, 2),
    ("realcugan", 3): (14, 4, 2),
    ("realcugan", 4): (19, 2, 2),
    ("waifu2x-upconv7", 2): (7, 2, 1),
    ("waifu2x-cunet", 1): (28, 4, 1),
    ("waifu2x-cunet", 2): (18, 2, 1),
}


def ncnn_tool_net(
    param_path: str | os.PathLike, bin_path: str | os.PathLike, *, architecture: str, scale: int, threads: int
):
    """Like :func:`ncnn_net`, with the ncnn tool's own whole-image padding, crop and residual around the graph.

    For graphs that need no preparation (RRDBNet, SRVGGNetCompact) this is :func:`ncnn_net`.
    """
    import ncnn

    run = ncnn_net(param_path, bin_path, threads=threads)
    if (architecture, scale) not in NCNN_TOOL_PADDING:
        return run
    border, align, border_type = NCNN_TOOL_PADDING[(architecture, scale)]

    def run_whole_image(lq: torch.Tensor) -> torch.Tensor:
        image = lq.reshape(lq.shape[-3:]).detach().float().cpu()
        h, w = image.shape[-2:]
        array = np.ascontiguousarray(image.numpy())
        mat = ncnn.Mat(array)  # wraps ``array`` without a copy: keep it alive while ncnn reads it
        padded = ncnn.copy_make_border(mat, border, border + (-h) % align, border, border + (-w) % align,
                                       border_type, 0.0)  # fmt: skip
        padded = torch.from_numpy(np.array(padded, dtype=np.float32, copy=True))
        del mat, array
        out = run(padded)[..., : h * scale, : w * scale]
        if architecture == "realcugan" and scale == 4:
            out = out + F.interpolate(image.unsqueeze(0), scale_factor=4, mode="nearest")
        return out

    return run_whole_image


def run_ncnn(
    param_path: str | os.PathLike, bin_path: str | os.PathLike, lq: torch.Tensor, *, threads: int
) -> torch.Tensor:
    """Run an ncnn graph on CPU in float32 (no Vulkan, no fp16) on ``lq`` (3, H, W) or (1, 3, H, W)."""
    return ncnn_net(param_path, bin_path, threads=threads)(lq)


def ncnn_parity(
    converted: ConvertedModel,
    param_path: str | os.PathLike,
    bin_path: str | os.PathLike,
    lq: torch.Tensor,
    *,
    threads: int | None = None,
) -> tuple[float, float]:
    """Max and mean absolute difference (in 1/255 units) between srhub's and ncnn's CPU outputs on ``lq``."""
    threads = threads or torch.get_num_threads()
    lq = lq.reshape(1, *lq.shape[-3:]).float()
    reference = ncnn_tool_net(
        param_path, bin_path, architecture=converted.architecture, scale=converted.config["scale"], threads=threads
    )(lq)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            sr = converted.model(lq)
            if converted.outscale is not None:
                sr = ncnn_bicubic_resize(sr, scale=converted.config["scale"], outscale=converted.outscale)
    finally:
        torch.set_num_threads(previous)
    if sr.shape != reference.shape:
        raise ConversionError(f"srhub gives {tuple(sr.shape)}, ncnn {tuple(reference.shape)} for {param_path}")
    diff = (sr - reference).abs() * 255
    return float(diff.max()), float(diff.mean())


def parity_pattern(size: int = 32) -> torch.Tensor:
    """A deterministic (1, 3, size, size) RGB image in [0, 1] with gradients, stripes and edges."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    red = 0.5 + 0.4 * torch.sin(12 * x + 3 * y)
    green = (x + y) / 2
    blue = ((x > 0.5) ^ (y > 0.3)).float() * 0.8 + 0.1
    return torch.stack([red, green, blue]).unsqueeze(0).clamp(0, 1)
