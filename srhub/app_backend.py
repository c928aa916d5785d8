"""The work behind ``app.py`` (the Gradio demo), kept apart from the UI.

What lives here is plumbing, not model maths: which models the demo offers, a
load-once model cache, guards on the uploaded files, the ZeroGPU decorator and
the three jobs the app's endpoints do (``upscale``, ``evaluate``, ``models``).
Super-resolution itself is ``srhub.upscale``, the LR maker and the bicubic
baseline are ``srhub.degradations.imresize``, the numbers come from
``srhub.metrics``.

Problems the user can fix (a bad file, an image too large, a wrong ground
truth) raise :class:`InputError`, a ``ValueError`` that ``app.py`` shows as a
``gr.Error``.

Settings (environment variables; the model list is read once, see :func:`clear_cache`):

* ``SRHUB_APP_MODELS``: a folder of srhub model folders (``config.json`` +
  ``model.safetensors``) offered *instead of* the pretrained models; the tests
  point it at tiny models.
* ``SRHUB_APP_MAX_PIXELS``: the largest upload in pixels (default 2048 x 2048).
* ``SRHUB_APP_DEVICE``: force ``cpu`` or ``cuda`` (default: CUDA when available).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from . import io as imageio
from .inference import upscale
from .models import SRModel

DEFAULT_TILE = 256
SMALLEST_SIDE = 8  # below this an SR model has nothing to work with


def max_pixels() -> int:
    """The largest upload in pixels (``SRHUB_APP_MAX_PIXELS``, default 2048 x 2048)."""
    return int(os.environ.get("SRHUB_APP_MAX_PIXELS", 2048 * 2048))


class InputError(ValueError):
    """A problem with what the user sent (file, size, settings); the message is shown to them."""


# ---------------------------------------------------------------------- ZeroGPU


def on_zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space (the ``spaces`` package sets ``SPACES_ZERO_GPU``)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu(duration: Callable[..., int]) -> Callable[[Callable], Callable]:
    """``spaces.GPU(duration=...)`` on ZeroGPU, a no-op decorator everywhere else."""
    if on_zero_gpu():
        import spaces

        return spaces.GPU(duration=duration)
    return lambda fn: fn


def device() -> str:
    forced = os.environ.get("SRHUB_APP_DEVICE")
    if forced:
        return forced
    return "cuda" if on_zero_gpu() or torch.cuda.is_available() else "cpu"


def device_label() -> str:
    name = device()
    if name.startswith("cuda") and torch.cuda.is_available():
        return f"{name} ({torch.cuda.get_device_name()})"
    return "ZeroGPU" if on_zero_gpu() else name


# ---------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the model dropdown and of the ``/models`` endpoint."""

    name: str
    #: The factor the model's pipeline upscales by (what the user gets by default).
    scale: int
    #: The network's own factor; differs from ``scale`` for pipelines that resize the
    #: network's output (Real-ESRGAN's animevideov3 x2 and x3).
    network_scale: int
    num_parameters: int
    architecture: str
    description: str
    source: str  # "pretrained" or a folder path
    #: What the model is for: "anime", "photo" or "general" (the dropdown's groups).
    content: str = "general"

    @property
    def label(self) -> str:
        params = self.num_parameters
        size = f"{params / 1e6:.1f} M" if params >= 100_000 else f"{params / 1e3:.1f} k"
        group = GROUP_LABELS.get(self.content, self.content.capitalize())
        return f"{group} · {self.name} · x{self.scale} · {size} params · {self.description}"


#: Dropdown groups, in display order: a visitor looks for anime or photo models first.
GROUP_LABELS = {"anime": "Anime", "photo": "Photo", "general": "General"}


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0].replace("\n", " ").strip()


def _folder_info(folder: Path) -> ModelInfo:
    """Describe an srhub model folder from its config and safetensors header (no weights read)."""
    from safetensors import safe_open

    from .models import get_model_class

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cls = get_model_class(config["architecture"])
    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        params = sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())
    # Non-persistent buffers are not in the file, so this is the parameter count.
    return ModelInfo(
        name=folder.name,
        scale=int(config.get("scale", 1)),
        network_scale=int(config.get("scale", 1)),
        num_parameters=int(params),
        architecture=config["architecture"],
        description=_first_line(cls.__doc__),
        source=str(folder),
    )


