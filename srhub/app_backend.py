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
* ``SRHUB_APP_MAX_OUTPUT_PIXELS``: the largest result in pixels, counting the model's own
  output before any resize (default 4096 x 4096, which keeps one request's memory under
  2 GB on a free CPU Space; see ``benchmarks/app_resources.py``).
* ``SRHUB_APP_DEVICE``: force ``cpu`` or ``cuda`` (default: CUDA when available).
* ``SRHUB_APP_KEEP_SECONDS``: how long srhub's result files stay on disk (default 60; Gradio
  copies each into its cache as it answers, so they are needed only for that moment); at
  most :data:`MAX_KEPT_RESULTS` are kept whatever their age. See :func:`save_png`.
* ``SRHUB_APP_CACHE_SECONDS``: the age after which Gradio's cache files (uploads and the
  results it serves) are deleted (default 600, checked every quarter of that; ``app.py``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
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


def max_output_pixels() -> int:
    """The largest result in pixels (``SRHUB_APP_MAX_OUTPUT_PIXELS``, default 4096 x 4096)."""
    return int(os.environ.get("SRHUB_APP_MAX_OUTPUT_PIXELS", 4096 * 4096))


#: Result files kept at most, newest first, whatever their age (more than the run slots).
MAX_KEPT_RESULTS = 16


def keep_seconds() -> int:
    """How long srhub's result files are kept (``SRHUB_APP_KEEP_SECONDS``, default 60)."""
    return int(os.environ.get("SRHUB_APP_KEEP_SECONDS", 60))


def cache_seconds() -> int:
    """Age at which Gradio's cache files are deleted (``SRHUB_APP_CACHE_SECONDS``, default 600)."""
    return int(os.environ.get("SRHUB_APP_CACHE_SECONDS", 600))


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


def warm_up(name: str | None = None) -> float:
    """Load a model (default: the default model) and run it once on a small image, so the
    first visitor does not pay for loading, graph export and compilation. Returns seconds."""
    name = name or default_model()
    start = time.perf_counter()
    model = get_model(name)
    if not on_zero_gpu():  # on ZeroGPU the GPU exists only inside a request
        tile = Image.new("RGB", (64, 64), (128, 96, 64))
        upscale(tile, model=model, outscale=None, tile=DEFAULT_TILE)
    return time.perf_counter() - start


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


_results_lock = threading.Lock()
_results_dir: Path | None = None


def results_dir() -> Path:
    """The one folder this process writes result files into (created once, removed at exit)."""
    global _results_dir
    with _results_lock:
        if _results_dir is None or not _results_dir.is_dir():
            _results_dir = Path(tempfile.mkdtemp(prefix="srhub-app-"))
            import atexit

            atexit.register(shutil.rmtree, _results_dir, True)
        return _results_dir


def prune_results(*, max_age: float | None = None, keep: int = MAX_KEPT_RESULTS) -> int:
    """Delete result files older than ``max_age`` seconds (default :func:`keep_seconds`) and all
    but the ``keep`` newest; returns how many were deleted.

    Gradio copies a returned file into its own cache when it answers, so ours are only
    needed for that moment; they are kept a little longer for direct (non-Gradio) callers.
    """
    max_age = keep_seconds() if max_age is None else max_age
    now = time.time()
    entries = []
    for path in results_dir().iterdir():
        if path.name.startswith("."):  # a result still being written (srhub's partial files are hidden)
            continue
        try:
            entries.append((path.stat().st_mtime, path))
        except FileNotFoundError:  # another request pruned it first
            pass
    entries.sort(reverse=True)
    removed = 0
    for index, (mtime, path) in enumerate(entries):
        if index >= keep or now - mtime > max_age:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def start_sweeper(blocks: Any, *, every: float, age: float) -> threading.Thread:
    """A daemon thread that, every ``every`` seconds, deletes Gradio's cached files of ``blocks``
    older than ``age`` seconds (uploads, served results; not the cached examples) and prunes
    srhub's results.

    Gradio's own ``delete_cache`` task does the first, but it iterates the set of cached
    files while requests add to it; under steady traffic that raises once and ends the task
    for good (seen with Gradio 6.31: 116 MB and rising after 500 requests). This loop
    survives such a race and tries again at the next turn.
    """
    from gradio.route_utils import delete_files_created_by_app

    def sweep() -> None:
        while True:
            time.sleep(every)
            try:
                delete_files_created_by_app(blocks, age)
            except RuntimeError:  # "Set changed size during iteration": a request added a file
                pass
            try:
                prune_results()
            except OSError:
                pass

    thread = threading.Thread(target=sweep, name="srhub-cache-sweeper", daemon=True)
    thread.start()
    return thread


def result_path(stem: str, suffix: str) -> Path:
    """A new, unique file name in :func:`results_dir` for one request's result.

    Older results are pruned first (:func:`prune_results`), so the folder stays bounded
    however long the app runs, whatever kind of result (PNG, MP4) it holds.
    """
    prune_results(keep=MAX_KEPT_RESULTS - 1)  # room for this one
    return results_dir() / f"{stem[:80]}-{time.time_ns() % 10**12:012d}-{threading.get_ident() % 10**6}{suffix}"


def save_png(image: Image.Image | "imageio.Image", *, stem: str) -> str:
    """Write the full-resolution result as a PNG at a :func:`result_path`; return its path.

    An :class:`srhub.io.Image` keeps its alpha, 16 bits and colour profile.
    """
    path = result_path(stem, ".png")
    if isinstance(image, Image.Image):
        image = imageio.from_pil(image)
    return str(imageio.write_image(image, path))


# ---------------------------------------------------------------------- running a model


def _number(value: Any, what: str) -> float | None:
    """A number from an API or form field (numbers, numeric strings, empty -> None), else :class:`InputError`."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InputError(f"{what} must be a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise InputError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _check_settings(outscale: Any, tile: Any) -> tuple[float | None, int]:
    outscale = _number(outscale, "output scale")
    tile = _number(tile, "tile size")
    if outscale is not None and (outscale < 0 or outscale > 8):
        raise InputError(f"output scale must be between 1 and 8 (0 = the model's own), got {outscale}")
    if outscale is not None and 0 < outscale < 1:
        raise InputError(f"output scale must be at least 1 (0 = the model's own), got {outscale}")
    if tile is not None and (tile < 0 or (0 < tile < 32) or tile != int(tile)):
        raise InputError(f"tile size must be 0 (no tiling) or a whole number of pixels >= 32, got {tile}")
    return (float(outscale) if outscale else None), int(tile or 0)


def check_output_size(name: str, width: int, height: int, outscale: float | None) -> None:
    """Refuse (before running) a result larger than :func:`max_output_pixels`.

    Counts the larger of the model's own output and the final resize, since the model's
    full-resolution output is held in memory either way.
    """
    info = catalogue()[name]
    factor = max(info.network_scale, outscale or info.scale)
    pixels = width * height * factor * factor
    limit = max_output_pixels()
    if pixels > limit:
        largest = math.isqrt(int(limit / (factor * factor)))
        raise InputError(
            f"the result would be {round(width * factor)}x{round(height * factor)} ({pixels / 1e6:.1f} Mpx), more than "
            f"this app's {limit / 1e6:.1f} Mpx limit: use a smaller output scale or a model of lower scale, or "
            f"an input of at most about {largest}x{largest} pixels (the server owner can raise "
            "SRHUB_APP_MAX_OUTPUT_PIXELS)"
        )


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
    check_output_size(model_name, record.width, record.height, outscale)
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
    check_output_size(model_name, lq.width, lq.height, None)
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


# ---------------------------------------------------------------------- video (the Video tab and /upscale_video)


def max_video_seconds() -> float:
    """The longest video accepted, in seconds (``SRHUB_APP_MAX_VIDEO_SECONDS``, default 10)."""
    return float(os.environ.get("SRHUB_APP_MAX_VIDEO_SECONDS", 10))


def max_video_pixels() -> int:
    """The largest *output* frame accepted, in pixels (``SRHUB_APP_MAX_VIDEO_PIXELS``, default 1920 x 1080)."""
    return int(os.environ.get("SRHUB_APP_MAX_VIDEO_PIXELS", 1920 * 1080))


def _video_gpu_seconds(name: str, path: str, output: str, outscale: float | None) -> int:
    return 120


@gpu(duration=_video_gpu_seconds)
def _run_video_model(name: str, path: str, output: str, outscale: float | None):
    from .video import upscale_video

    return upscale_video(
        path, output, model=_models[name], outscale=outscale, device=device(), progress=False, overwrite=True,
        max_duration=max_video_seconds(), max_pixels=max_video_pixels(),
    )  # fmt: skip


def upscale_video_file(
    path: str | os.PathLike | None, model_name: str, *, outscale: float | None = None
) -> tuple[str, dict[str, Any]]:
    """``/upscale_video``: the upscaled video's path (H.264 MP4, audio and subtitles kept) and facts as a dict.

    Videos longer than :func:`max_video_seconds` or whose output frames would exceed
    :func:`max_video_pixels` are refused with a message saying so.
    """
    try:
        from .video import VideoError, probe_video
    except ImportError as error:  # pragma: no cover - PyAV is in the app's requirements
        raise InputError("video needs PyAV on the server (pip install av)") from error
    outscale, _ = _check_settings(outscale, 0)
    get_model(model_name)  # an unknown name fails before the file is read
    if path is None or not str(path):
        raise InputError("no video was uploaded")
    outscale = outscale or catalogue()[model_name].scale
    try:
        info = probe_video(path)
    except (VideoError, FileNotFoundError) as error:
        raise InputError(f"the video cannot be read: {error}") from error
    limit, cap = max_video_seconds(), max_video_pixels()
    if info.duration is not None and info.duration > limit:
        raise InputError(
            f"the video is {info.duration:.1f} s long; this demo takes up to {limit:g} s "
            "(run `srhub video` on your own machine for longer ones)"
        )
    width, height = round(info.width * outscale), round(info.height * outscale)
    if width * height > cap:
        raise InputError(
            f"x{outscale:g} would make {width}x{height} frames; this demo makes frames up to {cap:,} pixels "
            f"(e.g. {int(math.sqrt(cap * 16 / 9))}x{int(math.sqrt(cap * 9 / 16))}): choose a smaller video or scale"
        )
    output = result_path(f"{Path(str(path)).stem}_{model_name}", ".mp4")  # pruned like the images
    try:
        report = _run_video_model(model_name, str(path), str(output), outscale)
    except VideoError as error:  # VideoTooLarge included: a header that understated the length
        raise InputError(str(error)) from error
    return str(report.output), {
        "model": model_name,
        "outscale": outscale,
        "input_size": [info.width, info.height],
        "output_size": [report.width, report.height],
        "frames": report.frames,
        "seconds": round(report.seconds, 3),
        "fps": round(report.fps, 2),
        "method": report.path,  # (not "path": gradio_client would take it for a file to download)
        "device": device_label(),
    }
