"""VGG-style discriminator of ESRGAN (Wang et al., "ESRGAN: Enhanced Super-Resolution
Generative Adversarial Networks", ECCV Workshops 2018), itself SRGAN's discriminator
(Ledig et al., CVPR 2017) widened to 128x128 crops.

Five stages; each is a 3x3 convolution at stride 1 and a 4x4 convolution at stride 2,
with batch norm (except after the very first convolution) and LeakyReLU(0.2), doubling
the features up to 8x ``num_features``. The 4x4 map that remains is flattened into a
100-unit dense layer and a single logit. Faithful to BasicSR's
``VGGStyleDiscriminator``, parameter and buffer names included (``conv0_0``,
``conv0_1``, ``bn0_1``, ..., ``conv4_1``, ``bn4_1``, ``linear1``, ``linear2``; a sixth
stage ``conv5_*`` for 256x256 inputs). It only accepts square inputs of exactly
``input_size`` pixels: the dense layer fixes the size. It outputs a raw logit
(relativistic or vanilla GAN losses apply the sigmoid), not a probability.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import Paper, SRModel

#: Input sizes the discriminator can be built for (five or six stride-2 stages down to 4x4).
INPUT_SIZES = (128, 256)


class VGGStyleDiscriminator(SRModel, tags=["discriminator", "esrgan"]):
    """ESRGAN's VGG-style discriminator: strided convs with batch norm down to 4x4, two dense layers, one logit."""

    architecture = "esrgan-discriminator"
    role = "discriminator"
    supported_scales = ()
    paper = Paper(
        title="ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks",
        authors="Xintao Wang, Ke Yu, Shixiang Wu, Jinjin Gu, Yihao Liu, Chao Dong, Yu Qiao, Chen Change Loy",
        year=2018,
        url="https://arxiv.org/abs/1809.00219",
        bibtex="""@inproceedings{wang2018esrgan,
  title={ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks},
  author={Wang, Xintao and Yu, Ke and Wu, Shixiang and Gu, Jinjin and Liu, Yihao and Dong, Chao and Qiao, Yu and Loy, Chen Change},
  booktitle={Proceedings of the European Conference on Computer Vision (ECCV) Workshops},
  year={2018}
}""",
    )

    def __init__(self, *, in_channels: int = 3, num_features: int = 64, input_size: int = 128) -> None:
        """
        Args:
            in_channels: channels of the judged image.
            num_features: features of the first stage; stages have 1, 2, 4, 8, 8 (and 8) times as many.
            input_size: side of the square input, 128 (five stages) or 256 (six stages).
        """
        super().__init__()
        if input_size not in INPUT_SIZES:
            raise ValueError(f"input_size must be one of {INPUT_SIZES}, got {input_size!r}")
        if in_channels < 1 or num_features < 1:
            raise ValueError("in_channels and num_features must be positive")
        self.input_size = input_size
        widths = [num_features, num_features * 2, num_features * 4, num_features * 8, num_features * 8]
        if input_size == 256:
            widths.append(num_features * 8)
        self.num_stages = len(widths)
        # stage 0: conv0_0 has a bias and no batch norm; every other convolution is bias-free and normalised
        self.conv0_0 = nn.Conv2d(in_channels, widths[0], 3, 1, 1)
        self.conv0_1 = nn.Conv2d(widths[0], widths[0], 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(widths[0])
        for i in range(1, self.num_stages):
            self.add_module(f"conv{i}_0", nn.Conv2d(widths[i - 1], widths[i], 3, 1, 1, bias=False))
            self.add_module(f"bn{i}_0", nn.BatchNorm2d(widths[i]))
            self.add_module(f"conv{i}_1", nn.Conv2d(widths[i], widths[i], 4, 2, 1, bias=False))
            self.add_module(f"bn{i}_1", nn.BatchNorm2d(widths[i]))
        self.linear1 = nn.Linear(widths[-1] * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, input_size, input_size)`` -> ``(B, 1)`` logits."""
        if image.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"VGGStyleDiscriminator was built for {self.input_size}x{self.input_size} inputs, "
                f"got {tuple(image.shape[-2:])}; crop the images or set input_size"
            )
        feat = F.leaky_relu(self.conv0_0(image), 0.2)
        feat = F.leaky_relu(self.bn0_1(self.conv0_1(feat)), 0.2)
        for i in range(1, self.num_stages):
            feat = F.leaky_relu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)), 0.2)
            feat = F.leaky_relu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)), 0.2)
        feat = F.leaky_relu(self.linear1(feat.flatten(1)), 0.2)
        return self.linear2(feat)
