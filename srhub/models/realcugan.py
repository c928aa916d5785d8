"""Real-CUGAN: the cascaded U-Net of bilibili's AI Lab for anime upscaling (2022, no paper;
project page https://github.com/bilibili/ailab/tree/main/Real-CUGAN, MIT licence).

Real-CUGAN keeps waifu2x's "cunet" layout (nagadomi's waifu2x, 2018): two U-Nets in
cascade, all convolutions unpadded. The first U-Net (``unet1``) works at the input
resolution and ends in a strided transposed convolution that upscales; the second
(``unet2``) refines the upscaled image and its output is added to a centre crop of the
first's. Squeeze-excitation blocks (a global mean, two 1x1 convolutions, a sigmoid gate)
follow the deeper convolution pairs. Scale 4 changes the tail: both U-Nets run with
64 output channels, a 3x3 convolution to 12 channels and a pixel shuffle give the x4
residual, and the nearest-upsampled input is added.

Faithful to the reference code (``upcunet_v3.py``): the parameter names (``unet1.conv1.conv.0``,
``unet2.conv3.seblock.conv1``, ``conv_final``...), LeakyReLU slope 0.1, the unpadded
convolutions and centre crops (4, 16 and 20 px), and the whole-image path
(``tile_mode=0``): reflection padding of 18 / 14 / 19 px for x2 / x3 / x4, extra
bottom/right padding to a multiple of 2 (x2, x4) or 4 (x3), and a top-left crop of the
output. realcugan-ncnn-vulkan pads the same way (reflect, same widths and alignment).

What differs: ``forward`` takes and returns float RGB in [0, 1] and does not round to
8 bits; the reference's ``alpha`` strength knob is not reproduced. Tiling: the reference's own
tile modes synchronise the squeeze-excitation means across tiles; srhub's generic tiler does
the same through :func:`synchronised_gates` (the exact means of the whole image: from one
whole-image run, or from one tiled pass per block when the image is larger than a tile, as
realcugan-ncnn-vulkan's accurate sync ``-c 1`` does), starts tiles
on the stride-2 grid (``size_multiple``: 2, or 4 at x3) and overlaps them by
``min_tile_overlap`` (4x the padding). ``forward`` itself takes any size (minimum input: none;
sides under ``min_size`` are padded by repeated reflection, which the reference rejects).
The Pro checkpoints (``pro`` key) map their input to [0.15, 0.85] and back;
``pro_normalization`` reproduces that for ``.pth`` imports (the ncnn Pro graphs take [0, 1]
input as they are).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from fractions import Fraction

import torch
from torch import nn
from torch.nn import functional as F

from .base import Paper, SRModel

#: Reflection padding and size alignment of the whole-image path, per scale.
PADDING = {2: 18, 3: 14, 4: 19}
ALIGNMENT = {2: 2, 3: 4, 4: 2}


def _reflected(length: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Source indices of a reflection-padded axis: the edge pixel is not repeated, and a pad longer than the
    axis keeps reflecting (period ``2 * (length - 1)``); a one-pixel axis is replicated."""
    index = torch.arange(-before, length + after, device=device)
    period = 2 * (length - 1) if length > 1 else 1
    index = torch.remainder(index, period)
    return torch.where(index >= length, period - index, index)


def reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflection padding (edge pixel not repeated, like ``F.pad(mode="reflect")``) for any pad width.

    Gathers rows and columns by index, so it also works (and exports to ONNX) when a pad exceeds the size.
    """
    h, w = x.shape[-2:]
    x = x.index_select(-2, _reflected(h, top, bottom, x.device))
    return x.index_select(-1, _reflected(w, left, right, x.device))


def crop(x: torch.Tensor, border: int) -> torch.Tensor:
    """Remove ``border`` pixels from every side."""
    return x[..., border:-border, border:-border]


class SEBlock(nn.Module):
    """Squeeze-excitation: the channel means, two 1x1 convolutions and a sigmoid gate.

    ``means`` (set only inside :func:`synchronised_gates`) replaces the input's own channel
    means, so every tile of a tiled run is gated like the whole image.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels // reduction, 1)
        self.conv2 = nn.Conv2d(channels // reduction, channels, 1)
        self.means: torch.Tensor | None = None
        self.recorded: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = self.means if self.means is not None else x.mean(dim=(2, 3), keepdim=True)
        if self.recorded is not None:
            self.recorded.append(means)
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(means.to(x.dtype)))))
        return x * gate