def _pretrained_infos() -> list[ModelInfo]:
    from . import pretrained

    return [
        ModelInfo(
            name=spec.name,
            scale=spec.outscale or spec.scale,
            network_scale=spec.scale,
            num_parameters=spec.num_parameters,
            architecture=spec.architecture,
            description=spec.description,
            source="pretrained",
            content=spec.content,
        )
        for spec in pretrained.list_pretrained()
    ]


_catalogue: dict[str, ModelInfo] | None = None
_models: dict[str, SRModel] = {}
_lock = threading.Lock()


def catalogue() -> dict[str, ModelInfo]:
    """Every model the app offers, by name, in display order (smallest first)."""
    global _catalogue
    with _lock:
        if _catalogue is None:
            folder = os.environ.get("SRHUB_APP_MODELS")
            if folder:
                infos = [_folder_info(p) for p in sorted(Path(folder).iterdir()) if (p / "config.json").is_file()]
                if not infos:
                    raise RuntimeError(f"SRHUB_APP_MODELS={folder} holds no srhub model folders")
            else:
                infos = _pretrained_infos()
            _catalogue = {info.name: info for info in sorted(infos, key=lambda i: (i.num_parameters, i.name))}
        return _catalogue


def clear_cache() -> None:
    """Forget the catalogue and the loaded models (they are reloaded on the next call)."""
    global _catalogue
    with _lock:
        _catalogue = None
        _models.clear()


def default_model() -> str:
    """The smallest model: quick on CPU, so the app's first run answers fast."""
    return next(iter(catalogue()))


def get_model(name: str) -> SRModel:
    """The model called ``name``, loaded once on the app's device and cached.

    Call it outside the ZeroGPU function: there the model is loaded on the CPU and
    moved to "cuda" through ZeroGPU's patched torch, which keeps it between calls.
    """
    infos = catalogue()
    if name not in infos:
        raise InputError(f"unknown model {name!r}; choose one of: {', '.join(infos)}")
    with _lock:
        if name not in _models:
            from .hub import load
            from .pretrained import load_pretrained

            source = infos[name].source
            model = load_pretrained(name) if source == "pretrained" else load(source)
            _models[name] = model.to(device()).eval()
        return _models[name]


def grouped_choices() -> list[tuple[str, str]]:
    """(label, name) pairs for the model dropdown: anime models, then photo, then general; smallest first in each."""
    order = {content: i for i, content in enumerate(GROUP_LABELS)}
    infos = sorted(catalogue().values(), key=lambda i: (order.get(i.content, len(order)), i.num_parameters, i.name))
    return [(info.label, info.name) for info in infos]


def list_models() -> list[dict[str, Any]]:
    """What ``/models`` returns: one dict per model (name, scale, params, architecture, description)."""
    return [{**asdict(info), "label": info.label} for info in catalogue().values()]


# ---------------------------------------------------------------------- images


def read_upload(path: str | os.PathLike | None, *, what: str = "image") -> "imageio.Image":
    """Read an uploaded file with :func:`srhub.io.read_image`, answering problems with :class:`InputError`.

    ``srhub.io`` checks the pixel count from the header before decoding, refuses
    non-images and damaged files, applies EXIF orientation, and keeps alpha,
    16 bits and the colour profile for the result.
    """
    if path is None or str(path) == "":
        raise InputError(f"no {what} given: upload an image first")
    limit = max_pixels()
    try:
        record = imageio.read_image(path, max_pixels=limit)
    except imageio.ImageTooLarge as error:
        raise InputError(
            f"the {what} is too large for this app: at most {limit / 1e6:.1f} Mpx "
            f"(e.g. {math.isqrt(limit)}x{math.isqrt(limit)}); crop or downscale it first"
        ) from error
    except (imageio.ImageError, OSError) as error:  # OSError: FileNotFoundError and the like
        reason = str(error).replace(f"{path}: ", "")
        raise InputError(f"the {what} cannot be read: {reason}") from error
    if min(record.width, record.height) < SMALLEST_SIDE:
        raise InputError(
            f"the {what} is {record.width}x{record.height}; both sides must be at least {SMALLEST_SIDE} pixels"
        )
    return record


def for_display(record: "imageio.Image") -> Image.Image:
    """8-bit RGB, or RGBA when the image has alpha (what the browser shows)."""
    return Image.fromarray(record.to_numpy(bit_depth=8)).convert("RGBA" if record.alpha is not None else "RGB")


def rgb8(record: "imageio.Image") -> Image.Image:
    """8-bit RGB for measuring: grey expanded, transparency composited on white."""
    image = for_display(record)
    if image.mode == "RGBA":
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    return image.convert("RGB")


