"""EBRN: Qiu, Wang, Tao and Cheng, "Embedded Block Residual Network: A Recursive
Restoration Model for Single-Image Super-Resolution" (ICCV 2019).

Feature extraction (three 3x3 convolutions with 256, 64 and 64 filters, each
followed by a PReLU), then a chain of block residual modules (BRMs). A BRM
upsamples its low-resolution input with a transposed convolution and refines
the result with three 3x3 convolutions + PReLU (its high-resolution output);
it also projects the upsampled features back down with a strided convolution,
subtracts them from its input and refines that residual with three more
convolutions + PReLU (plus a skip): this is what the BRM could not restore,
and it is handed to the next BRM. Shallow BRMs therefore recover the easy,
low-frequency content and deeper ones what is left. The last BRM has no
back-projection. The high-resolution outputs are then embedded from the last
BRM backwards: the deepest output is added to the one before and passed
through a 3x3 convolution, that result is added to the next-shallower output,
and so on; all ten fused maps are concatenated and a 3x3 convolution
reconstructs the image.

Faithful: the topology above, 10 BRMs of 64 features, PReLU activations,
DBPN-style projection kernels (8x8 stride 4 padding 2 for x4, 6/2/2 for x2,
12/8/2 for x8), an EDSR-style mean shift around the network. With these the
x4 model has 7,632,131 parameters, matching the 7.63M usually quoted for EBRN
(a third-party PyTorch reimplementation reports 7,632,143, the same layers plus
one 1x1 mean-shift convolution).
Differs: the authors released no code, so the projection kernel sizes are
inferred (DBPN's, which the parameter count supports) and the x3 kernel
(7x7, stride 3, padding 2) is our choice; the mean shift is a fixed
non-persistent buffer (DIV2K RGB mean) on [0, 1] images, not a frozen
convolution on [0, 255] ones; PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Paper, SRModel

#: (kernel size, stride, padding) of the up- and down-projection for each scale:
#: out = (H - 1) * stride - 2 * padding + kernel = H * stride.
PROJECTION = {2: (6, 2, 2), 3: (7, 3, 2), 4: (8, 4, 2), 8: (12, 8, 2)}
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def _conv_prelu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.PReLU(out_channels)]


def _refine(channels: int) -> nn.Sequential:
    """Three 3x3 convolutions, each followed by a channel-wise PReLU."""
    return nn.Sequential(*[layer for _ in range(3) for layer in _conv_prelu(channels, channels)])


class BlockResidualModule(nn.Module):
    """One BRM: LR features -> (HR output, LR residual for the next BRM, or None for the last BRM)."""

    def __init__(self, num_features: int, scale: int, back_project: bool) -> None:
        super().__init__()
        kernel, stride, padding = PROJECTION[scale]
        self.up = nn.ConvTranspose2d(num_features, num_features, kernel, stride=stride, padding=padding)
        self.hr_flow = _refine(num_features)
        if back_project:
            self.down = nn.Conv2d(num_features, num_features, kernel, stride=stride, padding=padding)
            self.lr_flow = _refine(num_features)
        else:
            self.down = self.lr_flow = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        up = self.up(x)
        hr = self.hr_flow(up)
        if self.down is None:
            return hr, None
        residual = x - self.down(up)
        return hr, residual + self.lr_flow(residual)


class EBRN(SRModel, tags=["ebrn"]):
    """EBRN, a chain of up-/back-projection modules whose HR outputs are fused from the deepest backwards."""

    architecture = "ebrn"
    paper = Paper(
        title="Embedded Block Residual Network: A Recursive Restoration Model for Single-Image Super-Resolution",
        authors="Yajun Qiu, Ruxin Wang, Dapeng Tao, Jun Cheng",
        year=2019,
        url="https://openaccess.thecvf.com/content_ICCV_2019/html/Qiu_Embedded_Block_Residual_Network_A_Recursive_Restoration_Model_for_Single-Image_ICCV_2019_paper.html",
        bibtex="""@inproceedings{qiu2019ebrn,
  title={Embedded Block Residual Network: A Recursive Restoration Model for Single-Image Super-Resolution},
  author={Qiu, Yajun and Wang, Ruxin and Tao, Dapeng and Cheng, Jun},
  booktitle={IEEE/CVF International Conference on Computer Vision (ICCV)},
  year={2019}
}""",
    )
    supported_scales = (2, 3, 4, 8)

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        num_features: int = 64,
        extraction_features: int = 256,
        num_blocks: int = 10,
    ) -> None:
        """
        Args:
            scale: upscaling factor, one of 2, 3, 4, 8.
            in_channels: channels of the input and the output (3 for RGB; the mean shift needs 3).
            num_features: feature maps inside the BRMs and the fusion (paper: 64).
            extraction_features: filters of the first feature-extraction convolution (paper: 256).
            num_blocks: number of block residual modules (paper: 10).
        """
        super().__init__()
        if scale not in PROJECTION:
            raise ValueError(f"EBRN supports scales {tuple(PROJECTION)}, got {scale}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if num_features < 1 or extraction_features < 1:
            raise ValueError("num_features and extraction_features must be positive")
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.scale = scale
        mean = DIV2K_RGB_MEAN if in_channels == 3 else (sum(DIV2K_RGB_MEAN) / 3,)
        self.register_buffer("mean", torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)
        self.extraction = nn.Sequential(
            *_conv_prelu(in_channels, extraction_features),
            *_conv_prelu(extraction_features, num_features),
            *_conv_prelu(num_features, num_features),
        )
        self.brms = nn.ModuleList(
            BlockResidualModule(num_features, scale, back_project=i < num_blocks - 1) for i in range(num_blocks)
        )
        # fusion[j] merges the running (deeper) output into BRM number num_blocks - 2 - j
        self.fusion = nn.ModuleList(nn.Conv2d(num_features, num_features, 3, padding=1) for _ in range(num_blocks - 1))
        self.reconstruction = nn.Conv2d(num_features * num_blocks, in_channels, 3, padding=1)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        x = self.extraction(lq - self.mean)
        outputs = []
        for brm in self.brms:
            hr, x = brm(x)
            outputs.append(hr)
        fused = [outputs[-1]]
        for j, shallower in enumerate(reversed(outputs[:-1])):
            fused.append(self.fusion[j](fused[-1] + shallower))
        return self.reconstruction(torch.cat(fused, dim=1)) + self.mean
