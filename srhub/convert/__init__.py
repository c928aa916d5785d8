"""Conversion of foreign weight formats into srhub model folders.

Everything srhub knows about other projects' files lives in this package, so model
files stay free of format quirks. One module per source format:

* :mod:`srhub.convert.ncnn`: ncnn ``.param`` + ``.bin`` (Real-ESRGAN's, Real-CUGAN's,
  waifu2x's and RealSR's portable releases). :func:`read_ncnn_param` parses the graph,
  :func:`read_ncnn_weights` reads each layer's weights from the ``.bin`` in layer order,
  and :func:`convert_ncnn` walks the weighted layers against the target model's
  parameters (in registration order, which for every supported architecture is also
  execution order), checking layer type, shape, fused activation and the surrounding
  graph. The first layer that does not fit is named in a :class:`ConversionError`.
  :func:`ncnn_net` / :func:`ncnn_reference` run the graph with the ``ncnn`` package
  (with each release's own padding and cropping) for parity checks.
* :mod:`srhub.convert.pth`: original PyTorch checkpoints (``.pth``), read with
  ``torch.load(weights_only=True)`` only, after checking the archive's declared tensor
  sizes; BasicSR / old ESRGAN / Real-CUGAN / waifu2x (nunif) key layouts are mapped onto
  srhub's names and loaded strictly.
* :mod:`srhub.convert.folder`: :func:`convert_file` for any supported file,
  :func:`write_model_folder` (atomic: a temporary folder renamed at the end),
  :func:`convert_to_folder` (what ``srhub convert`` does) and :func:`push_folder`.

Shared pieces (:class:`ConversionError`, :class:`ConvertedModel`, strict loading) live in
:mod:`srhub.convert.common`.
"""

from .common import ConversionError, ConvertedModel, load_strict, skeleton_model, with_weights
from .folder import check_model_folder, convert_file, convert_to_folder, push_folder, write_model_folder
from .ncnn import (
    NCNN_FP16_TAG,
    NCNN_FP32_SCALED_TAG,
    NCNN_FP32_TAG,
    NCNN_INT8_TAG,
    NCNN_MAGIC,
    NcnnGraph,
    NcnnLayer,
    NcnnWeights,
    convert_ncnn,
    infer_ncnn_architecture,
    ncnn_bicubic_resize,
    ncnn_io_names,
    ncnn_net,
    ncnn_parity,
    ncnn_tool_net,
    NCNN_TOOL_PADDING,
    parity_pattern,
    read_ncnn_param,
    read_ncnn_weights,
    run_ncnn,
)
from .pth import convert_pth

__all__ = [
    "NCNN_FP16_TAG", "NCNN_FP32_SCALED_TAG", "NCNN_FP32_TAG", "NCNN_INT8_TAG", "NCNN_MAGIC",
    "ConversionError", "ConvertedModel", "NcnnGraph", "NcnnLayer", "NcnnWeights",
    "check_model_folder", "convert_file", "convert_ncnn", "convert_pth", "convert_to_folder",
    "infer_ncnn_architecture", "load_strict", "ncnn_bicubic_resize", "ncnn_io_names", "ncnn_net",
    "ncnn_parity", "ncnn_tool_net", "NCNN_TOOL_PADDING", "parity_pattern", "push_folder", "read_ncnn_param", "read_ncnn_weights", "run_ncnn",
    "skeleton_model", "with_weights", "write_model_folder",
]  # fmt: skip
