"""SRCNN: Dong, Loy, He and Tang, "Image Super-Resolution Using Deep Convolutional
Networks" (ECCV 2014; TPAMI 2016).

Three convolutions (patch extraction, non-linear mapping, reconstruction) on a
bicubic-upsampled input. Faithful: filter sizes 9-1-5, 9-3-5 and 9-5-5 with
n1=64, n2=32 (the TPAMI paper's 9-5-5 is the default), ReLU after the first two
layers, Y-channel processing (``color_mode="y"``; chroma is upscaled bicubically).
Differs: zero padding keeps the output the size of the input (the paper's
convolutions are "valid" and shrink the image), and the bicubic pre-upsampling
is PyTorch's, inside the model, so ``forward`` takes the low-resolution image.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..color import upscale_luma
from .base import Paper, SRModel

VARIANTS = {"9-1-5": (9, 1, 5), "9-3-5": (9, 3, 5), "9-5-5": (9, 5, 5)}


class SRCNN(SRModel, tags=["srcnn"]):
    """SRCNN, the first CNN for single-image super-resolution: three convolutions on a bicubic-upsampled image."""

    architecture = "srcnn"
    paper = Paper(
        title="Image Super-Resolution Using Deep Convolutional Networks",
        authors="Chao Dong, Chen Change Loy, Kaiming He, Xiaoou Tang",
        year=2016,
        url="https://arxiv.org/abs/1501.00092",
        bibtex="""@article{dong2016srcnn,
  title={Image Super-Resolution Using Deep Convolutional Networks},
  author={Dong, Chao and Loy, Chen Change and He, Kaiming and Tang, Xiaoou},
  journal={IEEE Transactions on Pattern Analysis and Machine Intelligence},
  volume={38}, number={2}, pages={295--307}, year={2016}
}""",
    )

    def __init__(
        self,
        *,
        scale: int = 4,
        variant: str = "9-5-5",
        num_features: int = 64,
        hidden_features: int = 32,
        color_mode: str = "y",
    ) -> None:
        """
        Args:
            scale: upscaling factor (any integer >= 1; the network itself is scale-free).
            variant: filter sizes f1-f2-f3, one of "9-1-5", "9-3-5", "9-5-5".
            num_features: n1, filters of the first layer.
            hidden_features: n2, filters of the mapping layer.
            color_mode: "y" runs on the luma channel as in the paper, "rgb" on all three channels.
        """
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown SRCNN variant {variant!r}; choose one of {sorted(VARIANTS)}")
        if color_mode not in ("y", "rgb"):
            raise ValueError(f"color_mode must be 'y' or 'rgb', got {color_mode!r}")
        if num_features < 1 or hidden_features < 1:
            raise ValueError("num_features and hidden_features must be positive")
        self.scale = scale
        self.color_mode = color_mode
        channels = 1 if color_mode == "y" else 3
        f1, f2, f3 = VARIANTS[variant]
        self.extract = nn.Conv2d(channels, num_features, f1, padding=f1 // 2)
        self.mapping = nn.Conv2d(num_features, hidden_features, f2, padding=f2 // 2)
        self.reconstruct = nn.Conv2d(hidden_features, channels, f3, padding=f3 // 2)

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        x = F.relu(self.extract(x))
        x = F.relu(self.mapping(x))
        return self.reconstruct(x)

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
