"""BSRN: Li, Liu, Chen, Cai, Gu, Qiao and Dong, "Blueprint Separable Residual Network
for Efficient Image Super-Resolution" (CVPR Workshops 2022), and BSRN-S, the smaller
variant from the same paper that won the model-complexity track of the NTIRE 2022
efficient super-resolution challenge.

Every 3x3 convolution is a blueprint separable convolution (BSConv: a 1x1 pointwise
convolution, then a 3x3 depthwise one). The trunk is a chain of efficient separable
distillation blocks (ESDB): three residual BSConv steps, each also "distilling" half
the channels through a 1x1 convolution, a fourth BSConv, a 1x1 fusion, then enhanced
spatial attention (ESA: a strided, max-pooled branch producing a per-pixel gate) and
contrast-aware channel attention (CCA: a gate from each channel's standard deviation
plus mean). The outputs of all blocks are concatenated, fused by a 1x1 convolution and
GELU and a BSConv, added to the shallow features, and a single 3x3 convolution plus
pixel shuffle makes the output.

Faithful to the reference code (github.com/xiaom233/BSRN): BSRN is 64 features and 8
ESDBs with GELU, no bias on the pointwise convolutions, and its parameter names
(``fea_conv``, ``B1`` ... ``B8``, ``c1``, ``c2``, ``upsampler.upsampleOneStep.0``) so the
released ``net_g_BSRN_x{2,3,4}.pth`` load with ``strict=True`` (352,400 parameters at
x4). The input is fed four times over (concatenated along channels), as in the
reference. BSRN-S (class ``BSRNS``) is 48 features and 5 blocks, pointwise
convolutions with biases, a plain strided 3x3 convolution in ESA, and instead of CCA
a learned per-channel scale (``cw``) followed by a 1x1 convolution (``conv_out``);
156,288 parameters. Differs: the reference BSRN-S writes its 1x1 convolutions as
``nn.Linear`` layers on channels-last tensors; here they are 1x1 convolutions (the same
function), so its 2-D weights (and ``cw``) need a trailing ``[..., None, None]`` when
imported. ESA max-pools a map a little under half the input size with a 7x7 window,
so the reference fails on inputs under 15 pixels; here the ESA branch replicate-pads
such small maps, which changes nothing for larger inputs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import Paper, SRModel

ESA_DOWNSAMPLES = ("bsconv", "conv")
CHANNEL_ATTENTIONS = ("cca", "scale")
#: Smallest map the ESA branch's strided conv + 7x7 max pool can take.
_ESA_MIN_SIZE = 15

_PAPER = Paper(
    title="Blueprint Separable Residual Network for Efficient Image Super-Resolution",
    authors="Zheyuan Li, Yingqi Liu, Xiangyu Chen, Haoming Cai, Jinjin Gu, Yu Qiao, Chao Dong",
    year=2022,
    url="https://arxiv.org/abs/2205.05996",
    bibtex="""@inproceedings{li2022bsrn,
  title={Blueprint Separable Residual Network for Efficient Image Super-Resolution},
  author={Li, Zheyuan and Liu, Yingqi and Chen, Xiangyu and Cai, Haoming and Gu, Jinjin and Qiao, Yu and Dong, Chao},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) Workshops},
  pages={833--843},
  year={2022}
}""",
)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1)


class BSConv(nn.Module):
    """Blueprint separable convolution (BSConv-U): pointwise 1x1, then a depthwise k x k per output channel."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        pointwise_bias: bool,
        stride: int = 1,
        padding: int = 1,
    ) -> None:
        super().__init__()
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=pointwise_bias)
        self.dw = nn.Conv2d(out_channels, out_channels, 3, stride, padding, groups=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(self.pw(x))


class ESA(nn.Module):
    """Enhanced spatial attention: a per-pixel sigmoid gate computed at reduced width and resolution."""

    def __init__(self, num_features: int, *, pointwise_bias: bool, downsample: str) -> None:
        super().__init__()
        f = num_features // 4
        self.conv1 = _conv1x1(num_features, f)
        self.conv_f = _conv1x1(f, f)
        if downsample == "bsconv":
            self.conv2 = BSConv(f, f, pointwise_bias=pointwise_bias, stride=2, padding=0)
        else:
            self.conv2 = nn.Conv2d(f, f, 3, 2, 0)
        self.conv_max = BSConv(f, f, pointwise_bias=pointwise_bias)
        self.conv3 = BSConv(f, f, pointwise_bias=pointwise_bias)
        self.conv3_ = BSConv(f, f, pointwise_bias=pointwise_bias)
        self.conv4 = _conv1x1(f, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        h, w = c1_.shape[-2:]
        small = c1_
        if h < _ESA_MIN_SIZE or w < _ESA_MIN_SIZE:
            small = F.pad(c1_, (0, max(0, _ESA_MIN_SIZE - w), 0, max(0, _ESA_MIN_SIZE - h)), mode="replicate")
        pooled = F.max_pool2d(self.conv2(small), kernel_size=7, stride=3)
        c3 = F.gelu(self.conv_max(pooled))
        c3 = self.conv3_(F.gelu(self.conv3(c3)))
        c3 = F.interpolate(c3, size=(h, w), mode="bilinear", align_corners=False)
        gate = torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))
        return x * gate


