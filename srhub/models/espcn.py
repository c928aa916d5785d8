"""ESPCN: Shi, Caballero, Huszár, Totz, Aitken, Bishop, Rueckert and Wang,
"Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network" (CVPR 2016).

Three convolutions on the low-resolution image, the last producing s^2 channels
that a periodic shuffle ("sub-pixel convolution", ``pixel_shuffle``) rearranges
into the s-times larger image.

Faithful: the paper's configuration (f1, n1) = (5, 64), (f2, n2) = (3, 32),
f3 = 3, tanh after the first two layers and none after the last, Y-channel
processing (``color_mode="y"``; chroma is upscaled bicubically).
Differs: zero padding keeps every feature map the size of the input (the paper
trains on valid convolutions of 17r x 17r patches and crops the targets), and
PyTorch's default initialisation is used.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..color import upscale_luma
from .base import Paper, SRModel


class ESPCN(SRModel, tags=["espcn"]):
    """ESPCN, three convolutions at low resolution and a sub-pixel (pixel-shuffle) output layer."""

    architecture = "espcn"
    paper = Paper(
        title="Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel "
        "Convolutional Neural Network",
        authors="Wenzhe Shi, Jose Caballero, Ferenc Huszár, Johannes Totz, Andrew P. Aitken, Rob Bishop, "
        "Daniel Rueckert, Zehan Wang",
        year=2016,
        url="https://arxiv.org/abs/1609.05158",
        bibtex="""@inproceedings{shi2016espcn,
  title={Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network},
  author={Shi, Wenzhe and Caballero, Jose and Husz{\\'a}r, Ferenc and Totz, Johannes and Aitken, Andrew P. and Bishop, Rob and Rueckert, Daniel and Wang, Zehan},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={1874--1883}, year={2016}
}""",
    )

    def __init__(
        self,
        *,
        scale: int = 4,
        num_features: int = 64,
        hidden_features: int = 32,
        color_mode: str = "y",
    ) -> None:
        """
        Args:
            scale: upscaling factor r; the last layer has ``channels * r**2`` filters
                (the paper uses 2, 3 and 4; any integer >= 1 builds).
            num_features: n1, filters of the first (5x5) layer (paper: 64).
            hidden_features: n2, filters of the second (3x3) layer (paper: 32).
            color_mode: "y" runs on the luma channel as in the paper, "rgb" on all three channels.
        """
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if color_mode not in ("y", "rgb"):
            raise ValueError(f"color_mode must be 'y' or 'rgb', got {color_mode!r}")
        if num_features < 1 or hidden_features < 1:
            raise ValueError("num_features and hidden_features must be positive")
        self.scale = scale
        self.color_mode = color_mode
        channels = 1 if color_mode == "y" else 3
        self.conv1 = nn.Conv2d(channels, num_features, 5, padding=2)
        self.conv2 = nn.Conv2d(num_features, hidden_features, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden_features, channels * scale * scale, 3, padding=1)

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return F.pixel_shuffle(self.conv3(x), self.scale)

    def forward_luma(self, y: torch.Tensor) -> torch.Tensor:
        """The paper's network on a luma plane alone: ``(B, 1, H, W)`` studio-swing Y in [16/255, 235/255]
        -> ``(B, 1, H*s, W*s)``. Used by video, whose frames already hold Y (no RGB round trip)."""
        if self.color_mode != "y":
            raise ValueError("forward_luma needs a model built with color_mode='y'")
        return self._body(y)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        if self.color_mode == "y":
            return upscale_luma(self._body, lq, self.scale)
        return self._body(lq)
