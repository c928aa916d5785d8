"""Colour conversions shared by the Y-channel models and the metrics.

The SR literature measures and (for SRCNN, FSRCNN and ESPCN) trains on the
luma channel of ITU-R BT.601 in its "studio swing" form, the one MATLAB's
``rgb2ycbcr`` implements: for RGB in [0, 1],

    Y  =  16/255 + ( 65.481 R + 128.553 G +  24.966 B) / 255
    Cb = 128/255 + (-37.797 R -  74.203 G + 112.000 B) / 255
    Cr = 128/255 + (112.000 R -  93.786 G -  18.214 B) / 255

so Y lies in [16/255, 235/255]. ``ycbcr_to_rgb`` is the exact inverse.
All functions take ``(B, 3, H, W)`` or ``(3, H, W)`` float tensors in [0, 1].
"""

from __future__ import annotations

import torch

_RGB_TO_YCBCR = torch.tensor(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=torch.float64,
) / 255.0
_YCBCR_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64) / 255.0
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)


def _check_rgb(image: torch.Tensor) -> None:
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"expected an RGB tensor of shape (B, 3, H, W) or (3, H, W), got {tuple(image.shape)}")


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    matrix = matrix.to(device=image.device, dtype=image.dtype)
    return torch.einsum("ij,...jhw->...ihw", matrix, image)


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """Luma (BT.601, studio swing) of an RGB image, keeping a channel axis of size 1."""
    _check_rgb(image)
    offset = _YCBCR_OFFSET[0].item()
    return _apply(_RGB_TO_YCBCR[:1], image) + offset


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """RGB -> YCbCr (BT.601, studio swing, MATLAB ``rgb2ycbcr``)."""
    _check_rgb(image)
    offset = _YCBCR_OFFSET.to(device=image.device, dtype=image.dtype).view(3, 1, 1)
    return _apply(_RGB_TO_YCBCR, image) + offset


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """YCbCr (BT.601, studio swing) -> RGB; the inverse of :func:`rgb_to_ycbcr`."""
    _check_rgb(image)
    offset = _YCBCR_OFFSET.to(device=image.device, dtype=image.dtype).view(3, 1, 1)
    return _apply(_YCBCR_TO_RGB, image - offset)


def upscale_luma(body, lq: torch.Tensor, scale: int) -> torch.Tensor:
    """Run a single-channel SR network on the luma of ``lq``; upscale chroma bicubically.

    This is how SRCNN, FSRCNN and ESPCN are defined in their papers (they see
    only Y); wrapping it here keeps srhub's RGB-in, RGB-out contract.
    """
    ycbcr = rgb_to_ycbcr(lq)
    y = body(ycbcr[:, :1])
    cbcr = torch.nn.functional.interpolate(ycbcr[:, 1:], scale_factor=scale, mode="bicubic", align_corners=False)
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=1))