def to_tensor(image: Image.Image) -> torch.Tensor:
    """``(3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Float ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1] to an 8-bit RGB image (rounded, clamped)."""
    array = tensor.detach().squeeze(0).clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, mode="RGB")


def save_png(image: Image.Image | "imageio.Image", *, stem: str) -> str:
    """Write the full-resolution result as a PNG in a fresh temporary folder; return its path.

    An :class:`srhub.io.Image` keeps its alpha, 16 bits and colour profile.
    """
    path = os.path.join(tempfile.mkdtemp(prefix="srhub-app-"), f"{stem}.png")
    if isinstance(image, Image.Image):
        image = imageio.from_pil(image)
    return str(imageio.write_image(image, path))


# ---------------------------------------------------------------------- running a model


def _check_settings(outscale: float | None, tile: int | None) -> tuple[float | None, int]:
    if outscale is not None and (not math.isfinite(outscale) or outscale < 0 or outscale > 8):
        raise InputError(f"output scale must be between 1 and 8 (0 = the model's own), got {outscale}")
    if outscale is not None and 0 < outscale < 1:
        raise InputError(f"output scale must be at least 1 (0 = the model's own), got {outscale}")
    if tile is not None and (tile < 0 or (0 < tile < 32) or tile != int(tile)):
        raise InputError(f"tile size must be 0 (no tiling) or a whole number of pixels >= 32, got {tile}")
    return (float(outscale) if outscale else None), int(tile or 0)


def _gpu_seconds(name: str, image: Any, outscale: float | None, tile: int) -> int:
    """ZeroGPU time to ask for: grows with the output's pixel count, capped at two minutes."""
    scale = max(outscale or 1, catalogue()[name].network_scale)
    megapixels_out = image.width * image.height * scale * scale / 1e6
    return int(min(120, 15 + 2 * megapixels_out))


@gpu(duration=_gpu_seconds)
def _run_model(name: str, image: Any, outscale: float | None, tile: int) -> tuple[Any, float]:
    """The only code that runs on the GPU: one ``srhub.upscale`` call with a cached model."""
    model = _models[name]
    start = time.perf_counter()
    sr = upscale(image, model=model, outscale=outscale, tile=tile)
    if torch.cuda.is_available() and next(model.parameters()).is_cuda:
        torch.cuda.synchronize()
    return sr, time.perf_counter() - start


def run_model(name: str, image: Any, *, outscale: float | None = None, tile: int = DEFAULT_TILE) -> tuple[Any, float]:
    """Super-resolve a PIL image or :class:`srhub.io.Image` with a cached model (same kind back).

    ``outscale`` None gives the model's pipeline scale (``ModelInfo.scale``).
    Returns the result and the seconds the model took.
    """
    get_model(name)  # load (once) outside the GPU function
    outscale = outscale or catalogue()[name].scale
    try:
        return _run_model(name, image, outscale, tile)
    except torch.OutOfMemoryError as error:  # srhub.upscale halves the tile first; this is what is left
        raise InputError("the device ran out of memory: choose a smaller image") from error
    except MemoryError as error:
        raise InputError("the server ran out of memory: choose a smaller tile size or a smaller image") from error


# ---------------------------------------------------------------------- the endpoints' work


def upscale_file(
    path: str | os.PathLike | None, model_name: str, *, outscale: float | None = None, tile: int | None = DEFAULT_TILE
) -> tuple[tuple[Image.Image, Image.Image], str, dict[str, Any]]:
    """``/upscale``: the (input resized, result) pair for the slider, the PNG path and facts as a dict.

    The PNG keeps the input's alpha, bit depth and colour profile.
    """
    outscale, tile = _check_settings(outscale, tile)
    get_model(model_name)  # an unknown name fails before the file is read
    record = read_upload(path)
    sr, seconds = run_model(model_name, record, outscale=outscale, tile=tile)
    after = for_display(sr)
    before = for_display(record).resize(after.size, Image.Resampling.BICUBIC)
    info = {
        "model": model_name,
        "scale": catalogue()[model_name].scale,
        "outscale": outscale or catalogue()[model_name].scale,
        "tile": tile,
        "input_size": [record.width, record.height],
        "output_size": [sr.width, sr.height],
        "seconds": round(seconds, 3),
        "device": device_label(),
    }
    return (before, after), save_png(sr, stem=f"{Path(str(path)).stem}_{model_name}"), info


