"""Image degradations: MATLAB-compatible bicubic resizing (and, below, training degradations).

``imresize`` reproduces MATLAB's ``imresize(image, scale, 'bicubic')`` with its
default antialiasing, the function every SR paper since SRCNN used to make its
benchmark LR images and its bicubic baseline. PyTorch's and Pillow's bicubic
are different functions (different kernel constant or no antialiasing, other
border handling), so LR made with them gives other numbers.

The definition, one dimension at a time (MATLAB's ``contributions``):

* cubic kernel with a = -0.5 (Keys):
  ``k(x) = 1.5|x|^3 - 2.5|x|^2 + 1`` for ``|x| <= 1``,
  ``k(x) = -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2`` for ``1 < |x| <= 2``, else 0;
* when shrinking (scale s < 1) the kernel is stretched to antialias:
  ``h(x) = s * k(s * x)`` with support width ``4 / s``; when enlarging, ``h = k``, width 4;
* output pixel ``j`` (1-based) sits at input coordinate ``u = j / s + 0.5 * (1 - 1 / s)``;
  it takes the ``ceil(width) + 2`` input pixels starting at ``floor(u - width / 2)``,
  weighted by ``h(u - i)`` and normalised to sum to 1;
* indices outside the image are mirrored (symmetric padding: ... 2 1 | 1 2 ... n | n n-1 ...);
* the output size is ``ceil(in * s)`` when a scale is given; with an explicit
  size, ``s = out / in`` per dimension;
* the dimension with the smaller scale is resized first (height on ties);
* uint8 input gives uint8 output, rounded and clamped after each dimension as
  MATLAB's ``imresizemex`` does; float input stays float (computed in float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

# --------------------------------------------------------------------------------------
# MATLAB-compatible bicubic imresize
# --------------------------------------------------------------------------------------


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = x.abs()
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return near + far


def _contributions(in_length: int, out_length: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``(out, P)`` and 0-based input indices ``(out, P)`` for resizing one dimension."""
    antialias = scale < 1
    kernel_width = 4.0 / scale if antialias else 4.0
    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left.unsqueeze(1) + torch.arange(taps, dtype=torch.float64).unsqueeze(0)  # 1-based
    distance = u.unsqueeze(1) - indices
    weights = scale * _cubic(scale * distance) if antialias else _cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Symmetric padding: index 0 -> 1, -1 -> 2, n+1 -> n, ... (MATLAB's aux = [1:n, n:-1:1]).
    mirror = torch.cat([torch.arange(in_length), torch.arange(in_length - 1, -1, -1)])
    indices = mirror[torch.remainder(indices.long() - 1, 2 * in_length)]
    # Drop taps that have zero weight for every output pixel (as MATLAB does).
    used = (weights != 0).any(dim=0)
    return weights[:, used], indices[:, used]


def _resize_dim(image: torch.Tensor, dim: int, out_length: int, scale: float, *, as_uint8: bool) -> torch.Tensor:
    weights, indices = _contributions(image.shape[dim], out_length, scale)
    moved = image.movedim(dim, -1)  # (..., in)
    gathered = moved[..., indices]  # (..., out, P)
    out = (gathered * weights.to(device=image.device)).sum(dim=-1)
    if as_uint8:
        out = out.round().clamp(0, 255)
    return out.movedim(-1, dim)


def imresize(
    image: torch.Tensor,
    *,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Resize like MATLAB's ``imresize(image, scale, 'bicubic')`` (antialiased when shrinking).

    Args:
        image: ``(C, H, W)`` or ``(B, C, H, W)``; float in [0, 1] (returned as float
            of the same dtype, not clamped) or uint8 (returned as uint8, rounded after
            each dimension like MATLAB).
        scale: the factor for both dimensions (e.g. ``1/4`` or ``3``); output size
            ``ceil(H * scale), ceil(W * scale)``.
        size: the output ``(height, width)`` instead of ``scale``.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"imresize expects a torch.Tensor, got {type(image).__name__}")
    if image.dim() not in (3, 4):
        raise ValueError(f"imresize expects (C, H, W) or (B, C, H, W), got shape {tuple(image.shape)}")
    if image.numel() == 0:
        raise ValueError(f"imresize got an empty image of shape {tuple(image.shape)}")
    as_uint8 = image.dtype == torch.uint8
    if not as_uint8 and not image.is_floating_point():
        raise ValueError(f"imresize expects a float or uint8 tensor, got {image.dtype}")
    if (scale is None) == (size is None):
        raise ValueError("imresize needs exactly one of scale= or size=")
    height, width = image.shape[-2:]
    if scale is not None:
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a positive finite number, got {scale}")
        scales = (float(scale), float(scale))
        out_size = (math.ceil(height * scale), math.ceil(width * scale))
    else:
        if len(size) != 2 or any(int(s) != s or s <= 0 for s in size):
            raise ValueError(f"size must be two positive integers (height, width), got {size}")
        out_size = (int(size[0]), int(size[1]))
        scales = (out_size[0] / height, out_size[1] / width)

    out = image.to(torch.float64)
    # Resize the dimension with the smaller scale first; sorted() is stable, so height goes first on ties.
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        out = _resize_dim(out, image.dim() - 2 + axis, out_size[axis], scales[axis], as_uint8=as_uint8)
    return out.to(torch.uint8) if as_uint8 else out.to(image.dtype)


# --------------------------------------------------------------------------------------
# Real-ESRGAN training degradations (Wang et al., ICCVW 2021, "Real-ESRGAN: Training
# Real-World Blind Super-Resolution with Pure Synthetic Data")
# --------------------------------------------------------------------------------------
#
# The "high-order" pipeline, applied twice: blur -> random resize -> Gaussian or Poisson
# noise -> JPEG, then a final resize to the LR size with an optional sinc filter (ringing
# and overshoot), in random order with the last JPEG. The probabilities and ranges below
# are the published ones (Real-ESRGAN's options/train_realesrgan_x4plus.yml). This is an
# independent torch implementation: every random draw comes from the ``torch.Generator``
# passed in, so a pipeline run is reproducible on any device. Differences from the
# reference code: JPEG is Pillow's encoder per image on the CPU (not differentiable; the
# reference uses a differentiable torch JPEG), and the "training pair pool" that shuffles
# samples across batches is left out.

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator, device=generator.device).item()


