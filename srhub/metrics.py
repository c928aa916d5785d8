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
4. PSNR with a peak of 255 (``torchmetrics.functional.peak_signal_noise_ratio``).
5. SSIM of Wang et al. (2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01,
   K2 = 0.03, L = 255, averaged over the *valid* region, i.e. only windows that
   lie entirely inside the image (MATLAB ``filter2(..., 'valid')`` in the
   reference ``ssim_index.m``, also BasicSR and scikit-image). torchmetrics'
   ``structural_similarity_index_measure`` differs in two ways that matter
   here: it pads by reflection and averages the full map (mirrored pixels
   enter the border windows), and in float32 the variances ``E[x^2] - E[x]^2``
   lose up to 3e-4 of SSIM on images with flat areas (e.g. Set14's ppt3). So
   :func:`ssim` calls torchmetrics in float64 with ``return_full_image=True``
   and averages the map without its 5-pixel margin: exactly the valid region.
   Tests check it against scikit-image's ``structural_similarity(
   gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
   data_range=255)`` (to 1e-4).
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

import torch
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from .color import rgb_to_y

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
        if image.is_floating_point() and not torch.isfinite(image).all():
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


def _to_255(image: torch.Tensor, *, quantize: bool) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image.to(torch.float64)
    image = image.to(torch.float64) * 255.0
    return image.round().clamp(0.0, 255.0) if quantize else image


def prepare(
    sr: torch.Tensor,
    gt: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = True,
    quantize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the protocol's steps 1-3: float64 ``(B, C, h, w)`` tensors in the 0-255 range."""
    _check_pair(sr, gt)
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    height, width = gt.shape[-2:]
    if height <= 2 * crop_border or width <= 2 * crop_border:
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {height}x{width} image")
    pair = []
    for image in (sr, gt):
        image = _to_255(image if image.dim() == 4 else image.unsqueeze(0), quantize=quantize)
        if y_channel and image.shape[1] == 3:
            image = rgb_to_y(image / 255.0) * 255.0
        if crop_border:
            image = image[..., crop_border:-crop_border, crop_border:-crop_border]
        pair.append(image)
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
    values = peak_signal_noise_ratio(sr, gt, data_range=255.0, reduction="none", dim=(1, 2, 3))
    return float(values.mean())


def ssim(
    sr: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, y_channel: bool = True, quantize: bool = True
) -> float:
    """SSIM (Wang et al., Gaussian 11x11 window, sigma 1.5, valid region) under the module's protocol."""
    return _ssim(*prepare(sr, gt, crop_border=crop_border, y_channel=y_channel, quantize=quantize))


def _ssim(sr: torch.Tensor, gt: torch.Tensor) -> float:
    if min(gt.shape[-2:]) < SSIM_KERNEL_SIZE:
        raise ValueError(
            f"SSIM needs at least {SSIM_KERNEL_SIZE}x{SSIM_KERNEL_SIZE} pixels after cropping, got {tuple(gt.shape[-2:])}"
        )
    margin = SSIM_KERNEL_SIZE // 2
    _, ssim_map = structural_similarity_index_measure(
        sr.to(torch.float64),
        gt.to(torch.float64),
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_KERNEL_SIZE,
        data_range=255.0,
        return_full_image=True,
    )
    valid = ssim_map[..., margin:-margin, margin:-margin]  # windows lying entirely inside the image
    return float(valid.reshape(gt.shape[0], -1).mean(dim=1).mean())


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