def _measure(sr: torch.Tensor, gt: torch.Tensor, crop_border: int) -> dict[str, Any]:
    """PSNR/SSIM/MS-SSIM on Y with the border cropped, LPIPS on RGB; a note where one cannot be computed."""
    from . import metrics

    result: dict[str, Any] = {
        "psnr_y": round(metrics.psnr(sr, gt, crop_border=crop_border), 4),
        "ssim_y": round(metrics.ssim(sr, gt, crop_border=crop_border), 5),
    }
    if min(gt.shape[-2:]) - 2 * crop_border >= metrics.MS_SSIM_MIN_SIZE:
        result["ms_ssim_y"] = round(metrics.ms_ssim(sr, gt, crop_border=crop_border), 5)
    else:
        result["ms_ssim_y"] = None
        result["ms_ssim_note"] = f"needs at least {metrics.MS_SSIM_MIN_SIZE} px on each side after the border crop"
    try:
        result["lpips"] = round(metrics.lpips(sr, gt, crop_border=crop_border), 5)
    except metrics.MetricUnavailable as error:
        result["lpips"] = None
        result["lpips_note"] = str(error)
    return result


def evaluate_files(
    path: str | os.PathLike | None,
    ground_truth: str | os.PathLike | None,
    model_name: str,
    *,
    tile: int | None = DEFAULT_TILE,
) -> tuple[tuple[Image.Image, Image.Image], str, dict[str, Any]]:
    """``/evaluate``: metrics of the model and of bicubic against a ground truth.

    Without ``ground_truth`` (reference mode) ``path`` is a high-resolution image:
    it is cropped to a multiple of the model's scale, downscaled with MATLAB's
    bicubic to make the input, and the result is compared with it. With
    ``ground_truth``, ``path`` is the user's own low-resolution input and the
    ground truth must be exactly ``scale`` times its size.
    Returns the (bicubic, model) pair for the slider, the model's PNG and the metrics.
    """
    from .degradations import imresize

    _, tile = _check_settings(None, tile)
    get_model(model_name)
    scale = catalogue()[model_name].scale
    if ground_truth is None or str(ground_truth) == "":
        mode = "reference"
        hr = rgb8(read_upload(path, what="reference image"))
        width, height = hr.width - hr.width % scale, hr.height - hr.height % scale
        if min(width, height) < SMALLEST_SIDE * scale:
            raise InputError(
                f"the reference image is {hr.width}x{hr.height}; for x{scale} it must be at least "
                f"{SMALLEST_SIDE * scale} pixels on each side"
            )
        hr = hr.crop((0, 0, width, height))
        gt = to_tensor(hr)
        # The benchmark LR maker: MATLAB bicubic on the 8-bit image, rounded like MATLAB.
        hr_uint8 = torch.from_numpy(np.asarray(hr, dtype=np.uint8).copy()).permute(2, 0, 1)
        lq = Image.fromarray(imresize(hr_uint8, scale=1 / scale).permute(1, 2, 0).numpy(), mode="RGB")
    else:
        mode = "ground truth"
        lq = rgb8(read_upload(path, what="input image"))
        hr = rgb8(read_upload(ground_truth, what="ground truth"))
        expected = (lq.width * scale, lq.height * scale)
        if hr.size != expected:
            raise InputError(
                f"the ground truth is {hr.width}x{hr.height}, but {model_name} (x{scale}) turns the "
                f"{lq.width}x{lq.height} input into {expected[0]}x{expected[1]}: they must match"
            )
        gt = to_tensor(hr)
    sr_image, seconds = run_model(model_name, lq, outscale=None, tile=tile)
    bicubic = imresize(to_tensor(lq), size=(gt.shape[-2], gt.shape[-1])).clamp(0, 1)
    bicubic_image = to_image(bicubic)
    sr = to_tensor(sr_image)
    metrics = {
        "mode": mode,
        "model": model_name,
        "scale": scale,
        "crop_border": scale,
        "input_size": list(lq.size),
        "ground_truth_size": [gt.shape[-1], gt.shape[-2]],
        model_name: _measure(sr, gt, scale),
        "bicubic": _measure(to_tensor(bicubic_image), gt, scale),
        "seconds": round(seconds, 3),
        "device": device_label(),
    }
    return (bicubic_image, sr_image), save_png(sr_image, stem=f"{Path(str(path)).stem}_{model_name}"), metrics