@contextmanager
def synchronised_gates(model: nn.Module, lq: torch.Tensor, *, max_pixels: int) -> Iterator[None]:
    """Inside, every squeeze-excitation block gates with the channel means of a whole-image run.

    ``model`` has ``padded_input`` (what its ``forward`` pads) and the cascade ``unet1`` / ``unet2``.
    When the padded image has at most ``max_pixels`` pixels, one whole-image run records each
    block's means. A larger image never runs whole: :func:`tiled_means` computes the same means
    block by block from tiles of ``max_pixels`` (what realcugan-ncnn-vulkan's accurate sync,
    ``-c 1``, does). Tiles then share the means instead of computing their own, so they agree
    with each other and with an untiled run.
    """
    blocks = [module for module in model.modules() if isinstance(module, SEBlock)]
    x = model.padded_input(lq)
    try:
        with torch.no_grad():
            if x.shape[-2] * x.shape[-1] <= max_pixels:
                for block in blocks:
                    block.recorded = []
                cascade(model.unet1, model.unet2, x)
                for block in blocks:
                    block.means, block.recorded = block.recorded[0], None
            else:
                tiled_means(model, x, tile=math.isqrt(max_pixels))
        yield
    finally:
        for block in blocks:
            block.means, block.recorded = None, None


class _Reached(Exception):
    """Ends a partial pass at the squeeze-excitation block whose input it wanted."""


def _block_input(model: nn.Module, x: torch.Tensor, block: SEBlock) -> torch.Tensor:
    """The input of ``block`` when the cascade runs on the padded tile ``x`` (nothing after it runs)."""
    captured = []

    def stop(module, args):
        captured.append(args[0])
        raise _Reached

    handle = block.register_forward_pre_hook(stop)
    try:
        cascade(model.unet1, model.unet2, x)
    except _Reached:
        pass
    finally:
        handle.remove()
    return captured[0]


def _geometry(model: nn.Module, like: torch.Tensor) -> list[tuple[SEBlock, Fraction, Fraction]]:
    """The blocks in the order they run, each with (ratio, offset): its input's side is
    ``ratio * padded side + offset``, and a tile starting at padded pixel ``a`` (on the stride
    grid) yields the whole image's block input from row ``ratio * a`` on (unpadded convolutions
    are shift-equivariant). Measured by two small probe runs."""
    sides, order = [], []
    blocks = [module for module in model.modules() if isinstance(module, SEBlock)]
    for lq_side in (64, 96):  # multiples of every stride grid; large enough for every crop
        x = model.padded_input(like.new_zeros(1, like.shape[1], lq_side, lq_side))
        seen = {}

        def note(module, args, seen=seen):
            seen.setdefault(module, args[0].shape[-1])  # returns None: the input is left as it is

        hooks = [block.register_forward_pre_hook(note) for block in blocks]
        try:
            cascade(model.unet1, model.unet2, x)
        finally:
            for hook in hooks:
                hook.remove()
        order = list(seen)
        sides.append((x.shape[-1], [seen[b] for b in order]))
    (p1, s1), (p2, s2) = sides
    geometry = []
    for block, a, b in zip(order, s1, s2):
        ratio = Fraction(b - a, p2 - p1)
        geometry.append((block, ratio, a - ratio * p1))
    return geometry


