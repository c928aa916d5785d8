"""Image-quality metrics measured the way the SR papers measure them.

The protocol (the defaults; every step is a keyword):

1. ``quantize=True``: each image is rounded to 8 bits first (``round(x * 255)``,
   clamped to [0, 255]), because published results are measured on the PNGs a
   method writes. uint8 tensors are taken as they are.
2. ``y_channel=True``: PSNR and SSIM are measured on the luma of ITU-R BT.601 in
   its studio-swing form (MATLAB's ``rgb2ycbcr``, :func:`srhub.color.rgb_to_y`),
   kept as float64 in the 0-255 range, not rounded again (as BasicSR's
   ``test_y_channel`` does). ``y_channel=False`` measures all RGB channels.
   A 1-channel input is taken to be luma already: the papers' MATLAB scripts use
   a grayscale image (Set14's bridge) as is, without ``rgb2ycbcr``.
3. ``crop_border=s``: ``s`` pixels are removed from every side before measuring;
   the convention is the scale factor (the benchmark runner uses it).
4. PSNR with a peak of 255: ``10 log10(255^2 / MSE)`` per image, in float64.
5. SSIM of Wang et al. (2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01,
   K2 = 0.03, L = 255, averaged over the *valid* region, i.e. only windows that
   lie entirely inside the image (MATLAB ``filter2(..., 'valid')`` in the
   reference ``ssim_index.m``, also BasicSR and scikit-image). torchmetrics'
   ``structural_similarity_index_measure`` differs in two ways that matter
   here: it pads by reflection and averages the full map (mirrored pixels
   enter the border windows), and in float32 the variances ``E[x^2] - E[x]^2``
   lose up to 3e-4 of SSIM on images with flat areas (e.g. Set14's ppt3). So
   :func:`ssim` computes in float64 on the valid windows only, with the window
   as two separable 11-tap passes over strips of rows that stay in cache; it
   equals torchmetrics' float64 ``return_full_image=True`` map without its
   5-pixel margin (to ~1e-15) at a small fraction of its time
   (``benchmarks/metric_speed.py``). Tests check it against that map (1e-10)
   and scikit-image's ``structural_similarity(gaussian_weights=True,
   sigma=1.5, use_sample_covariance=False, data_range=255)`` (to 1e-4).
6. MS-SSIM is torchmetrics' ``multiscale_structural_similarity_index_measure``
   (same window and constants, 5 scales, the original betas) on the same prepared
   images; it needs at least 176x176 pixels after cropping.
7. A batch gives the mean of the per-image values; datasets are averaged per
   image too (as the papers do), not over pooled pixels.

LPIPS is :class:`srhub.perceptual.LPIPS` (no torchvision needed): the linear heads ship
with torchmetrics, the backbone's ImageNet weights are torchvision's files, found locally
(``SRHUB_ALEXNET_WEIGHTS``, or torch's hub cache; see :mod:`srhub.perceptual`). Where they
are missing :func:`lpips` raises :class:`MetricUnavailable` naming what is missing (never a
made-up number), and :func:`available_metrics` tells a UI which metrics it can offer.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure


SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5
MS_SSIM_MIN_SIZE = 176  # torchmetrics: (kernel_size - 1) * 2**4 < size at 5 scales
METRICS = ("psnr", "ssim", "ms_ssim", "lpips")


class MetricUnavailable(RuntimeError):
    """A metric that cannot be computed in this environment (the message says what is missing)."""


# --------------------------------------------------------------------------------------
# Input checks and the protocol's preparation (quantise -> Y -> crop)
# --------------------------------------------------------------------------------------


def _check_pair(sr: torch.Tensor, gt: torch.Tensor) -> None:
    for label, image in (("sr", sr), ("gt", gt)):
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(image).__name__}")
        if image.dim() not in (3, 4):
            raise ValueError(f"{label} must be (C, H, W) or (B, C, H, W), got shape {tuple(image.shape)}")
        if image.numel() == 0:
            raise ValueError(f"{label} is empty (shape {tuple(image.shape)})")
        if image.dtype != torch.uint8 and not image.is_floating_point():
            raise ValueError(f"{label} must be a float tensor in [0, 1] or uint8, got {image.dtype}")
        if image.is_floating_point() and not np.isfinite(_array(image)).all():
            raise ValueError(f"{label} contains NaN or infinite values")
        if image.shape[-3] not in (1, 3):
            raise ValueError(f"{label} must have 1 (luma) or 3 (RGB) channels, got {image.shape[-3]}")
    if sr.dim() != gt.dim():
        raise ValueError(f"sr and gt differ in dimensions: {tuple(sr.shape)} vs {tuple(gt.shape)}")
    if sr.shape[-2:] != gt.shape[-2:]:
        raise ValueError(
            f"sr and gt have different sizes: {tuple(sr.shape[-2:])} vs {tuple(gt.shape[-2:])} (H, W); "
            "crop the ground truth to a multiple of the scale first"
        )
    if sr.shape != gt.shape:
        raise ValueError(f"sr and gt differ in batch or channels: {tuple(sr.shape)} vs {tuple(gt.shape)}")


# The protocol runs in NumPy on the CPU: its element-wise loops use one thread, so a metric
# never waits on torch's intra-op threads (on a loaded 2-core machine that wait was most of
# the time). Values are the same float64 arithmetic either way.


def _array(image: torch.Tensor) -> np.ndarray:
    """A NumPy view (or CPU copy) of ``image``; half-precision floats are widened to float32 (exactly)."""
    image = image.detach()
    if image.dtype not in (torch.uint8, torch.float32, torch.float64):
        image = image.float()
    return image.cpu().numpy()


def _to_255(image: np.ndarray, *, quantize: bool) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float64)
    image = image.astype(np.float64)  # one buffer, then in place
    image *= 255.0
    if quantize:
        np.round(image, out=image)  # half to even, as torch.round
        np.clip(image, 0.0, 255.0, out=image)
    return image


# MATLAB rgb2ycbcr's luma row for 0-255 values (srhub.color.rgb_to_y, scaled by 255)
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)


def _luma_255(image: np.ndarray) -> np.ndarray:
    """Studio-swing luma of a float64 RGB batch in the 0-255 range."""
    y = image[:, 0:1] * _Y_WEIGHTS[0]
    y += image[:, 1:2] * _Y_WEIGHTS[1]
    y += image[:, 2:3] * _Y_WEIGHTS[2]
    y += 16.0
    return y


def prepare(
    sr: torch.Tensor,
    gt: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = True,
    quantize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the protocol's steps 1-3: float64 ``(B, C, h, w)`` CPU tensors in the 0-255 range."""
    _check_pair(sr, gt)
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    height, width = gt.shape[-2:]
    if height <= 2 * crop_border or width <= 2 * crop_border:
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {height}x{width} image")
    pair = []
    for image in (sr, gt):
        image = image if image.dim() == 4 else image.unsqueeze(0)
        if crop_border:  # first: the steps below work pixel by pixel
            image = image[..., crop_border:-crop_border, crop_border:-crop_border]
        array = _to_255(_array(image), quantize=quantize)
        if y_channel and array.shape[1] == 3:
            array = _luma_255(array)
        pair.append(torch.from_numpy(array))
    return pair[0], pair[1]


