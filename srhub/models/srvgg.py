"""SRVGGNetCompact: the small VGG-style network of Real-ESRGAN's video and general
models (``realesr-animevideov3``, ``realesr-general-x4v3``), released with Real-ESRGAN
(Wang, Xie, Dong and Shan, "Real-ESRGAN: Training Real-World Blind Super-Resolution
with Pure Synthetic Data", ICCV Workshops 2021; the compact network came with the
2022 releases and has no paper of its own).

A plain stack of 3x3 convolutions with activations, all at the input resolution, and
one final convolution to ``out_channels * scale**2`` channels that a pixel shuffle
turns into the output; the nearest-neighbour upsampled input is added, so the network
only learns a residual. Faithful to BasicSR's ``SRVGGNetCompact``: the parameter names
(``body.0`` first conv, ``body.1`` its activation, then ``num_convs`` (conv,
activation) pairs, then the last conv), PReLU with one slope per channel, LeakyReLU
slope 0.1, PyTorch's default initialisation. ``realesr-animevideov3`` is 64 features x
16 convs with PReLU at x4 (621,424 parameters); ``realesr-general-x4v3`` is the same
with 32 convs (1,213,296). Nothing differs from the reference code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import Paper, SRModel

ACTIVATIONS = ("prelu", "relu", "leakyrelu")


def _activation(name: str, num_features: int) -> nn.Module:
    if name == "prelu":
        return nn.PReLU(num_parameters=num_features)
    if name == "relu":
        return nn.ReLU()
    return nn.LeakyReLU(negative_slope=0.1)


class SRVGGNetCompact(SRModel, tags=["srvggnet-compact", "real-esrgan"]):
    """SRVGGNetCompact, Real-ESRGAN's compact network: low-resolution convolutions, a pixel shuffle, plus the input."""

    architecture = "srvggnet-compact"
    paper = Paper(
        title="Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data",
        authors="Xintao Wang, Liangbin Xie, Chao Dong, Ying Shan",
        year=2021,
        url="https://arxiv.org/abs/2107.10833",
        bibtex="""@inproceedings{wang2021realesrgan,
  title={Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data},
  author={Wang, Xintao and Xie, Liangbin and Dong, Chao and Shan, Ying},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV) Workshops},
  year={2021}
}""",
    )
    supported_scales = (1, 2, 3, 4)

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 64,
        num_convs: int = 16,
        activation: str = "prelu",
    ) -> None:
        """
        Args:
            scale: upscaling factor, any integer >= 1 (the pixel shuffle adapts).
            in_channels: channels of the input image.
            out_channels: channels of the output image; must equal ``in_channels``
                because the upsampled input is added to the output.
            num_features: feature channels of every hidden convolution.
            num_convs: hidden 3x3 convolutions between the first and the last one
                (16 in realesr-animevideov3, 32 in realesr-general-x4v3).
            activation: "prelu" (one learned slope per channel), "relu" or "leakyrelu" (slope 0.1).
        """
        super().__init__()
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if min(in_channels, out_channels, num_features) < 1:
            raise ValueError("in_channels, out_channels and num_features must be positive")
        if in_channels != out_channels:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must match: "
                "the upsampled input is added to the output"
            )
        if num_convs < 0:
            raise ValueError(f"num_convs must be >= 0, got {num_convs}")
        self.scale = scale
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, num_features, 3, padding=1),
            _activation(activation, num_features),
        ]
        for _ in range(num_convs):
            layers += [nn.Conv2d(num_features, num_features, 3, padding=1), _activation(activation, num_features)]
        layers.append(nn.Conv2d(num_features, out_channels * scale * scale, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        residual = self.upsampler(self.body(lq))
        return residual + F.interpolate(lq, scale_factor=self.scale, mode="nearest")
