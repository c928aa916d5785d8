"""FSRCNN: Dong, Loy and Tang, "Accelerating the Super-Resolution Convolutional
Neural Network" (ECCV 2016).

SRCNN made fast by working on the low-resolution image and upsampling only at
the end: feature extraction (5x5, d filters), shrinking (1x1 to s), m mapping
layers (3x3, s filters), expanding (1x1 back to d) and a 9x9 transposed
convolution ("deconvolution") with stride = scale. Every convolution but the
last is followed by a PReLU.

Faithful: the five stages, the d-s-m hyper-parameters (paper default 56-12-4),
PReLU activations, the 9x9 deconvolution, Y-channel processing
(``color_mode="y"``; chroma is upscaled bicubically) and the paper's
initialisation (He-normal convolutions, N(0, 0.001) deconvolution, zero biases).
Differs: the PReLUs are channel-wise (one slope per feature map, as in He et al.'s
PReLU; PISR's reference code uses a single shared slope), and the deconvolution's
padding (4) and output padding (scale - 1) are chosen so that the output is
exactly ``H*s x W*s`` for every scale; the paper's Caffe layer crops its output.

The PISR student (Lee et al., ECCV 2020) is this network unchanged;
:class:`FSRCNNBody` is shared with ``srhub.models.pisr.PISRTeacher``'s decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from ..color import upscale_luma
from .base import Paper, SRModel

FEATURE_NAMES = ("feature_extraction", "shrinking", "mapping", "expanding")


def _conv_prelu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.PReLU(out_channels),
    )


class FSRCNNBody(nn.Module):
    """The FSRCNN network on ``channels``-channel images: (B, C, H, W) -> (B, C, H*s, W*s)."""

    def __init__(
        self, *, scale: int, channels: int, num_features: int, shrink_features: int, num_mapping_layers: int
    ) -> None:
        super().__init__()
        if num_features < 1 or shrink_features < 1:
            raise ValueError("num_features (d) and shrink_features (s) must be positive")
        if num_mapping_layers < 0:
            raise ValueError(f"num_mapping_layers (m) must be >= 0, got {num_mapping_layers}")
        self.feature_extraction = _conv_prelu(channels, num_features, 5)
        self.shrinking = _conv_prelu(num_features, shrink_features, 1)
        self.mapping = nn.Sequential(
            *[_conv_prelu(shrink_features, shrink_features, 3) for _ in range(num_mapping_layers)]
        )
        self.expanding = _conv_prelu(shrink_features, num_features, 1)
        # (H - 1) * s - 2 * 4 + 9 + (s - 1) = H * s for every s
        self.deconvolution = nn.ConvTranspose2d(
            num_features, channels, 9, stride=scale, padding=4, output_padding=scale - 1
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The paper's initialisation: He-normal convolutions, N(0, 0.001) deconvolution, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.deconvolution.weight, std=0.001)
        nn.init.zeros_(self.deconvolution.bias)

    def forward(
        self, x: torch.Tensor, *, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Upscale ``x``; with ``return_features`` also return each stage's output by name
        (``feature_extraction``, ``shrinking``, ``mapping``, ``expanding``), as PISR distils them."""
        features = {}
        for name in FEATURE_NAMES:
            x = getattr(self, name)(x)
            features[name] = x
        out = self.deconvolution(x)
        return (out, features) if return_features else out


class FSRCNN(SRModel, tags=["fsrcnn"]):
    """FSRCNN, a small fast CNN that works at low resolution and upsamples with a learned 9x9 deconvolution."""

    architecture = "fsrcnn"
    paper = Paper(
        title="Accelerating the Super-Resolution Convolutional Neural Network",
        authors="Chao Dong, Chen Change Loy, Xiaoou Tang",
        year=2016,
        url="https://arxiv.org/abs/1608.00367",
        bibtex="""@inproceedings{dong2016fsrcnn,
  title={Accelerating the Super-Resolution Convolutional Neural Network},
  author={Dong, Chao and Loy, Chen Change and Tang, Xiaoou},
  booktitle={European Conference on Computer Vision (ECCV)},
  pages={391--407}, year={2016}
}""",
    )

    def __init__(
        self,
        *,
        scale: int = 4,
        num_features: int = 56,
        shrink_features: int = 12,
        num_mapping_layers: int = 4,
        color_mode: str = "y",
    ) -> None:
        """
        Args:
            scale: upscaling factor, the deconvolution's stride (the paper uses 2, 3 and 4;
                any integer >= 1 builds).
            num_features: d, filters of the feature-extraction and expanding layers (paper: 56).
            shrink_features: s, filters of the shrinking and mapping layers (paper: 12).
            num_mapping_layers: m, number of 3x3 mapping layers (paper: 4).
            color_mode: "y" runs on the luma channel as in the paper, "rgb" on all three channels.
        """
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if color_mode not in ("y", "rgb"):
            raise ValueError(f"color_mode must be 'y' or 'rgb', got {color_mode!r}")
        self.scale = scale
        self.color_mode = color_mode
        self.body = FSRCNNBody(
            scale=scale,
            channels=1 if color_mode == "y" else 3,
            num_features=num_features,
            shrink_features=shrink_features,
            num_mapping_layers=num_mapping_layers,
        )

    def forward_with_features(self, lq: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``forward`` plus the body's stage outputs (on the luma channel in "y" mode), for distillation."""
        features: dict[str, torch.Tensor] = {}

        def body(x: torch.Tensor) -> torch.Tensor:
            out, stages = self.body(x, return_features=True)
            features.update(stages)
            return out

        sr = upscale_luma(body, lq, self.scale) if self.color_mode == "y" else body(lq)
        return sr, features

    def forward_luma(self, y: torch.Tensor) -> torch.Tensor:
        """The paper's network on a luma plane alone: ``(B, 1, H, W)`` studio-swing Y in [16/255, 235/255]
        -> ``(B, 1, H*s, W*s)``. Used by video, whose frames already hold Y (no RGB round trip)."""
        if self.color_mode != "y":
            raise ValueError("forward_luma needs a model built with color_mode='y'")
        return self.body(y)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        if self.color_mode == "y":
            return upscale_luma(self.body, lq, self.scale)
        return self.body(lq)