def _uniform_batch(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device).cpu()


def _choice(generator: torch.Generator, probabilities) -> int:
    weights = torch.as_tensor(probabilities, dtype=torch.float64, device=generator.device)
    return int(torch.multinomial(weights, 1, generator=generator).item())


def _kernel_grid(size: int) -> torch.Tensor:
    """``(size, size, 2)`` pixel offsets ``(x, y)`` from the kernel centre."""
    if size % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([x, y], dim=-1)


def bivariate_kernel(
    size: int, sigma_x: float, sigma_y: float, rotation: float, *, shape: str = "gaussian", beta: float = 1.0
) -> torch.Tensor:
    """A normalised 2-D kernel ``(size, size)`` (float64) with covariance ``R diag(sx^2, sy^2) R^T``.

    ``shape`` "gaussian": ``exp(-d/2)``; "generalized": ``exp(-(d^beta)/2)`` (Real-ESRGAN's
    generalized Gaussian); "plateau": ``1 / (d^beta + 1)``; ``d`` is the Mahalanobis
    distance squared.
    """
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"kernel sigmas must be positive, got {sigma_x}, {sigma_y}")
    if shape not in ("gaussian", "generalized", "plateau"):
        raise ValueError(f"kernel shape must be gaussian, generalized or plateau, got {shape!r}")
    cos, sin = math.cos(rotation), math.sin(rotation)
    rot = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    covariance = rot @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rot.T
    grid = _kernel_grid(size)
    distance = torch.einsum("hwi,ij,hwj->hw", grid, torch.linalg.inv(covariance), grid)
    if shape == "gaussian":
        kernel = torch.exp(-0.5 * distance)
    elif shape == "generalized":
        kernel = torch.exp(-0.5 * distance.pow(beta))
    else:
        kernel = 1.0 / (distance.pow(beta) + 1.0)
    return kernel / kernel.sum()