def _starts(length: int, tile: int, step: int, align: int) -> list[int]:
    """Tile starts on the ``align`` grid, ``step`` apart; the last tile runs to the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    last = (length - tile) // align * align
    return starts + [last] if last > starts[-1] else starts


def tiled_means(model: nn.Module, x: torch.Tensor, *, tile: int) -> None:
    """Set every squeeze-excitation block's ``means`` to those of a whole-image run on the padded
    image ``x``, from tiles of at most about ``tile`` x ``tile`` pixels.

    Block k's means depend on blocks 1..k-1, so there is one pass per block: each tile runs up to
    block k (the earlier blocks gating with their now known whole-image means), and adds the part
    of block k's input that it owns (the tiles' parts partition the whole image's block input).
    """
    align = model.size_multiple
    geometry = _geometry(model, x)
    # A tile's block input must reach the next tile's first owned row: step <= tile + offset / ratio.
    step = min(math.floor(tile + offset / ratio) for _, ratio, offset in geometry) // align * align
    if step < align:
        raise ValueError(f"{tile}px tiles are too small for {type(model).__name__}'s squeeze-excitation passes")
    height, width = x.shape[-2:]
    rows, cols = _starts(height, tile, step, align), _starts(width, tile, step, align)
    for block, ratio, offset in geometry:
        full_h, full_w = int(ratio * height + offset), int(ratio * width + offset)
        total = torch.zeros(block.conv1.in_channels, dtype=torch.float64, device=x.device)
        for i, top in enumerate(rows):
            bottom = rows[i + 1] if i + 1 < len(rows) else None
            for j, left in enumerate(cols):
                right = cols[j + 1] if j + 1 < len(cols) else None
                tile_x = x[..., top : top + tile if bottom is not None else height,
                           left : left + tile if right is not None else width]
                features = _block_input(model, tile_x, block)
                y0, x0 = int(ratio * top), int(ratio * left)
                y1 = int(ratio * bottom) if bottom is not None else full_h
                x1 = int(ratio * right) if right is not None else full_w
                if y1 - y0 > features.shape[-2] or x1 - x0 > features.shape[-1]:
                    raise RuntimeError("tile geometry does not cover the squeeze-excitation input")  # a bug, never input
                total += features[0, :, : y1 - y0, : x1 - x0].double().sum(dim=(1, 2))
        block.means = (total / (full_h * full_w)).to(x.dtype).view(1, -1, 1, 1)


class UNetConv(nn.Module):
    """Two unpadded 3x3 convolutions with LeakyReLU(0.1), optionally followed by squeeze-excitation."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, *, se: bool) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 3),
            nn.LeakyReLU(0.1),
            nn.Conv2d(mid_channels, out_channels, 3),
            nn.LeakyReLU(0.1),
        )
        self.seblock = SEBlock(out_channels) if se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.seblock(x) if self.seblock is not None else x