# --------------------------------------------------------------------------------------
# PSNR, SSIM, MS-SSIM
# --------------------------------------------------------------------------------------


def psnr(
    sr: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, y_channel: bool = True, quantize: bool = True
) -> float:
    """PSNR in dB (peak 255) under the module's protocol; the mean over a batch. Identical images give ``inf``."""
    return _psnr(*prepare(sr, gt, crop_border=crop_border, y_channel=y_channel, quantize=quantize))


def _psnr(sr: torch.Tensor, gt: torch.Tensor) -> float:
    difference = _array(sr).astype(np.float64) - _array(gt)
    mse = np.square(difference, out=difference).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):  # identical images: inf
        return float((10.0 * np.log10(255.0**2 / mse)).mean())


def ssim(
    sr: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, y_channel: bool = True, quantize: bool = True
) -> float:
    """SSIM (Wang et al., Gaussian 11x11 window, sigma 1.5, valid region) under the module's protocol."""
    return _ssim(*prepare(sr, gt, crop_border=crop_border, y_channel=y_channel, quantize=quantize))


def _gaussian_taps() -> list[float]:
    """The 1-D factor of the 11x11 Gaussian window (sigma 1.5), normalised, as torchmetrics builds it."""
    offsets = torch.arange(SSIM_KERNEL_SIZE, dtype=torch.float64) - SSIM_KERNEL_SIZE // 2
    taps = torch.exp(-((offsets / SSIM_SIGMA) ** 2) / 2)
    return (taps / taps.sum()).tolist()