def sinc_kernel(size: int, cutoff: float, *, pad_to: int = 0) -> torch.Tensor:
    """The 2-D circular low-pass (sinc) kernel ``cutoff * J1(cutoff r) / (2 pi r)``, normalised;
    zero-padded to ``pad_to`` if larger than ``size``."""
    grid = _kernel_grid(size)
    r = grid.norm(dim=-1)
    safe_r = torch.where(r == 0, torch.ones_like(r), r)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe_r) / (2 * math.pi * safe_r)
    kernel = torch.where(r == 0, torch.full_like(r, cutoff**2 / (4 * math.pi)), kernel)
    kernel = kernel / kernel.sum()
    if pad_to > size:
        pad = (pad_to - size) // 2
        kernel = F.pad(kernel, (pad, pad, pad, pad))
    return kernel


@dataclass(frozen=True)
class BlurSettings:
    """How one degradation stage draws its blur kernel (Real-ESRGAN's published defaults)."""

    kernel_types: tuple[str, ...] = KERNEL_TYPES
    kernel_probabilities: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_probability: float = 0.1
    sigma_range: tuple[float, float] = (0.2, 3.0)
    generalized_beta_range: tuple[float, float] = (0.5, 4.0)
    plateau_beta_range: tuple[float, float] = (1.0, 2.0)


@dataclass(frozen=True)
class RealESRGANDegradation:
    """Parameters of the second-order pipeline; the defaults are Real-ESRGAN x4plus's."""

    max_kernel_size: int = 21
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    blur1: BlurSettings = field(default_factory=BlurSettings)
    blur2: BlurSettings = field(default_factory=lambda: BlurSettings(sigma_range=(0.2, 1.5)))
    final_sinc_probability: float = 0.8
    # first stage
    resize_probabilities: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_probability: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)  # sigma on the 0..255 scale
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_probability: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    # second stage
    second_blur_probability: float = 0.8
    resize_probabilities2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_probability2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_probability2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)


def random_blur_kernel(generator: torch.Generator, settings: BlurSettings, *, kernel_sizes, max_size: int) -> torch.Tensor:
    """One random blur kernel as Real-ESRGAN draws it, zero-padded to ``(max_size, max_size)``."""
    size = kernel_sizes[_choice(generator, [1.0] * len(kernel_sizes))]
    if _uniform(generator, 0, 1) < settings.sinc_probability:
        cutoff = _uniform(generator, math.pi / 3, math.pi) if size < 13 else _uniform(generator, math.pi / 5, math.pi)
        return sinc_kernel(size, cutoff, pad_to=max_size)
    kind = settings.kernel_types[_choice(generator, settings.kernel_probabilities)]
    low, high = settings.sigma_range
    sigma_x = _uniform(generator, low, high)
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sigma_y, rotation = sigma_x, 0.0
    else:
        sigma_y, rotation = _uniform(generator, low, high), _uniform(generator, -math.pi, math.pi)
    shape, beta = "gaussian", 1.0
    if kind.startswith(("generalized", "plateau")):
        shape = "generalized" if kind.startswith("generalized") else "plateau"
        b_low, b_high = settings.generalized_beta_range if shape == "generalized" else settings.plateau_beta_range
        beta = _uniform(generator, b_low, 1.0) if _uniform(generator, 0, 1) < 0.5 else _uniform(generator, 1.0, b_high)
    kernel = bivariate_kernel(size, sigma_x, sigma_y, rotation, shape=shape, beta=beta)
    pad = (max_size - size) // 2
    return F.pad(kernel, (pad, pad, pad, pad))


