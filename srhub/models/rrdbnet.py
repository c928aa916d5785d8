"""RRDBNet: the generator of ESRGAN (Wang et al., "ESRGAN: Enhanced Super-Resolution
Generative Adversarial Networks", ECCV Workshops 2018) and of Real-ESRGAN (Wang, Xie,
Dong and Shan, "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure
Synthetic Data", ICCV Workshops 2021).

A first convolution, a trunk of Residual-in-Residual Dense Blocks (RRDB: three dense
blocks of five convolutions each) closed by a convolution and a long skip, then two
nearest-neighbour x2 upsamplings each followed by a convolution, and two final
convolutions. Faithful: 23 RRDBs of 64 features with growth 32, no batch norm,
LeakyReLU(0.2), residual scaling 0.2 inside every dense block and every RRDB, and
BasicSR's initialisation (Kaiming-normal scaled by 0.1 in the dense blocks, PyTorch's
default elsewhere). Parameter names are exactly BasicSR's (``conv_first``,
``body.{i}.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``,
``conv_hr``, ``conv_last``), so Real-ESRGAN's released state dicts
(``RealESRGAN_x4plus.pth``, ``RealESRGAN_x2plus.pth``, ``RealESRGAN_x4plus_anime_6B.pth``
with ``num_blocks=6``) load with ``strict=True``.

Scales 2 and 1 follow Real-ESRGAN: the input is pixel-unshuffled by 2 (x2) or 4 (x1)
before ``conv_first``, so the body always runs at 1/4 of the output resolution and the
same x4 tail is reused. Input height and width must then be multiples of 2 (x2) or
4 (x1), see ``size_multiple``. ESRGAN's original paper only has x4; nothing here
differs from the reference code.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .base import Paper, SRModel

#: pixel-unshuffle factor applied to the input for each supported scale (x4 needs none)
_UNSHUFFLE = {4: 1, 2: 2, 1: 4}


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=0.2)


@torch.no_grad()
def _scaled_kaiming_init(convs: list[nn.Conv2d], factor: float) -> None:
    """Kaiming-normal weights multiplied by ``factor`` and zero biases (BasicSR's residual-block init)."""
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight)
        conv.weight.mul_(factor)
        nn.init.zeros_(conv.bias)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions; the fifth maps back to ``num_features``, scaled by 0.2 and added."""

    def __init__(self, num_features: int, growth_channels: int) -> None:
        super().__init__()
        f, g = num_features, growth_channels
        self.conv1 = nn.Conv2d(f, g, 3, padding=1)
        self.conv2 = nn.Conv2d(f + g, g, 3, padding=1)
        self.conv3 = nn.Conv2d(f + 2 * g, g, 3, padding=1)
        self.conv4 = nn.Conv2d(f + 3 * g, g, 3, padding=1)
        self.conv5 = nn.Conv2d(f + 4 * g, f, 3, padding=1)
        _scaled_kaiming_init([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """The five convolutions: what the block adds to ``x`` (before the 0.2 scaling)."""
        x1 = _lrelu(self.conv1(x))
        x2 = _lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = _lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = _lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.dense(x)


class _Bfloat16DenseBlock(nn.Module):
    """A dense block convolving in bfloat16 on a float32 residual sum (see ``RRDBNet.mixed_bfloat16``)."""

    def __init__(self, block: ResidualDenseBlock) -> None:
        super().__init__()
        self.block = block.to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.block.dense(x.to(torch.bfloat16)).to(x.dtype)


class RRDB(nn.Module):
    """Residual in Residual Dense Block: three dense blocks in a row, their output scaled by 0.2 and added."""

    def __init__(self, num_features: int, growth_channels: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_features, growth_channels)
        self.rdb2 = ResidualDenseBlock(num_features, growth_channels)
        self.rdb3 = ResidualDenseBlock(num_features, growth_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(SRModel, tags=["rrdbnet", "esrgan", "real-esrgan"]):
    """RRDBNet, the ESRGAN / Real-ESRGAN generator: residual-in-residual dense blocks and a nearest x4 upsampler."""

    architecture = "rrdbnet"
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
}
@inproceedings{wang2021realesrgan,
  title={Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data},
  author={Wang, Xintao and Xie, Liangbin and Dong, Chao and Shan, Ying},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV) Workshops},
  year={2021}
}""",
    )
    supported_scales = (1, 2, 4)

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 64,
        num_blocks: int = 23,
        growth_channels: int = 32,
    ) -> None:
        """
        Args:
            scale: upscaling factor, 4 (ESRGAN), 2 or 1 (Real-ESRGAN's pixel-unshuffled input).
            in_channels: channels of the input image.
            out_channels: channels of the output image.
            num_features: feature channels of the trunk (64 in the paper).
            num_blocks: number of RRDBs in the trunk (23 in the paper; 6 in Real-ESRGAN's anime model).
            growth_channels: channels each convolution of a dense block adds (32 in the paper).
        """
        super().__init__()
        if not isinstance(scale, int) or scale not in self.supported_scales:
            raise ValueError(f"RRDBNet supports scales {self.supported_scales}, got {scale!r}")
        if min(in_channels, out_channels, num_features, growth_channels) < 1:
            raise ValueError("in_channels, out_channels, num_features and growth_channels must be positive")
        if num_blocks < 0:
            raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
        self.scale = scale
        self.unshuffle = _UNSHUFFLE[scale]
        f = num_features
        self.conv_first = nn.Conv2d(in_channels * self.unshuffle**2, f, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(f, growth_channels) for _ in range(num_blocks)))
        self.conv_body = nn.Conv2d(f, f, 3, padding=1)
        self.conv_up1 = nn.Conv2d(f, f, 3, padding=1)
        self.conv_up2 = nn.Conv2d(f, f, 3, padding=1)
        self.conv_hr = nn.Conv2d(f, f, 3, padding=1)
        self.conv_last = nn.Conv2d(f, out_channels, 3, padding=1)

    @property
    def size_multiple(self) -> int:
        return self.unshuffle

    def mixed_bfloat16(self) -> RRDBNet:
        """A copy whose dense blocks convolve in bfloat16 while everything else stays float32.

        The dense blocks hold 92% of the multiply-adds; the first convolution (which sees
        the image itself, whose 8-bit levels bfloat16 cannot all represent), the
        residual sums of the trunk, and the upsampler stay float32. Measured on
        realesrgan-x4plus against its float32 output on the 19 Set5/Set14 images at LR
        size: 45.7-61.5 dB, 0.14-0.74/255 mean abs (median 0.23); rounding the whole
        network to bfloat16 gives 47.4-56.1 dB, 0.29-0.71/255 (median 0.43), see
        ``benchmarks/speed.py --quality``.
        """
        mixed = copy.deepcopy(self)
        for rrdb in mixed.body:
            rrdb.rdb1, rrdb.rdb2, rrdb.rdb3 = (_Bfloat16DenseBlock(b) for b in (rrdb.rdb1, rrdb.rdb2, rrdb.rdb3))
        return mixed

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        h, w = lq.shape[-2:]
        if h % self.unshuffle or w % self.unshuffle:
            raise ValueError(
                f"RRDBNet x{self.scale} needs height and width divisible by {self.unshuffle}, "
                f"got {h}x{w}; pad the input"
            )
        feat = self.conv_first(F.pixel_unshuffle(lq, self.unshuffle) if self.unshuffle > 1 else lq)
        feat = feat + self.conv_body(self.body(feat))
        feat = _lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = _lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat)))
