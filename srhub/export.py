"""Export a generator to ONNX with dynamic batch, height and width, checked against PyTorch.

``export_onnx(model, path)`` traces the model once on an example input and writes an
ONNX graph whose input ``lq`` is ``(batch, 3, height, width)`` and output ``sr`` is
``(batch, 3, height*s, width*s)``, for any height and width that are multiples of the
model's ``size_multiple`` (pixel-unshuffle models such as RRDBNet x2/x1 included).
The config of the model is stored in the graph's metadata (``srhub.architecture``,
``srhub.config``, ``srhub.scale``, ``srhub.size_multiple``).

Tracing records one path through the Python code; a model whose forward branches on
the input size (BSRN's ESA pads maps under 15 pixels) would silently keep the branch
of the example. So the export is **verified** by default: the graph runs under ONNX
Runtime on two sizes it was not traced with, one smaller and one larger than the
example, and must match PyTorch within ``atol`` (1e-3); otherwise :class:`ExportError`.
Inputs should not be smaller than the smaller verified size
(:attr:`ExportResult.verified_sizes`).

Needs the ``onnx`` and ``onnxruntime`` packages (``pip install srhub[onnx]``).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

INPUT_NAME = "lq"
OUTPUT_NAME = "sr"
DEFAULT_OPSET = 17
#: Side of the traced example input (rounded up to the size multiple).
EXAMPLE_SIDE = 32
FORMATS = ("onnx",)


class ExportError(ValueError):
    """A model that cannot be exported, or whose exported graph does not match PyTorch."""


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how well the graph matched PyTorch."""

    onnx_bytes: bytes
    path: Path | None
    opset: int
    example_size: tuple[int, int]
    #: (height, width) -> max abs difference against PyTorch, for each verified size.
    max_abs: dict[tuple[int, int], float] = field(default_factory=dict)

    @property
    def verified_sizes(self) -> list[tuple[int, int]]:
        return sorted(self.max_abs)


