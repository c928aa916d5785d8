"""SRResNet: the generator of Ledig et al., "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network" (SRGAN, CVPR 2017),
in the modified form of BasicSR's ``MSRResNet`` (Wang et al.'s ESRGAN codebase).

A 3x3 convolution, 16 residual blocks of two 3x3 convolutions with a ReLU
between them, pixel-shuffle upsampling (two x2 stages for x4, one x2 or x3
stage otherwise), two 3x3 convolutions at high resolution, and the bilinearly
upsampled input added to the result.

Faithful to MSRResNet: layer names (``conv_first``, ``body.{i}.conv1``,
``body.{i}.conv2``, ``upconv1``, ``upconv2`` for x4, ``conv_hr``, ``conv_last``)
and shapes, so a released BasicSR ``MSRResNet`` checkpoint loads with
``strict=True`` without renaming; LeakyReLU(0.1) after ``conv_first``, each
upsampling stage and ``conv_hr``; residual scale 1; BasicSR's initialisation
(Kaiming-normal weights scaled by 0.1, zero biases, in every convolution).
Differs from the SRGAN paper's SRResNet: no batch normalisation, LeakyReLU
instead of PReLU, no long skip connection around the residual trunk, a 3x3
(not 9x9) first and last convolution, and a global residual (the bilinear
upsampling of the input) so the network predicts only the detail. For a
released MSRResNet checkpoint the model's input and output are RGB in [0, 1]
with no mean shift, which is what BasicSR trains on.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import Paper, SRModel


@torch.no_grad()
def _scaled_kaiming_(conv: nn.Conv2d, factor: float = 0.1) -> None:
    """BasicSR's default init: Kaiming-normal (fan-in, gain sqrt 2) times ``factor``, zero bias."""
    nn.init.kaiming_normal_(conv.weight)
    conv.weight.mul_(factor)
    nn.init.zeros_(conv.bias)


class ResidualBlockNoBN(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, added to the input (no batch norm, residual scale 1)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.conv2 = nn.Conv2d(num_features, num_features, 3, padding=1)
        _scaled_kaiming_(self.conv1)
        _scaled_kaiming_(self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class SRResNet(SRModel, tags=["srresnet", "srgan"]):
    """SRResNet (MSRResNet layout): residual blocks without batch norm, pixel-shuffle upsampling, bilinear skip."""

    architecture = "srresnet"
    paper = Paper(
        title="Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network",
        authors="Christian Ledig, Lucas Theis, Ferenc Huszár, Jose Caballero, Andrew Cunningham, Alejandro Acosta, "
        "Andrew Aitken, Alykhan Tejani, Johannes Totz, Zehan Wang, Wenzhe Shi",
        year=2017,
        url="https://arxiv.org/abs/1609.04802",
        bibtex="""@inproceedings{ledig2017srgan,
  title={Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network},
  author={Ledig, Christian and Theis, Lucas and Husz{\\'a}r, Ferenc and Caballero, Jose and Cunningham, Andrew and Acosta, Alejandro and Aitken, Andrew and Tejani, Alykhan and Totz, Johannes and Wang, Zehan and Shi, Wenzhe},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={4681--4690}, year={2017}
}""",
    )
    supported_scales = (2, 3, 4)

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        num_features: int = 64,
        num_blocks: int = 16,
    ) -> None:
        """
        Args:
            scale: upscaling factor, 2, 3 or 4 (MSRResNet's choices).
            in_channels: channels of the input and the output (the bilinear skip adds the input).
            num_features: feature maps of every convolution inside the network (paper: 64).
            num_blocks: number of residual blocks (paper: 16).
        """
        super().__init__()
        if scale not in self.supported_scales:
            raise ValueError(f"SRResNet supports scales {self.supported_scales}, got {scale}")
        if in_channels < 1 or num_features < 1:
            raise ValueError("in_channels and num_features must be positive")
        if num_blocks < 0:
            raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
        self.scale = scale
        self.conv_first = nn.Conv2d(in_channels, num_features, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_features) for _ in range(num_blocks)])
        # x4 is two x2 pixel-shuffle stages; x2 and x3 one stage of their own factor
        self.shuffle = 2 if scale == 4 else scale
        self.upconv1 = nn.Conv2d(num_features, num_features * self.shuffle**2, 3, padding=1)
        self.upconv2 = nn.Conv2d(num_features, num_features * 4, 3, padding=1) if scale == 4 else None
        self.conv_hr = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.conv_last = nn.Conv2d(num_features, in_channels, 3, padding=1)
        for conv in (self.conv_first, self.upconv1, self.upconv2, self.conv_hr, self.conv_last):
            if conv is not None:
                _scaled_kaiming_(conv)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        out = self.body(F.leaky_relu(self.conv_first(lq), 0.1))
        out = F.leaky_relu(F.pixel_shuffle(self.upconv1(out), self.shuffle), 0.1)
        if self.upconv2 is not None:
            out = F.leaky_relu(F.pixel_shuffle(self.upconv2(out), 2), 0.1)
        out = self.conv_last(F.leaky_relu(self.conv_hr(out), 0.1))
        return out + F.interpolate(lq, scale_factor=self.scale, mode="bilinear", align_corners=False)