class UNet1(nn.Module):
    """The shallow U-Net (one level down); its tail upscales by ``scale`` (a transposed conv) or keeps x1."""

    def __init__(self, in_channels: int, out_channels: int, *, scale: int) -> None:
        super().__init__()
        self.conv1 = UNetConv(in_channels, 32, 64, se=False)
        self.conv1_down = nn.Conv2d(64, 64, 2, stride=2)
        self.conv2 = UNetConv(64, 128, 64, se=True)
        self.conv2_up = nn.ConvTranspose2d(64, 64, 2, stride=2)
        self.conv3 = nn.Conv2d(64, 64, 3)
        if scale == 1:
            self.conv_bottom = nn.Conv2d(64, out_channels, 3)
        elif scale == 2:
            self.conv_bottom = nn.ConvTranspose2d(64, out_channels, 4, stride=2, padding=3)
        else:
            self.conv_bottom = nn.ConvTranspose2d(64, out_channels, 5, stride=3, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = F.leaky_relu(self.conv1_down(x1), 0.1)
        x2 = F.leaky_relu(self.conv2_up(self.conv2(x2)), 0.1)
        x3 = F.leaky_relu(self.conv3(crop(x1, 4) + x2), 0.1)
        return self.conv_bottom(x3)


class UNet2(nn.Module):
    """The deeper U-Net (two levels down) that refines UNet1's output at the output resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = UNetConv(in_channels, 32, 64, se=False)
        self.conv1_down = nn.Conv2d(64, 64, 2, stride=2)
        self.conv2 = UNetConv(64, 64, 128, se=True)
        self.conv2_down = nn.Conv2d(128, 128, 2, stride=2)
        self.conv3 = UNetConv(128, 256, 128, se=True)
        self.conv3_up = nn.ConvTranspose2d(128, 128, 2, stride=2)
        self.conv4 = UNetConv(128, 64, 64, se=True)
        self.conv4_up = nn.ConvTranspose2d(64, 64, 2, stride=2)
        self.conv5 = nn.Conv2d(64, 64, 3)
        self.conv_bottom = nn.Conv2d(64, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(F.leaky_relu(self.conv1_down(x1), 0.1))
        x3 = self.conv3(F.leaky_relu(self.conv2_down(x2), 0.1))
        x3 = F.leaky_relu(self.conv3_up(x3), 0.1)
        x4 = self.conv4(crop(x2, 4) + x3)
        x4 = F.leaky_relu(self.conv4_up(x4), 0.1)
        x5 = F.leaky_relu(self.conv5(crop(x1, 16) + x4), 0.1)
        return self.conv_bottom(x5)


def cascade(unet1: UNet1, unet2: UNet2, x: torch.Tensor) -> torch.Tensor:
    """UNet1, then UNet2 on its output, added to UNet1's output cropped by 20 px."""
    x = unet1(x)
    return unet2(x) + crop(x, 20)


class RealCUGAN(SRModel, tags=["realcugan", "anime"]):
    """Real-CUGAN (bilibili AI Lab): waifu2x's cascaded U-Net with squeeze-excitation, for anime images at x2/x3/x4."""

    architecture = "realcugan"
    paper = Paper(
        title="Real-CUGAN: Real Cascade U-Nets for Anime Image Super Resolution",
        authors="bilibili AI Lab",
        year=2022,
        url="https://github.com/bilibili/ailab/tree/main/Real-CUGAN",
        bibtex="""@misc{realcugan2022,
  title={Real-CUGAN: Real Cascade U-Nets for Anime Image Super Resolution},
  author={{bilibili AI Lab}},
  year={2022},
  howpublished={\\url{https://github.com/bilibili/ailab/tree/main/Real-CUGAN}}
}""",
    )
    #: ``forward`` pads any input size itself, like the reference: a whole image needs no padding by the tiler.
    pads_input = True
    supported_scales = (2, 3, 4)
    #: The global squeeze-excitation means make fp16 drift; keep float32 unless measured.
    supports_half = False

    def __init__(self, *, scale: int = 2, in_channels: int = 3, pro_normalization: bool = False) -> None:
        """
        Args:
            scale: 2, 3 or 4.
            in_channels: channels of the input and output image (3 in every release).
            pro_normalization: map the input from [0, 1] to [0.15, 0.85] and the output back, as the
                official Pro ``.pth`` checkpoints expect; False for the standard models and for the ncnn
                Pro graphs, which take [0, 1] input.
        """
        super().__init__()
        if scale not in self.supported_scales:
            raise ValueError(f"Real-CUGAN exists for scales {self.supported_scales}, got {scale!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        self.scale = scale
        self.pro_normalization = bool(pro_normalization)
        inner = 64 if scale == 4 else in_channels
        self.unet1 = UNet1(in_channels, inner, scale=2 if scale == 4 else scale)
        self.unet2 = UNet2(inner, inner)
        if scale == 4:
            self.ps = nn.PixelShuffle(2)
            self.conv_final = nn.Conv2d(64, 4 * in_channels, 3)

    @property
    def padding(self) -> int:
        """Reflection padding added to each side before the network (what its unpadded convolutions eat)."""
        return PADDING[self.scale]

    def synchronised_gates(self, lq: torch.Tensor, *, max_pixels: int) -> AbstractContextManager[None]:
        """Share the squeeze-excitation gates of a whole-image run across tiles (see :func:`synchronised_gates`)."""
        return synchronised_gates(self, lq, max_pixels=max_pixels)

    @property
    def size_multiple(self) -> int:
        """Tiles must start on the U-Nets' stride-2 grid (2, or 4 at x3) to compute what the whole image does;
        ``forward`` itself takes any size (it pads to this multiple like the reference)."""
        return ALIGNMENT[self.scale]

    @property
    def min_size(self) -> int:
        """Smallest input side the reference accepts (reflection needs the padding plus one pixel)."""
        return self.padding + ALIGNMENT[self.scale]

    @property
    def min_tile_overlap(self) -> int:
        """Least tile overlap for seamless tiling: the tiler drops each overlap's outer quarter, and an
        output pixel depends on ``padding`` input pixels around it (the unpadded convolutions' reach)."""
        return 4 * self.padding

    def padded_input(self, lq: torch.Tensor) -> torch.Tensor:
        """What the U-Nets see: the (Pro-normalised) input, reflection-padded and aligned as the reference does."""
        h, w = lq.shape[-2:]
        align, pad = ALIGNMENT[self.scale], self.padding
        lq = lq * 0.7 + 0.15 if self.pro_normalization else lq
        return reflect_pad(lq, pad, pad + (-w) % align, pad, pad + (-h) % align)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        h, w = lq.shape[-2:]
        x = self.padded_input(lq)
        if self.scale == 4:  # the residual is added to the nearest-upsampled (normalised) input
            x = self.ps(crop(self.conv_final(cascade(self.unet1, self.unet2, x)), 1))
            base = lq * 0.7 + 0.15 if self.pro_normalization else lq
            x = x[..., : h * 4, : w * 4] + F.interpolate(base, scale_factor=4, mode="nearest")
        else:
            x = cascade(self.unet1, self.unet2, x)[..., : h * self.scale, : w * self.scale]
        return (x - 0.15) / 0.7 if self.pro_normalization else x