class CCA(nn.Module):
    """Contrast-aware channel attention: a squeeze-and-excitation gate fed by each channel's std + mean."""

    def __init__(self, num_features: int, reduction: int = 16) -> None:
        super().__init__()
        # index names conv_du.0 / conv_du.2 as in the reference release
        self.conv_du = nn.Sequential(
            _conv1x1(num_features, num_features // reduction),
            nn.ReLU(),
            _conv1x1(num_features // reduction, num_features),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        contrast = x.std(dim=(2, 3), keepdim=True, correction=0) + x.mean(dim=(2, 3), keepdim=True)
        return x * self.conv_du(contrast)


class ESDB(nn.Module):
    """Efficient separable distillation block: three distill/refine steps, fusion, ESA, channel attention, residual."""

    def __init__(self, num_features: int, *, pointwise_bias: bool, esa_downsample: str, channel_attention: str) -> None:
        super().__init__()
        c, d = num_features, num_features // 2
        self.c1_d = _conv1x1(c, d)
        self.c1_r = BSConv(c, c, pointwise_bias=pointwise_bias)
        self.c2_d = _conv1x1(c, d)
        self.c2_r = BSConv(c, c, pointwise_bias=pointwise_bias)
        self.c3_d = _conv1x1(c, d)
        self.c3_r = BSConv(c, c, pointwise_bias=pointwise_bias)
        self.c4 = BSConv(c, d, pointwise_bias=pointwise_bias)
        self.c5 = _conv1x1(4 * d, c)
        self.esa = ESA(c, pointwise_bias=pointwise_bias, downsample=esa_downsample)
        self.channel_attention = channel_attention
        if channel_attention == "cca":
            self.cca = CCA(c)
        else:  # BSRN-S: a learned per-channel scale (initialised around 1) and a 1x1 convolution
            self.cw = nn.Parameter(torch.normal(mean=1.0, std=0.2, size=(1, c, 1, 1)))
            self.conv_out = _conv1x1(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = F.gelu(self.c1_d(x))
        r1 = F.gelu(self.c1_r(x) + x)
        d2 = F.gelu(self.c2_d(r1))
        r2 = F.gelu(self.c2_r(r1) + r1)
        d3 = F.gelu(self.c3_d(r2))
        r3 = F.gelu(self.c3_r(r2) + r2)
        r4 = F.gelu(self.c4(r3))
        out = self.esa(self.c5(torch.cat([d1, d2, d3, r4], dim=1)))
        if self.channel_attention == "cca":
            out = self.cca(out)
        else:
            out = self.conv_out(out * self.cw)
        return out + x


class PixelShuffleUpsampler(nn.Module):
    """One 3x3 convolution to ``out_channels * scale**2`` channels and a pixel shuffle."""

    def __init__(self, num_features: int, out_channels: int, scale: int) -> None:
        super().__init__()
        # attribute name as in the reference release, so its weights load unchanged
        self.upsampleOneStep = nn.Sequential(
            nn.Conv2d(num_features, out_channels * scale * scale, 3, 1, 1), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampleOneStep(x)


class BSRN(SRModel, tags=["bsrn", "efficient-sr"]):
    """BSRN, an efficient network of blueprint separable convolutions, distillation blocks and attention."""

    architecture = "bsrn"
    paper = _PAPER
    supported_scales = (1, 2, 3, 4)

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 64,
        num_blocks: int = 8,
        pointwise_bias: bool = False,
        esa_downsample: str = "bsconv",
        channel_attention: str = "cca",
    ) -> None:
        """
        Args:
            scale: upscaling factor, any integer >= 1 (one conv + pixel shuffle; the paper has 2, 3 and 4).
            in_channels: channels of the input image.
            out_channels: channels of the output image.
            num_features: feature channels (64 in BSRN, 48 in BSRN-S); a multiple of 4, and
                at least 16 with ``channel_attention="cca"``.
            num_blocks: number of ESDBs (8 in BSRN, 5 in BSRN-S).
            pointwise_bias: whether the BSConvs' 1x1 pointwise convolutions have a bias (BSRN: no, BSRN-S: yes).
            esa_downsample: the strided 3x3 convolution of ESA, "bsconv" (BSRN) or a plain "conv" (BSRN-S).
            channel_attention: "cca", contrast-aware channel attention (BSRN), or "scale", a learned
                per-channel scale followed by a 1x1 convolution (BSRN-S).
        """
        super().__init__()
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError("in_channels and out_channels must be positive")
        if num_features < 4 or num_features % 4:
            raise ValueError(f"num_features must be a positive multiple of 4, got {num_features}")
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if esa_downsample not in ESA_DOWNSAMPLES:
            raise ValueError(f"esa_downsample must be one of {ESA_DOWNSAMPLES}, got {esa_downsample!r}")
        if channel_attention not in CHANNEL_ATTENTIONS:
            raise ValueError(f"channel_attention must be one of {CHANNEL_ATTENTIONS}, got {channel_attention!r}")
        if channel_attention == "cca" and num_features < 16:
            raise ValueError(
                f"channel_attention='cca' squeezes channels by 16: num_features must be >= 16, got {num_features}"
            )
        self.scale = scale
        self.num_blocks = num_blocks
        self.fea_conv = BSConv(in_channels * 4, num_features, pointwise_bias=pointwise_bias)
        for i in range(1, num_blocks + 1):  # B1 ... Bn, the reference's names
            block = ESDB(
                num_features,
                pointwise_bias=pointwise_bias,
                esa_downsample=esa_downsample,
                channel_attention=channel_attention,
            )
            self.add_module(f"B{i}", block)
        self.c1 = _conv1x1(num_features * num_blocks, num_features)
        self.c2 = BSConv(num_features, num_features, pointwise_bias=pointwise_bias)
        self.upsampler = PixelShuffleUpsampler(num_features, out_channels, scale)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        shallow = self.fea_conv(torch.cat([lq, lq, lq, lq], dim=1))
        feat, outputs = shallow, []
        for i in range(1, self.num_blocks + 1):
            feat = getattr(self, f"B{i}")(feat)
            outputs.append(feat)
        trunk = self.c2(F.gelu(self.c1(torch.cat(outputs, dim=1))))
        return self.upsampler(trunk + shallow)


class BSRNS(BSRN, tags=["bsrn-s"]):
    """BSRN-S, the NTIRE 2022 challenge variant of BSRN: 48 features, 5 blocks, a per-channel scale instead of CCA."""

    architecture = "bsrn-s"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 48,
        num_blocks: int = 5,
        pointwise_bias: bool = True,
        esa_downsample: str = "conv",
        channel_attention: str = "scale",
    ) -> None:
        """Same arguments as :class:`BSRN`; only the defaults are BSRN-S's."""
        super().__init__(
            scale=scale,
            in_channels=in_channels,
            out_channels=out_channels,
            num_features=num_features,
            num_blocks=num_blocks,
            pointwise_bias=pointwise_bias,
            esa_downsample=esa_downsample,
            channel_attention=channel_attention,
        )