_TAPS = _gaussian_taps()


_STRIP_ROWS = 64  # output rows per strip: a strip's buffers stay in the CPU's cache


def _ssim_sums(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-image sums of the SSIM map over the valid windows of float64 ``(B, C, H, W)`` arrays.

    Strip by strip of output rows, the Gaussian means of x, y, x^2, y^2 and xy come from two
    separable 11-tap passes of multiply-adds into buffers allocated once. NumPy rather than
    torch: its element-wise loops run on one thread, so the many small steps never wait for
    a second thread (on a loaded 2-core machine torch's intra-op threads made it 9x slower)."""
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    size = len(_TAPS)
    batch, channels, height, width = x.shape
    out_h, out_w = height - size + 1, width - size + 1
    strip = min(_STRIP_ROWS, out_h)
    maps = np.empty((5, batch, channels, strip + size - 1, width))
    rows = np.empty((5, batch, channels, strip, width))
    means = np.empty((5, batch, channels, strip, out_w))
    scratch = np.empty_like(rows)
    sums = np.zeros(batch)
    for top in range(0, out_h, strip):
        n = min(strip, out_h - top)  # output rows in this strip
        xs, ys = x[..., top : top + n + size - 1, :], y[..., top : top + n + size - 1, :]
        m, r, mu, tmp = maps[..., : n + size - 1, :], rows[..., :n, :], means[..., :n, :], scratch[..., :n, :]
        m[0], m[1] = xs, ys
        np.multiply(xs, xs, out=m[2])
        np.multiply(ys, ys, out=m[3])
        np.multiply(xs, ys, out=m[4])
        np.multiply(m[..., :n, :], _TAPS[0], out=r)
        for k in range(1, size):
            r += np.multiply(m[..., k : k + n, :], _TAPS[k], out=tmp)
        np.multiply(r[..., :out_w], _TAPS[0], out=mu)
        for k in range(1, size):
            mu += np.multiply(r[..., k : k + out_w], _TAPS[k], out=tmp[..., :out_w])
        mu_x, mu_y, xx, yy, xy = mu
        mu_xy = mu_x * mu_y
        np.square(mu_x, out=mu_x)  # mu_x^2 from here on
        np.square(mu_y, out=mu_y)
        var_x = np.maximum(xx - mu_x, 0.0)
        var_y = np.maximum(yy - mu_y, 0.0)
        numerator = (2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)
        denominator = (mu_x + mu_y + c1) * (var_x + var_y + c2)
        sums += (numerator / denominator).sum(axis=(1, 2, 3))
    return sums


def _ssim(sr: torch.Tensor, gt: torch.Tensor) -> float:
    """SSIM averaged over the valid windows, in float64.

    Equal (to about 1e-15) to the torchmetrics map ``structural_similarity_index_measure(...,
    gaussian_kernel=True, return_full_image=True)`` without its 5-pixel margin, the definition
    srhub used before; computed directly on the valid region with a separable window, which
    takes a fraction of the time and memory of torchmetrics' padded float64 ``conv2d``
    (``benchmarks/metric_speed.py`` prints both)."""
    if min(gt.shape[-2:]) < SSIM_KERNEL_SIZE:
        raise ValueError(
            f"SSIM needs at least {SSIM_KERNEL_SIZE}x{SSIM_KERNEL_SIZE} pixels after cropping, got {tuple(gt.shape[-2:])}"
        )
    x, y = (image.detach().to(device="cpu", dtype=torch.float64).numpy() for image in (sr, gt))
    windows = x.shape[1] * (x.shape[-2] - SSIM_KERNEL_SIZE + 1) * (x.shape[-1] - SSIM_KERNEL_SIZE + 1)
    return float((_ssim_sums(x, y) / windows).mean())


def ms_ssim(
    sr: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, y_channel: bool = True, quantize: bool = True
) -> float:
    """Multi-scale SSIM (Wang et al. 2003) from torchmetrics on the prepared images; needs >= 176x176 pixels."""
    return _ms_ssim(*prepare(sr, gt, crop_border=crop_border, y_channel=y_channel, quantize=quantize))


def _ms_ssim(sr: torch.Tensor, gt: torch.Tensor) -> float:
    if min(gt.shape[-2:]) < MS_SSIM_MIN_SIZE:
        raise ValueError(
            f"MS-SSIM needs at least {MS_SSIM_MIN_SIZE}x{MS_SSIM_MIN_SIZE} pixels after cropping, "
            f"got {tuple(gt.shape[-2:])}"
        )
    values = multiscale_structural_similarity_index_measure(
        sr,
        gt,
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_KERNEL_SIZE,
        data_range=255.0,
        reduction="none",
    )
    return float(values.mean())


# --------------------------------------------------------------------------------------
# LPIPS (optional: torchvision + backbone weights)
# --------------------------------------------------------------------------------------

_LPIPS_BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def lpips_unavailable_reason(net: str = "alex") -> str | None:
    """Why LPIPS cannot be computed here, or ``None`` when it can: the heads and the
    backbone's weights are on this machine (nothing is downloaded to find out)."""
    from .perceptual import WeightsMissing, backbone_state_dict, lpips_heads_file

    if net not in _LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; known: {', '.join(_LPIPS_BACKBONES)}")
    if lpips_heads_file(net) is None:
        return f"LPIPS is unavailable: its {net} heads ship with torchmetrics or lpips, and neither has them"
    try:
        backbone_state_dict(_LPIPS_BACKBONES[net], download=False)
    except WeightsMissing as error:
        return f"LPIPS is unavailable: {error}"
    return None


@functools.lru_cache(maxsize=3)
def _lpips_model(net: str):
    from .perceptual import LPIPS

    return LPIPS(net=net, download=False)


def lpips(sr: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, net: str = "alex") -> float:
    """LPIPS v0.1 (Zhang et al. 2018, :class:`srhub.perceptual.LPIPS`) on quantised RGB; lower is better.

    Raises :class:`MetricUnavailable` when the backbone's ImageNet weights are not on this machine.
    """
    reason = lpips_unavailable_reason(net)
    if reason is not None:
        raise MetricUnavailable(reason)
    sr, gt = prepare(sr, gt, crop_border=crop_border, y_channel=False, quantize=True)
    if sr.shape[1] == 1:
        sr, gt = sr.expand(-1, 3, -1, -1), gt.expand(-1, 3, -1, -1)
    with torch.no_grad():
        return float(_lpips_model(net)((sr / 255.0).float(), (gt / 255.0).float()).mean())


def available_metrics() -> dict[str, str | None]:
    """Each metric name mapped to ``None`` when it can be computed here, else to the reason it cannot."""
    return {"psnr": None, "ssim": None, "ms_ssim": None, "lpips": lpips_unavailable_reason()}


# --------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------


def evaluate(
    sr: torch.Tensor,
    gt: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = True,
    quantize: bool = True,
    metrics: tuple[str, ...] = ("psnr", "ssim"),
) -> dict[str, float]:
    """The named metrics (from ``psnr``, ``ssim``, ``ms_ssim``, ``lpips``) under one protocol."""
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
    prepared = prepare(sr, gt, crop_border=crop_border, y_channel=y_channel, quantize=quantize)
    functions = {"psnr": _psnr, "ssim": _ssim, "ms_ssim": _ms_ssim}
    results = {}
    for name in metrics:
        if name == "lpips":
            results[name] = lpips(sr, gt, crop_border=crop_border)
        else:
            results[name] = functions[name](*prepared)
    return results
