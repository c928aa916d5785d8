"""The SRGAN discriminator of Ledig et al., "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network" (CVPR 2017).

A VGG-like classifier: eight 3x3 convolutions whose filters grow 64, 64, 128,
128, 256, 256, 512, 512 (times ``num_features / 64``), every second one with
stride 2 so the image shrinks 16 times; batch normalisation after each
convolution but the first; LeakyReLU(0.2) throughout; then a dense layer of
1024 units, LeakyReLU(0.2) and a dense layer with one output.

Faithful: the layer list of the paper's Figure 4 and its fixed 96x96 input
(``input_size``; the dense layer sees the flattened 512 x 6 x 6 feature map).
Differs: the last layer returns the logit and leaves out the paper's sigmoid,
so that training uses the numerically stable ``BCEWithLogitsLoss`` (or any
other GAN loss on logits); the convolutions that batch norm follows have no
bias (batch norm's shift makes it redundant).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import SRModel
from .srresnet import SRResNet

#: (multiple of num_features, stride) of the convolutions after the first.
LAYERS = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))
DENSE_FEATURES = 1024


class ConvBNBlock(nn.Module):
    """3x3 convolution (no bias) -> batch norm -> LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.bn(self.conv(x)), 0.2)


class SRGANDiscriminator(SRModel, tags=["srgan", "discriminator"]):
    """SRGAN's discriminator: eight strided VGG-style convolutions and two dense layers, returning a logit."""

    architecture = "srgan-discriminator"
    paper = SRResNet.paper
    role = "discriminator"
    supported_scales = ()

    def __init__(self, *, in_channels: int = 3, num_features: int = 64, input_size: int = 96) -> None:
        """
        Args:
            in_channels: channels of the judged images (3 for RGB).
            num_features: filters of the first two convolutions; later ones use 2, 4 and 8 times as many
                (paper: 64).
            input_size: height and width of the square images it judges, a multiple of 16 (paper: 96);
                the first dense layer is sized for it.
        """
        super().__init__()
        if in_channels < 1 or num_features < 1:
            raise ValueError("in_channels and num_features must be positive")
        if input_size < 16 or input_size % 16:
            raise ValueError(f"input_size must be a positive multiple of 16, got {input_size}")
        self.input_size = input_size
        self.conv_first = nn.Conv2d(in_channels, num_features, 3, padding=1)
        blocks, channels = [], num_features
        for multiple, stride in LAYERS:
            blocks.append(ConvBNBlock(channels, num_features * multiple, stride))
            channels = num_features * multiple
        self.blocks = nn.Sequential(*blocks)
        self.dense1 = nn.Linear(channels * (input_size // 16) ** 2, DENSE_FEATURES)
        self.dense2 = nn.Linear(DENSE_FEATURES, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, input_size, input_size)`` images -> ``(B, 1)`` logits (high means "real")."""
        if image.dim() != 4 or image.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"SRGANDiscriminator was built for (B, C, {self.input_size}, {self.input_size}) images, "
                f"got {tuple(image.shape)}; crop or resize the patches, or build it with input_size="
            )
        x = self.blocks(F.leaky_relu(self.conv_first(image), 0.2))
        x = F.leaky_relu(self.dense1(x.flatten(1)), 0.2)
        return self.dense2(x)
