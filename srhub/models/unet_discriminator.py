"""U-Net discriminator with spectral normalisation, from Real-ESRGAN (Wang, Xie, Dong
and Shan, "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
Data", ICCV Workshops 2021).

Instead of one logit per image it gives one per pixel, so the generator gets local
feedback. An encoder of three 4x4 stride-2 convolutions (features x2, x4, x8), a decoder
of three bilinear x2 upsamplings each followed by a 3x3 convolution, with the encoder's
maps added back (skip connections), then two more 3x3 convolutions and a last one to
a single channel. Spectral normalisation on every convolution except the first and
the last, LeakyReLU(0.2) everywhere. Faithful to BasicSR's ``UNetDiscriminatorSN``:
names ``conv0`` ... ``conv9``, and the spectral-normalised layers keep PyTorch's classic
``spectral_norm`` hook layout (``weight_orig``, ``weight_u``, ``weight_v``), so the
released ``RealESRGAN_x4plus_netD.pth`` loads with ``strict=True``. Height and width
must be multiples of 8 (three halvings, then the skips must line up); the reference
code fails on other sizes, here a ``ValueError`` says so.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from .base import Paper, SRModel


def _sn_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Conv2d:
    """A bias-free convolution wrapped in spectral normalisation (one power iteration per training step)."""
    return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel_size, stride, 1, bias=False))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=0.2)


class UNetDiscriminatorSN(SRModel, tags=["discriminator", "real-esrgan"]):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation: one realness logit per pixel."""

    architecture = "unet-discriminator-sn"
    role = "discriminator"
    supported_scales = ()
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

    def __init__(self, *, in_channels: int = 3, num_features: int = 64, skip_connection: bool = True) -> None:
        """
        Args:
            in_channels: channels of the judged image.
            num_features: features at full resolution; the encoder goes to 2x, 4x and 8x as many.
            skip_connection: add the encoder's feature maps to the decoder's (the U-Net skips).
        """
        super().__init__()
        if in_channels < 1 or num_features < 1:
            raise ValueError("in_channels and num_features must be positive")
        f = num_features
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(in_channels, f, 3, 1, 1)
        # encoder
        self.conv1 = _sn_conv(f, f * 2, 4, 2)
        self.conv2 = _sn_conv(f * 2, f * 4, 4, 2)
        self.conv3 = _sn_conv(f * 4, f * 8, 4, 2)
        # decoder
        self.conv4 = _sn_conv(f * 8, f * 4, 3, 1)
        self.conv5 = _sn_conv(f * 4, f * 2, 3, 1)
        self.conv6 = _sn_conv(f * 2, f, 3, 1)
        # extra convolutions at full resolution
        self.conv7 = _sn_conv(f, f, 3, 1)
        self.conv8 = _sn_conv(f, f, 3, 1)
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    @property
    def size_multiple(self) -> int:
        return 8

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 1, H, W)`` per-pixel logits; H and W multiples of 8."""
        h, w = image.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(f"UNetDiscriminatorSN needs height and width divisible by 8, got {h}x{w}")
        x0 = _lrelu(self.conv0(image))
        x1 = _lrelu(self.conv1(x0))
        x2 = _lrelu(self.conv2(x1))
        x3 = _lrelu(self.conv3(x2))

        x4 = _lrelu(self.conv4(_up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = _lrelu(self.conv5(_up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = _lrelu(self.conv6(_up(x5)))
        if self.skip_connection:
            x6 = x6 + x0

        out = _lrelu(self.conv7(x6))
        out = _lrelu(self.conv8(out))
        return self.conv9(out)