def filter2d(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image ``(B, C, H, W)`` with its own kernel ``(B, k, k)`` (reflect padding)."""
    b, c, h, w = images.shape
    k = kernels.shape[-1]
    mode = "reflect" if k // 2 < min(h, w) else "replicate"
    padded = F.pad(images, (k // 2, k // 2, k // 2, k // 2), mode=mode)
    weight = kernels.to(images).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    out = F.conv2d(padded.reshape(1, b * c, h + k - 1, w + k - 1), weight, groups=b * c)
    return out.view(b, c, h, w)


def _gray(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(dim=1)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def add_gaussian_noise(
    images: torch.Tensor, generator: torch.Generator, *, sigma_range: tuple[float, float], gray_probability: float
) -> torch.Tensor:
    """Add Gaussian noise, sigma (0..255 scale) drawn per image; gray (same for R, G, B) with
    ``gray_probability``; clamps to [0, 1]."""
    b = images.shape[0]
    sigma = (_uniform_batch(generator, b, *sigma_range) / 255.0).view(b, 1, 1, 1).to(images)
    gray = (_uniform_batch(generator, b, 0, 1) < gray_probability).view(b, 1, 1, 1).to(images)
    color = torch.randn(images.shape, generator=generator, device=generator.device).to(images)
    mono = torch.randn((b, 1, *images.shape[2:]), generator=generator, device=generator.device).to(images)
    noise = (gray * mono + (1 - gray) * color) * sigma
    return (images + noise).clamp(0, 1)


def _poisson_noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shot noise at the image's own number of grey levels (rounded up to a power of 2)."""
    quantised = (images * 255.0).round().clamp(0, 255) / 255.0
    levels = [2 ** math.ceil(math.log2(max(torch.unique(x).numel(), 1))) for x in quantised]
    levels = torch.tensor(levels, dtype=images.dtype, device=images.device).view(-1, 1, 1, 1)
    rate = (quantised * levels).to(generator.device)
    noisy = torch.poisson(rate, generator=generator).to(images) / levels
    return noisy - quantised


def add_poisson_noise(
    images: torch.Tensor, generator: torch.Generator, *, scale_range: tuple[float, float], gray_probability: float
) -> torch.Tensor:
    """Add Poisson noise scaled by a per-image factor; gray with ``gray_probability``; clamps to [0, 1]."""
    b = images.shape[0]
    scale = _uniform_batch(generator, b, *scale_range).view(b, 1, 1, 1).to(images)
    gray = (_uniform_batch(generator, b, 0, 1) < gray_probability).view(b, 1, 1, 1).to(images)
    color = _poisson_noise(images, generator)
    mono = _poisson_noise(_gray(images), generator).expand_as(images)
    noise = (gray * mono + (1 - gray) * color) * scale
    return (images + noise).clamp(0, 1)


def jpeg_compress(images: torch.Tensor, qualities: torch.Tensor) -> torch.Tensor:
    """JPEG round trip per image with Pillow (CPU, 4:2:0, not differentiable); ``qualities`` (B,)."""
    import io

    import numpy as np
    from PIL import Image

    out = []
    for image, quality in zip(images.detach().clamp(0, 1), qualities.tolist()):
        array = (image.float().cpu() * 255.0).round().byte().permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(round(quality)))
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(decoded.copy()).permute(2, 0, 1))
    return torch.stack(out).to(images) / 255.0


def _random_resize(images, generator, probabilities, scale_range, size=None):
    updown = _choice(generator, probabilities)
    if updown == 0:
        factor = _uniform(generator, 1.0, scale_range[1])
    elif updown == 1:
        factor = _uniform(generator, scale_range[0], 1.0)
    else:
        factor = 1.0
    mode = RESIZE_MODES[_choice(generator, [1.0, 1.0, 1.0])]
    if size is None:
        h, w = images.shape[-2:]
        size = (max(1, int(h * factor)), max(1, int(w * factor)))
    else:
        size = (max(1, int(size[0] * factor)), max(1, int(size[1] * factor)))
    return F.interpolate(images, size=size, mode=mode)


def _random_noise(images, generator, gaussian_probability, sigma_range, poisson_range, gray_probability):
    if _uniform(generator, 0, 1) < gaussian_probability:
        return add_gaussian_noise(images, generator, sigma_range=sigma_range, gray_probability=gray_probability)
    return add_poisson_noise(images, generator, scale_range=poisson_range, gray_probability=gray_probability)