def _generator(model: nn.Module | str | os.PathLike) -> nn.Module:
    if isinstance(model, (str, os.PathLike)):
        from .hub import load

        model = load(str(model))
    if not isinstance(model, nn.Module):
        raise ExportError(f"expected an nn.Module, a model folder or a pretrained name, got {type(model).__name__}")
    role = getattr(model, "role", "generator")
    if role != "generator":
        raise ExportError(
            f"{type(model).__name__} is a {role}, not a generator: only generators "
            "(lq -> sr with a fixed scale) can be exported"
        )
    scale = getattr(model, "scale", None)
    if not isinstance(scale, int) or scale < 1:
        raise ExportError(f"{type(model).__name__} declares no integer `scale` >= 1 (got {scale!r}); cannot export it")
    return model


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def verification_sizes(example: tuple[int, int], multiple: int) -> list[tuple[int, int]]:
    """Two (height, width) pairs unlike the example: one smaller in both sides, one larger and non-square."""
    h, w = example
    small = (max(multiple, _round_up(max(16, h // 2), multiple)), max(multiple, _round_up(max(16, w // 2) + multiple, multiple)))
    large = (h + 3 * multiple * max(1, 8 // multiple), w + 5 * multiple * max(1, 8 // multiple))
    return [small, large]


def _add_metadata(onnx_bytes: bytes, model: nn.Module) -> bytes:
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    config = getattr(model, "config", None)
    entries = {
        "srhub.architecture": str(getattr(model, "architecture", type(model).__name__)),
        "srhub.scale": str(model.scale),
        "srhub.size_multiple": str(int(getattr(model, "size_multiple", 1))),
    }
    if config is not None:
        entries["srhub.config"] = json.dumps(config, sort_keys=True)
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    proto.producer_name = "srhub"
    return proto.SerializeToString()


def trace_onnx(model: nn.Module, example: torch.Tensor, *, opset: int = DEFAULT_OPSET) -> bytes:
    """The raw ONNX bytes of ``model`` traced on ``example`` with dynamic batch/height/width (no checks)."""
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "height", 3: "width"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The tracer warns about Python-level shape checks (e.g. "h % 2"): they are
            # input validation, and the verification below catches any that matter.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic}, opset_version=opset,
                do_constant_folding=True, dynamo=False,
            )  # fmt: skip
    except Exception as error:  # noqa: BLE001 - any tracing/export failure becomes one clear error
        raise ExportError(f"{type(model).__name__} cannot be exported to ONNX: {type(error).__name__}: {error}") from error
    return buffer.getvalue()


def onnxruntime_session(onnx_bytes: bytes, *, threads: int | None = None):
    """A CPU ONNX Runtime session for ``onnx_bytes`` using ``threads`` intra-op threads (default: torch's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def export_onnx(
    model: nn.Module | str | os.PathLike,
    path: str | os.PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    example_size: tuple[int, int] | None = None,
    verify: bool = True,
    atol: float = 1e-3,
) -> ExportResult:
    """Export a generator to ONNX with dynamic batch, height and width.

    Args:
        model: a generator module, or a model folder / Hub id / pretrained name for :func:`srhub.load`.
        path: where to write the ``.onnx`` file (None: only return the bytes).
        opset: ONNX opset (17 by default).
        example_size: (height, width) of the traced input; default 32x32 rounded up to
            the model's ``size_multiple``.
        verify: run the graph with ONNX Runtime on two other sizes (the smaller one in a
            batch of two) and compare with PyTorch (float32, CPU).
        atol: largest allowed absolute difference in the verification.

    Raises:
        ExportError: not a generator, tracing failed, or the graph does not match PyTorch.
    """
    model = _generator(model)
    if opset < 11:
        raise ExportError(f"opset must be >= 11 (pixel shuffle needs DepthToSpace with CRD mode), got {opset}")
    multiple = int(getattr(model, "size_multiple", 1))
    if example_size is None:
        example_size = (_round_up(EXAMPLE_SIDE, multiple), _round_up(EXAMPLE_SIDE, multiple))
    if any(side < 1 or side % multiple for side in example_size):
        raise ExportError(f"example_size {example_size} must be positive multiples of {multiple}")
    # Trace a float32 CPU copy in eval mode: the caller's model is not modified.
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    was_training = model.training
    if device.type == "cpu" and dtype == torch.float32:
        net = model
    else:
        import copy

        net = copy.deepcopy(model).to("cpu", torch.float32)
    net.eval()
    try:
        generator = torch.Generator().manual_seed(0)
        example = torch.rand(1, 3, *example_size, generator=generator)
        onnx_bytes = _add_metadata(trace_onnx(net, example, opset=opset), net)
        result = ExportResult(onnx_bytes=onnx_bytes, path=None, opset=opset, example_size=tuple(example_size))
        if verify:
            session = onnxruntime_session(onnx_bytes)
            # The smaller size in a batch of two checks the dynamic batch; the larger one alone is
            # enough for the dynamic height and width (for heavy models it is most of the export's time).
            for batch, size in zip((2, 1), verification_sizes(tuple(example_size), multiple), strict=True):
                lq = torch.rand(batch, 3, *size, generator=generator)
                with torch.no_grad():
                    expected = net(lq)
                try:
                    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: lq.numpy()})
                except Exception as error:  # noqa: BLE001
                    raise ExportError(
                        f"the ONNX graph of {type(model).__name__} fails on a {size[0]}x{size[1]} input "
                        f"(traced at {example_size[0]}x{example_size[1]}): {error}"
                    ) from error
                got = torch.from_numpy(got)
                if got.shape != expected.shape:
                    raise ExportError(
                        f"the ONNX graph of {type(model).__name__} gives {tuple(got.shape)} for a {size} input, "
                        f"PyTorch {tuple(expected.shape)}: the graph does not generalise beyond the traced size"
                    )
                result.max_abs[size] = float((got - expected).abs().max())
                if result.max_abs[size] > atol:
                    raise ExportError(
                        f"the ONNX graph of {type(model).__name__} differs from PyTorch by "
                        f"{result.max_abs[size]:.2e} (> {atol:g}) on a {size[0]}x{size[1]} input traced at "
                        f"{example_size[0]}x{example_size[1]}: the model's forward probably depends on the input size"
                    )
    finally:
        model.train(was_training)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(onnx_bytes)
        result.path = path
    return result
