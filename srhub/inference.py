"""Running a super-resolution model on real images: tiling, precision, alpha, batches.

``upscale`` takes a Pillow image, a numpy array, a tensor or an :class:`srhub.io.Image`
and returns the same kind, upscaled by any factor. Underneath, ``tiled_forward`` runs
any generator (``forward(lq) -> sr``, ``scale``, ``size_multiple``) tile by tile:

* **Seam-free tiling.** The image is covered by equal tiles (at most ``tile`` pixels a
  side) that overlap their neighbours by at least ``tile_overlap`` low-resolution
  pixels. Across each overlap the two tiles are blended with complementary
  raised-cosine weights; the outer quarter of every overlap takes no weight at all,
  so pixels next to a tile's cut edge (where the model saw padding instead of the
  image) never reach the result. Sides on the image border are not faded. The sum
  is divided by the weight sum (which factorises per axis, so no 2-D weight buffer).
* **Memory.** The input and the float32 output buffer stay on the CPU; only one
  tile at a time lives on the device. On an out-of-memory error the tile size is
  halved and the image restarted (down to ``MIN_TILE``).
* **Padding.** The whole image is reflect-padded once (bottom/right) to the model's
  ``size_multiple``, and tile sizes and positions are multiples of it, so every tile
  sees the same pixel grouping (pixel-unshuffle phase) as an untiled run. The
  padding is cropped off the output.
* **Precision.** ``"auto"`` is float32 on the CPU, float16 on CUDA and MPS when the
  model declares ``supports_half`` (else bfloat16 where supported, else float32).
  A half-precision tile that comes back non-finite or all black (overflow) is
  recomputed in float32, with a warning.
* **Threads.** Nothing is stored on the model or on any shared object per call;
  device/dtype copies of a model are made once, under a lock, in a small cache
  that notices when the weights change. Several threads may share one model.
* **Alpha.** Colour is premultiplied by alpha before the model and divided after,
  so the hidden colour of transparent pixels cannot bleed into visible edges.
  Alpha itself goes through the model (as a grey image) or bicubic interpolation.
* **outscale.** Any factor: the model runs at its own scale, then the result is
  resized with antialiased bicubic interpolation (``torch.nn.functional.interpolate``)
  to ``round(H * outscale) x round(W * outscale)``. Factors above the model's scale
  add no detail beyond what bicubic gives.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from torch import nn
from torch.nn import functional as F

from . import io as imageio
from .io import (
    IMAGE_EXTENSIONS,
    MIN_SIDE,
    Image,
    ImageError,
    ImageTooSmall,
    read_image,
    write_image,
)

DEFAULT_TILE = 512
DEFAULT_TILE_OVERLAP = 32
#: Out-of-memory back-off stops below this tile size.
MIN_TILE = 16
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
ALPHA_MODES = ("model", "bicubic")
EXISTING = ("error", "skip", "overwrite")
#: Files ``upscale_files`` takes: the image formats srhub writes, and GIF (animated GIFs stay GIFs).
INPUT_EXTENSIONS = (*IMAGE_EXTENSIONS, ".gif")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TileOutOfMemory(RuntimeError):
    """Out of memory even with the smallest tile size."""


# ---------------------------------------------------------------------- models, devices, precision
_loaded_lock = threading.Lock()
_loaded: dict[str, nn.Module] = {}
#: Held while a squeeze-excitation model's tiles share whole-image gates (state on the model's blocks).
_gates_lock = threading.RLock()


def resolve_model(model: nn.Module | str | os.PathLike) -> nn.Module:
    """The generator to run: a module as given, or one loaded (once) with :func:`srhub.load`."""
    if isinstance(model, (str, os.PathLike)):
        key = str(model)
        with _loaded_lock:
            if key not in _loaded:
                from .hub import load

                _loaded[key] = load(key)
            model = _loaded[key]
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, a model folder or a name, got {type(model).__name__}")
    scale = getattr(model, "scale", None)
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"{type(model).__name__} declares no integer `scale` >= 1 (got {scale!r})")
    role = getattr(model, "role", "generator")
    if role != "generator":
        raise ValueError(f"{type(model).__name__} is a {role}, not a generator: it cannot upscale images")
    return model


def pipeline_outscale(model: nn.Module | str | os.PathLike) -> float | None:
    """The released pipeline's scale of a pretrained name when it resizes the network's output, else None.

    E.g. "realesr-animevideov3-x2" is the x4 network followed by a x0.5 resize.
    """
    if not isinstance(model, str):
        return None
    from .pretrained import PRETRAINED

    spec = PRETRAINED.get(model)
    return None if spec is None else spec.outscale


def _model_device(model: nn.Module) -> torch.device | None:
    parameter = next(model.parameters(), None)
    return None if parameter is None else parameter.device


def resolve_device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    """``device`` as given; else the model's device if it is not the CPU; else CUDA, MPS or the CPU."""
    if device is not None:
        return torch.device(device)
    model_device = _model_device(model)
    if model_device is not None and model_device.type != "cpu":
        return model_device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(precision: str, device: torch.device, model: nn.Module) -> torch.dtype:
    """The compute dtype for ``precision`` ("auto", "fp32", "fp16", "bf16") on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return _DTYPES[precision]
    half = getattr(model, "supports_half", True)
    bf16 = getattr(model, "supports_bfloat16", True)
    if device.type == "cuda":
        if half:
            return torch.float16
        return torch.bfloat16 if bf16 and torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "mps":
        return torch.float16 if half else torch.float32
    return torch.float32


_cache_lock = threading.Lock()
# (id(model), device, dtype) -> (weak reference to the model, weights fingerprint, prepared copy)
_cache: dict[tuple[int, str, torch.dtype], tuple[weakref.ref, tuple, nn.Module]] = {}
_CACHE_SIZE = 4


def _fingerprint(model: nn.Module) -> tuple:
    """Changes when a parameter or buffer is replaced or updated in place (optimizer steps)."""
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def _prepared(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """``model`` itself when it is ready (device, dtype, eval mode); else a cached converted copy.

    The shared model is never modified, so concurrent calls with other devices or
    precisions cannot interfere with each other.
    """
    tensors = [*model.parameters(), *model.buffers()]
    floating = [t for t in tensors if t.is_floating_point()]
    ready = not model.training and all(t.device.type == device.type for t in tensors)
    ready = ready and all(t.dtype == dtype for t in floating)
    if ready and (device.index is None or all(t.device == device for t in tensors)):
        return model
    key = (id(model), str(device), dtype)
    fingerprint = _fingerprint(model)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[0]() is model and entry[1] == fingerprint:
            return entry[2]
        prepared = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
        for parameter in prepared.parameters():
            parameter.requires_grad_(False)
        _cache.pop(key, None)
        _cache[key] = (weakref.ref(model), fingerprint, prepared)
        while len(_cache) > _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        return prepared


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):  # CUDA (torch.cuda.OutOfMemoryError is the same class)
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


# ---------------------------------------------------------------------- tiling
def tile_layout(length: int, tile: int, overlap: int, multiple: int = 1) -> tuple[int, list[int]]:
    """Tile size and start offsets covering ``[0, length)`` (``length`` a multiple of ``multiple``).

    Tiles are of equal size, at most ``tile`` rounded up to ``multiple``; each overlaps
    the next by at least ``overlap``; sizes and starts are multiples of ``multiple``, so
    every tile sees the same pixel grouping (pixel-unshuffle phase) as the whole image.
    One tile when the length fits.
    """
    if length % multiple:
        raise ValueError(f"length {length} is not a multiple of {multiple}")
    units, tile_units, overlap_units = length // multiple, max(1, -(-tile // multiple)), -(-overlap // multiple)
    if units <= tile_units:
        return length, [0]
    overlap_units = min(overlap_units, tile_units - 1)
    count = math.ceil((units - overlap_units) / (tile_units - overlap_units))
    size = min(units, math.ceil((units + (count - 1) * overlap_units) / count))
    starts = [round(i * (units - size) / (count - 1)) * multiple for i in range(count)]
    return size * multiple, starts


def _rising(length: int) -> torch.Tensor:
    """Weights rising from 0 to 1 across an overlap of ``length`` pixels.

    Zero on the first quarter, a raised cosine over the middle half, one on the last
    quarter; ``_rising(n) + _rising(n).flip(0) == 1``, so neighbours sum to one.
    """
    position = (torch.arange(length, dtype=torch.float64) + 0.5) / length
    ramp = ((position - 0.25) / 0.5).clamp(0, 1)
    return torch.sin(ramp * (math.pi / 2)).pow(2).float()


def _axis_weights(starts: list[int], size: int, scale: int) -> list[torch.Tensor]:
    """Per-tile blending weights along one axis, at output resolution."""
    weights = []
    for i, start in enumerate(starts):
        weight = torch.ones(size * scale)
        if i > 0:
            shared = (starts[i - 1] + size - start) * scale
            weight[:shared] *= _rising(shared)
        if i < len(starts) - 1:
            shared = (start + size - starts[i + 1]) * scale
            weight[size * scale - shared :] *= _rising(shared).flip(0)
        weights.append(weight.clamp_min_(1e-6))  # positive everywhere: the weight sum can never be 0
    return weights


def _half_failed(sr: torch.Tensor, lq: torch.Tensor) -> bool:
    """A reduced-precision result that overflowed: non-finite, or black where the input is not."""
    return not bool(torch.isfinite(sr).all()) or (float(sr.max()) <= 0 and float(lq.max()) > 1 / 255)


@dataclass
class _Run:
    """What one ``tiled_forward`` call needs; lives on the caller's stack only."""

    model: nn.Module
    device: torch.device
    dtype: torch.dtype
    scale: int
    multiple: int
    fallbacks: int = 0

    def fp32_model(self) -> nn.Module:
        return _prepared(self.model, self.device, torch.float32)

    def forward(self, net: nn.Module, lq: torch.Tensor) -> torch.Tensor:
        """One tile (sides multiples of ``size_multiple``): run on the device, back to float32 on the CPU."""
        x = lq.to(device=self.device, dtype=self.dtype, copy=True)
        with torch.no_grad():
            sr = net(x)
            if self.dtype != torch.float32 and _half_failed(sr, x):
                self.fallbacks += 1
                sr = self.fp32_model()(lq.to(device=self.device, dtype=torch.float32, copy=True))
        expected = (lq.shape[0], 3, lq.shape[2] * self.scale, lq.shape[3] * self.scale)
        if tuple(sr.shape) != expected:
            raise ValueError(
                f"{type(self.model).__name__} returned {tuple(sr.shape)} for input {tuple(lq.shape)}; "
                f"expected {expected} (scale {self.scale})"
            )
        return sr.to(device="cpu", dtype=torch.float32)