def realesrgan_degrade(
    gt: torch.Tensor, *, scale: int, generator: torch.Generator, settings: RealESRGANDegradation | None = None
) -> torch.Tensor:
    """Make LR images ``(B, 3, H/scale, W/scale)`` from HR ``gt`` in [0, 1] with the second-order
    Real-ESRGAN pipeline; all randomness from ``generator``. Output is quantised to 8 bits."""
    if gt.dim() != 4 or gt.shape[1] != 3:
        raise ValueError(f"realesrgan_degrade expects (B, 3, H, W), got {tuple(gt.shape)}")
    h, w = gt.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} must be a multiple of scale {scale}")
    s = settings or RealESRGANDegradation()
    b = gt.shape[0]

    def kernels(blur: BlurSettings) -> torch.Tensor:
        return torch.stack(
            [random_blur_kernel(generator, blur, kernel_sizes=s.kernel_sizes, max_size=s.max_kernel_size) for _ in range(b)]
        )

    def final_kernels() -> torch.Tensor:
        out = []
        for _ in range(b):
            if _uniform(generator, 0, 1) < s.final_sinc_probability:
                size = s.kernel_sizes[_choice(generator, [1.0] * len(s.kernel_sizes))]
                out.append(sinc_kernel(size, _uniform(generator, math.pi / 3, math.pi), pad_to=s.max_kernel_size))
            else:
                pulse = torch.zeros(s.max_kernel_size, s.max_kernel_size, dtype=torch.float64)
                pulse[s.max_kernel_size // 2, s.max_kernel_size // 2] = 1.0
                out.append(pulse)
        return torch.stack(out)

    kernel1, kernel2, kernel_final = kernels(s.blur1), kernels(s.blur2), final_kernels()
    # first order
    out = filter2d(gt, kernel1)
    out = _random_resize(out, generator, s.resize_probabilities, s.resize_range)
    out = _random_noise(out, generator, s.gaussian_noise_probability, s.noise_range, s.poisson_scale_range, s.gray_noise_probability)
    out = jpeg_compress(out, _uniform_batch(generator, b, *s.jpeg_range))
    # second order
    if _uniform(generator, 0, 1) < s.second_blur_probability:
        out = filter2d(out, kernel2)
    out = _random_resize(out, generator, s.resize_probabilities2, s.resize_range2, size=(h // scale, w // scale))
    out = _random_noise(out, generator, s.gaussian_noise_probability2, s.noise_range2, s.poisson_scale_range2, s.gray_noise_probability2)
    # final: [resize to LR size + sinc] and JPEG, in random order
    qualities = _uniform_batch(generator, b, *s.jpeg_range2)
    mode = RESIZE_MODES[_choice(generator, [1.0, 1.0, 1.0])]
    if _uniform(generator, 0, 1) < 0.5:
        out = filter2d(F.interpolate(out, size=(h // scale, w // scale), mode=mode), kernel_final)
        out = jpeg_compress(out, qualities)
    else:
        out = jpeg_compress(out, qualities)
        out = filter2d(F.interpolate(out, size=(h // scale, w // scale), mode=mode), kernel_final)
    return (out * 255.0).round().clamp(0, 255) / 255.0


def usm_sharp(images: torch.Tensor, *, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """Unsharp masking as Real-ESRGAN sharpens its training targets: ``img + weight * (img - blur)``,
    blended in only where the residual exceeds ``threshold`` (0..255 scale), with a soft mask.
    The Gaussian is OpenCV's default for the kernel size ``radius + 1`` (made odd): sigma 8 for 51."""
    size = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(images.shape[0], size, size)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return filter2d(x, kernel)

    residual = images - blur(images)
    mask = (residual.abs() * 255 > threshold).to(images)
    soft_mask = blur(mask)
    sharp = (images + weight * residual).clamp(0, 1)
    return soft_mask * sharp + (1 - soft_mask) * images
