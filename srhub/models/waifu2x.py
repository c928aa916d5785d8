"""waifu2x: nagadomi's anime-style image upscaler and denoiser (2015-2018; project
https://github.com/nagadomi/waifu2x, MIT licence; PyTorch port in nagadomi/nunif), as run
by nihui's waifu2x-ncnn-vulkan (MIT).

Two of its networks, each trained in variants (anime art or photos; noise levels 0-3 for
JPEG denoising, or none):

* **upconv_7** (:class:`Waifu2xUpConv7`, x2): six unpadded 3x3 convolutions (16, 32, 64,
  128, 128, 256 channels, LeakyReLU 0.1) and a 4x4 stride-2 transposed convolution.
  Parameter names follow nunif's ``UpConv7`` (``net.0`` ... ``net.12``).
* **cunet** (:class:`Waifu2xCUNet`, x1 denoise-only or x2): two U-Nets in cascade with
  squeeze-excitation, the network Real-CUGAN later retrained; it shares
  :mod:`srhub.models.realcugan`'s blocks and nunif's parameter names (``unet1.conv1.conv.0`` ...).

Faithful to waifu2x-ncnn-vulkan's whole-image path: the input is padded by replicating its
edge pixels (7 px for upconv_7; 18 px for cunet x2, 28 px for cunet x1) plus extra
bottom/right padding to a multiple of 2 (x2) or 4 (x1), and the output's top-left
``H*scale x W*scale`` is kept. What differs: float RGB in [0, 1] in and out (no 8-bit rounding), no test-time augmentation,
and srhub's generic tiler instead of the ncnn tool's own: cunet's tiles share the
exact whole-image squeeze-excitation means (:func:`srhub.models.realcugan.synchronised_gates`),
start on its stride grid (``size_multiple`` 2 at x2, 4 at x1) and overlap by ``min_tile_overlap``;
upconv_7 has no global state and tiles exactly. nunif's PyTorch cunet clamps the first U-Net's
output to [0, 1] before the second; the ncnn port (matched here) does not.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import Paper, SRModel
from .realcugan import UNet1, UNet2, cascade, synchronised_gates

_PAPER = Paper(
    title="waifu2x: Image Super-Resolution for Anime-Style Art",
    authors="nagadomi",
    year=2015,
    url="https://github.com/nagadomi/waifu2x",
    bibtex="""@misc{waifu2x,
  title={waifu2x: Image Super-Resolution for Anime-Style Art},
  author={nagadomi},
  year={2015},
  howpublished={\\url{https://github.com/nagadomi/waifu2x}}
}""",
)


def _padded(lq: torch.Tensor, pad: int, align: int) -> torch.Tensor:
    """Replicate-pad ``pad`` px on every side, plus bottom/right up to a multiple of ``align``."""
    h, w = lq.shape[-2:]
    return F.pad(lq, (pad, pad + (-w) % align, pad, pad + (-h) % align), mode="replicate")


class Waifu2xUpConv7(SRModel, tags=["waifu2x", "anime"]):
    """waifu2x upconv_7: six unpadded convolutions and a transposed convolution, x2 (anime art or photo)."""

    architecture = "waifu2x-upconv7"
    paper = _PAPER
    supported_scales = (2,)
    padding = 7

    def __init__(self, *, scale: int = 2, in_channels: int = 3) -> None:
        """
        Args:
            scale: 2 (the only factor upconv_7 exists for).
            in_channels: channels of the input and output image (3 in every release).
        """
        super().__init__()
        if scale != 2:
            raise ValueError(f"waifu2x upconv_7 upscales by 2 only, got scale={scale!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        self.scale = scale
        widths = [in_channels, 16, 32, 64, 128, 128, 256]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 3), nn.LeakyReLU(0.1)]
        layers.append(nn.ConvTranspose2d(256, in_channels, 4, stride=2, padding=3))
        self.net = nn.Sequential(*layers)

    @property
    def min_tile_overlap(self) -> int:
        """Least tile overlap for seamless tiling (4x the reach of the unpadded convolutions)."""
        return 4 * self.padding

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        h, w = lq.shape[-2:]
        return self.net(_padded(lq, self.padding, 2))[..., : 2 * h, : 2 * w]


class Waifu2xCUNet(SRModel, tags=["waifu2x", "anime"]):
    """waifu2x cunet: two cascaded U-Nets with squeeze-excitation, x1 (denoise only) or x2."""

    architecture = "waifu2x-cunet"
    paper = _PAPER
    #: ``forward`` pads any input size itself, like the reference: a whole image needs no padding by the tiler.
    pads_input = True
    supported_scales = (1, 2)
    supports_half = False

    def __init__(self, *, scale: int = 2, in_channels: int = 3) -> None:
        """
        Args:
            scale: 1 (denoising only) or 2.
            in_channels: channels of the input and output image (3 in every release).
        """
        super().__init__()
        if scale not in self.supported_scales:
            raise ValueError(f"waifu2x cunet exists for scales {self.supported_scales}, got {scale!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        self.scale = scale
        self.unet1 = UNet1(in_channels, in_channels, scale=scale)
        self.unet2 = UNet2(in_channels, in_channels)

    @property
    def padding(self) -> int:
        """Replicated border added to each side (waifu2x-ncnn-vulkan's prepadding)."""
        return 18 if self.scale == 2 else 28

    @property
    def min_tile_overlap(self) -> int:
        """Least tile overlap for seamless tiling (4x the reach of the unpadded convolutions)."""
        return 4 * self.padding

    @property
    def size_multiple(self) -> int:
        """Tiles must start on the U-Nets' stride-2 grid (2 at x2, 4 at x1); ``forward`` takes any size."""
        return 2 if self.scale == 2 else 4

    def synchronised_gates(self, lq: torch.Tensor, *, max_pixels: int):
        """Share the squeeze-excitation gates of a whole-image run across tiles (as Real-CUGAN does)."""
        return synchronised_gates(self, lq, max_pixels=max_pixels)

    def padded_input(self, lq: torch.Tensor) -> torch.Tensor:
        """What the U-Nets see: the input replicate-padded and aligned as waifu2x-ncnn-vulkan does."""
        return _padded(lq, self.padding, self.size_multiple)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        h, w = lq.shape[-2:]
        return cascade(self.unet1, self.unet2, self.padded_input(lq))[..., : h * self.scale, : w * self.scale]