def _tiled(run: _Run, net: nn.Module, lq: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    batch, _, height, width = lq.shape
    s = run.scale
    if max(height, width) <= tile:  # one tile: the whole image (possibly unpadded, see ``pads_input``)
        return run.forward(net, lq)
    # A model that pads any size itself (``pads_input``) gets tiles on its stride grid laid out over the
    # size rounded up to the multiple; the last tiles are cut at the image's edge and the model pads them
    # as it pads the whole image.
    grid_h, grid_w = height, width
    if getattr(run.model, "pads_input", False):
        grid_h, grid_w = -(-height // run.multiple) * run.multiple, -(-width // run.multiple) * run.multiple
    size_y, starts_y = tile_layout(grid_h, tile, overlap, run.multiple)
    size_x, starts_x = tile_layout(grid_w, tile, overlap, run.multiple)
    weights_y = [w[: height * s - y0 * s] for y0, w in zip(starts_y, _axis_weights(starts_y, size_y, s))]
    weights_x = [w[: width * s - x0 * s] for x0, w in zip(starts_x, _axis_weights(starts_x, size_x, s))]
    out = torch.zeros(batch, 3, height * s, width * s)
    for y0, wy in zip(starts_y, weights_y):
        for x0, wx in zip(starts_x, weights_x):
            sr = run.forward(net, lq[:, :, y0 : y0 + size_y, x0 : x0 + size_x])
            sr.mul_(wy.view(-1, 1)).mul_(wx.view(1, -1))
            out[:, :, y0 * s : y0 * s + len(wy), x0 * s : x0 * s + len(wx)] += sr
    # The weight sum factorises: sum over tiles of wy(y) * wx(x) = (sum wy)(y) * (sum wx)(x).
    total_y, total_x = torch.zeros(height * s), torch.zeros(width * s)
    for y0, wy in zip(starts_y, weights_y):
        total_y[y0 * s : y0 * s + len(wy)] += wy
    for x0, wx in zip(starts_x, weights_x):
        total_x[x0 * s : x0 * s + len(wx)] += wx
    return out.div_(total_y.view(-1, 1)).div_(total_x.view(1, -1))


def tiled_forward(
    model: nn.Module,
    lq: torch.Tensor,
    *,
    tile: int = DEFAULT_TILE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    precision: str = "auto",
    device: str | torch.device | None = None,
    fast: bool = True,
) -> torch.Tensor:
    """Run a generator on ``lq`` (B, 3, H, W) tile by tile; float32 ``(B, 3, H*s, W*s)`` on the CPU.

    Args:
        tile: largest tile side in input pixels; 0 runs the whole image at once.
            Halved automatically after an out-of-memory error.
        tile_overlap: least overlap between neighbouring tiles, in input pixels; capped
            at half the tile. Each side's outer quarter of it is discarded, so it should
            exceed twice the model's receptive-field radius for an exact match; 32 makes
            Real-ESRGAN's models match an untiled run within 1/255.
        precision: "auto", "fp32", "fp16" or "bf16" (see the module docstring).
        device: where the model runs; None picks the model's device, else CUDA, MPS, CPU.
        fast: run tiles on the fastest path :mod:`srhub.accel` picks for the device
            (e.g. an exported graph on OpenVINO on the CPU); False runs eager PyTorch.
    """
    if lq.dim() != 4 or lq.shape[1] != 3 or not lq.is_floating_point():
        raise ValueError(f"lq must be a float (B, 3, H, W) tensor, got {lq.dtype} {tuple(lq.shape)}")
    if tile < 0 or tile_overlap < 0:
        raise ValueError(f"tile and tile_overlap must be >= 0, got {tile} and {tile_overlap}")
    if 0 < tile < MIN_TILE:
        raise ValueError(f"tile must be 0 (whole image) or at least {MIN_TILE}, got {tile}")
    model = resolve_model(model)
    dev = resolve_device(device, model)
    run = _Run(model, dev, resolve_dtype(precision, dev, model), model.scale, int(getattr(model, "size_multiple", 1)))
    net = _prepared(model, dev, run.dtype)
    if fast:
        from .accel import fast_forward

        net = fast_forward(model, net, device=dev, precision=precision)
    lq = lq.detach().to("cpu", torch.float32)
    # Pad the whole image once to the size multiple (reflect, at the bottom/right) and tile the padded
    # image: tiles then see exactly what an untiled run sees. The padding is cropped off the output.
    height, width = lq.shape[-2:]
    pad_h, pad_w = -height % run.multiple, -width % run.multiple
    # Models that pad any size themselves, as their reference does (Real-CUGAN, waifu2x cunet), are not
    # padded here: their size multiple only places tiles on their stride grid (see _tiled).
    if getattr(model, "pads_input", False):
        pad_h = pad_w = 0
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        lq = F.pad(lq, (0, pad_w, 0, pad_h), mode=mode)
    size = tile if tile > 0 else max(lq.shape[-2:])
    # Models whose unpadded convolutions reach far (Real-CUGAN, waifu2x) declare the overlap they need.
    tile_overlap = max(tile_overlap, int(getattr(model, "min_tile_overlap", 0)))
    while True:
        try:
            if hasattr(model, "synchronised_gates") and max(lq.shape[-2:]) > size:
                # Squeeze-excitation models (Real-CUGAN, waifu2x cunet) gate by whole-image channel means:
                # tiles share the whole image's means (computed tile by tile, block by block, if it is larger).
                # The shared means live on the (shared) model's blocks, so one such run at a time.
                eager = _prepared(model, dev, run.dtype)
                with _gates_lock, eager.synchronised_gates(lq.to(dev, run.dtype), max_pixels=size * size):
                    result = _tiled(run, eager, lq, size, min(tile_overlap, size // 2))
            else:
                result = _tiled(run, net, lq, size, min(tile_overlap, size // 2))
            break
        except Exception as error:  # only out-of-memory errors are handled; others re-raised
            if not _is_out_of_memory(error):
                raise
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
        # Outside the except block, so the failed attempt's buffers are freed before retrying.
        _empty_cache(dev)
        if size // 2 < MIN_TILE:
            raise TileOutOfMemory(f"out of memory on {dev} even with {size}px tiles: {message}")
        warnings.warn(f"out of memory on {dev} with {size}px tiles; retrying with {size // 2}px tiles", stacklevel=2)
        size //= 2
    if run.fallbacks:
        warnings.warn(
            f"{run.fallbacks} tile(s) overflowed in {run.dtype} and were recomputed in float32", stacklevel=2
        )
    return result[..., : height * run.scale, : width * run.scale]


# ---------------------------------------------------------------------- images
def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(image[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0]


def _upscale_image(
    image: Image,
    model: nn.Module,
    *,
    outscale: float | None,
    tile: int,
    tile_overlap: int,
    alpha: str,
    precision: str,
    device: str | torch.device | None,
    fast: bool = True,
) -> Image:
    if image.height < MIN_SIDE or image.width < MIN_SIDE:
        raise ImageTooSmall(
            f"{image.source}: {image.width}x{image.height} is too small to upscale "
            f"(each side must be at least {MIN_SIDE} pixels)"
        )
    options = {"tile": tile, "tile_overlap": tile_overlap, "precision": precision, "device": device, "fast": fast}
    scale = model.scale
    rgb = image.pixels.expand(3, -1, -1) if image.is_grayscale else image.pixels
    if image.alpha is not None:
        rgb = rgb * image.alpha  # premultiplied: hidden colour under alpha 0 becomes black
    sr = tiled_forward(model, rgb[None], **options)[0]
    sr_alpha = None
    if image.alpha is not None:
        if alpha == "model":
            sr_alpha = tiled_forward(model, image.alpha.expand(3, -1, -1)[None], **options)[0].mean(0, keepdim=True)
        else:
            sr_alpha = F.interpolate(image.alpha[None], scale_factor=scale, mode="bicubic", align_corners=False)[0]
    if outscale is not None and outscale != scale:
        size = (max(1, round(image.height * outscale)), max(1, round(image.width * outscale)))
        sr = _resize(sr, size)
        sr_alpha = None if sr_alpha is None else _resize(sr_alpha, size)
    if image.is_grayscale:
        sr = sr.mean(0, keepdim=True)
    sr.clamp_(0, 1)
    if sr_alpha is not None:
        sr_alpha.clamp_(0, 1)
        visible = sr_alpha > 0.5 / 255
        sr = torch.where(visible, sr / sr_alpha.clamp_min(1e-6), 0.0).clamp_(0, 1)
    return image.with_pixels(sr, sr_alpha)


def _tensor_to_image(tensor: torch.Tensor) -> Image:
    if tensor.shape[0] not in (1, 2, 3, 4):
        raise ValueError(f"expected 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels, got {tensor.shape[0]}")
    tensor = tensor.detach().to("cpu", torch.float32)
    if not torch.isfinite(tensor).all():
        raise ValueError("the image tensor holds NaN or infinite values")
    has_alpha = tensor.shape[0] in (2, 4)
    pixels, alpha = (tensor[:-1], tensor[-1:]) if has_alpha else (tensor, None)
    return Image(pixels, alpha, source="<tensor>", mode={1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[tensor.shape[0]])


def upscale(
    image: PILImage.Image | np.ndarray | torch.Tensor | Image,
    *,
    model: nn.Module | str | os.PathLike,
    outscale: float | None = None,
    tile: int = DEFAULT_TILE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    alpha: str = "model",
    precision: str = "auto",
    device: str | torch.device | None = None,
    fast: bool = True,
):
    """Upscale an image with a super-resolution model; returns the same kind of image.

    Args:
        image: a Pillow image (L, LA, RGB, RGBA, P, CMYK, I;16, ...; returned as L, LA,
            RGB, RGBA or I;16 with the ICC profile kept), a numpy array ``(H, W)`` or
            ``(H, W, C)`` with C = 1, 2, 3, 4 in RGB order (uint8 and uint16 keep their
            type; float arrays in [0, 1] come back float32), a float tensor
            ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1] (returned on its device and in its
            dtype), or an :class:`srhub.io.Image` from :func:`srhub.read_image`.
        model: a generator module, or a model folder, Hub repo id or pretrained name
            loaded with :func:`srhub.load` (once per process).
        outscale: final scale factor (any positive number); None keeps the model's
            scale (for a pretrained name whose released pipeline resizes, such as
            "realesr-animevideov3-x2", that pipeline's scale). The model runs at its
            own scale and the result is resized.
        tile: largest tile side in input pixels (0: the whole image at once).
        tile_overlap: least overlap of neighbouring tiles in input pixels.
        alpha: how the alpha channel is upscaled, "model" or "bicubic".
        precision: "auto", "fp32", "fp16" or "bf16".
        device: where the model runs (None: the model's device, else CUDA, MPS, CPU).
        fast: use the fastest path :mod:`srhub.accel` picks for the device (on the CPU an
            exported graph on OpenVINO or ONNX Runtime, within 0.5/255 of float32 PyTorch);
            False runs eager PyTorch.

    Raises:
        ImageTooSmall: a side shorter than ``srhub.io.MIN_SIDE`` (4) pixels.
        ValueError: bad arguments or an image of an unsupported shape or type.
    """
    if outscale is None:
        outscale = pipeline_outscale(model)
    model = resolve_model(model)
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
    if outscale is not None and not (isinstance(outscale, (int, float)) and math.isfinite(outscale) and outscale > 0):
        raise ValueError(f"outscale must be a positive number, got {outscale!r}")
    run = {
        "outscale": outscale, "tile": tile, "tile_overlap": tile_overlap,
        "alpha": alpha, "precision": precision, "device": device, "fast": fast,
    }  # fmt: skip
    if isinstance(image, Image):
        return _upscale_image(image, model, **run)
    if isinstance(image, PILImage.Image):
        return _upscale_image(imageio.from_pil(image), model, **run).to_pil()
    if isinstance(image, np.ndarray):
        result = _upscale_image(imageio.from_numpy(image), model, **run)
        if image.dtype in (np.uint8, np.uint16):
            return result.to_numpy()
        channels = result.pixels if result.alpha is None else torch.cat([result.pixels, result.alpha])
        array = channels.numpy().transpose(1, 2, 0)
        return array[..., 0] if image.ndim == 2 else np.ascontiguousarray(array)
    if isinstance(image, torch.Tensor):
        if not image.is_floating_point() or image.dim() not in (3, 4):
            raise ValueError(f"expected a float (C, H, W) or (B, C, H, W) tensor, got {image.dtype} {tuple(image.shape)}")
        batch = image if image.dim() == 4 else image[None]
        results = []
        for item in batch:
            result = _upscale_image(_tensor_to_image(item), model, **run)
            results.append(result.pixels if result.alpha is None else torch.cat([result.pixels, result.alpha]))
        out = torch.stack(results).to(device=image.device, dtype=image.dtype)
        return out if image.dim() == 4 else out[0]
    raise TypeError(f"cannot upscale a {type(image).__name__}; pass a PIL image, numpy array, tensor or srhub.io.Image")


# ---------------------------------------------------------------------- files and folders
@dataclass
class BatchReport:
    """What :func:`upscale_files` did with each input."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def collect_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Input files in order: files as given, folders expanded to their images (sorted, not recursive)."""
    files: list[Path] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            files.extend(
                sorted(p for p in entry.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in INPUT_EXTENSIONS)
            )
        else:
            files.append(entry)  # missing files are reported per file by upscale_files
    return files


def output_path(source: Path, output: Path, *, suffix: str, format: str, single: bool) -> Path:
    """Where the result of ``source`` goes: ``output`` itself for one input and an image extension, else in the folder."""
    if single and output.suffix.lower() in INPUT_EXTENSIONS:
        return output
    extension = source.suffix.lower() if format == "same" else "." + format.lower()
    if extension == ".gif" and format == "same":
        return output / f"{source.stem}{suffix}.gif"  # GIF is written only for (animated) GIF input
    if extension not in IMAGE_EXTENSIONS:
        extension = ".png"
    return output / f"{source.stem}{suffix}{extension}"


def upscale_files(
    inputs: list[str | os.PathLike],
    output: str | os.PathLike,
    *,
    model: nn.Module | str | os.PathLike,
    outscale: float | None = None,
    tile: int = DEFAULT_TILE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    alpha: str = "model",
    precision: str = "auto",
    device: str | torch.device | None = None,
    fast: bool = True,
    format: str = "same",
    suffix: str | None = None,
    existing: str = "error",
    quality: int = 95,
    max_pixels: int | None = imageio.DEFAULT_MAX_PIXELS,
    progress: bool = True,
    on_file=None,
    single: bool | None = None,
) -> BatchReport:
    """Upscale image files and folders into ``output`` (a folder, or a file name for one input).

    Each file is read, upscaled and written on its own: a failure is reported
    (printed and listed in the report) and the batch goes on.

    Args:
        format: "png", "jpg", "webp" or "same" (the input's extension).
        suffix: added to each output stem; default ``_x<scale>`` (e.g. ``_x4``, ``_x2.5``).
        existing: what to do when the output exists: "error" (report it as failed),
            "skip" or "overwrite".
        progress: show a tqdm progress bar on stderr.
        on_file: called with 1 after each input file, whatever its outcome (for progress summed
            over processes by :mod:`srhub.distributed`).
        single: treat ``output`` as one file's name (default: when one file, not a folder, is given);
            set by :mod:`srhub.distributed`, which hands each process part of the inputs.
        Other arguments as in :func:`upscale` and :func:`srhub.read_image`.
    """
    from tqdm.auto import tqdm

    from .animation import is_animated, upscale_animation

    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {EXISTING}, got {existing!r}")
    if format != "same" and "." + format.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"unknown output format {format!r}; use png, jpg, webp or same")
    if outscale is None:
        outscale = pipeline_outscale(model)
    model = resolve_model(model)
    if suffix is None:
        suffix = f"_x{outscale if outscale is not None else model.scale:g}"
    output = Path(output)
    files = collect_inputs(inputs)
    if single is None:
        single = len(files) == 1 and not Path(inputs[0]).is_dir()
    report = BatchReport()
    produced: dict[Path, Path] = {}
    for source in tqdm(files, desc="upscaling", unit="image", disable=not progress, file=sys.stderr):
        try:
            try:
                target = output_path(source, output, suffix=suffix, format=format, single=single)
                if target.resolve() == source.resolve():
                    raise ImageError(f"{source}: the output would replace the input; choose another folder or suffix")
                if target.resolve() in produced:
                    raise ImageError(f"{source}: its output {target} was already written from {produced[target.resolve()]}")
                if target.exists() and existing != "overwrite":
                    if existing == "skip":
                        report.skipped.append(source)
                        continue
                    raise FileExistsError(f"{target} exists (use --overwrite or --skip-existing)")
                if is_animated(source) or source.suffix.lower() == ".gif":  # every frame, its duration, the loop count
                    upscale_animation(
                        source, target, model=model, max_pixels=max_pixels, quality=quality, outscale=outscale,
                        tile=tile, tile_overlap=tile_overlap, alpha=alpha, precision=precision, device=device, fast=fast,
                    )  # fmt: skip
                    produced[target.resolve()] = source
                    report.written.append(target)
                    continue
                image = read_image(source, max_pixels=max_pixels)
                result = upscale(
                    image, model=model, outscale=outscale, tile=tile, tile_overlap=tile_overlap,
                    alpha=alpha, precision=precision, device=device, fast=fast,
                )
                write_image(result, target, quality=quality)
                produced[target.resolve()] = source
                report.written.append(target)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # noqa: BLE001 - one bad file must not stop the batch
                message = str(error) if isinstance(error, ImageError) else f"{source}: {type(error).__name__}: {error}"
                report.failed.append((source, message))
                tqdm.write(f"failed: {message}", file=sys.stderr)
        finally:
            if on_file is not None:
                on_file(1)
    return report
