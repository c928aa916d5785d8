"""PISR's teacher: Lee, Kim, Ryu, Yoon and Kim, "Learning with Privileged
Information for Efficient Image Super-Resolution" (ECCV 2020).

PISR trains a small student (an unchanged :class:`~srhub.models.fsrcnn.FSRCNN`)
by distillation from a teacher that sees the high-resolution image, the
"privileged information". The teacher is an autoencoder: an encoder squeezes
the HR image into an LR-sized code (trained to imitate the real LR image), and
a decoder identical in structure to the student FSRCNN reconstructs the HR
image from that code. The student is then initialised from the decoder and
trained with a variational information distillation (VID) loss on the
decoder's features (the reference code distils the ``expanding`` stage).

Faithful to the reference code's ``lcscc`` encoder: 5x5 conv (d filters) ->
PReLU -> 5x5 conv with stride = scale (d) -> PReLU -> 3x3 conv (s) -> PReLU ->
3x3 conv to the image channels; the decoder is FSRCNN with the same d-s-m
(56-12-4); Y-channel processing by default. Differs: PReLUs are channel-wise
(the reference uses one shared slope), as in srhub's FSRCNN; in "y" mode the
reconstruction returned by ``forward`` carries the ground truth's own chroma
(only luma passes through the autoencoder), so losses on it measure luma only.
The VID adaptation layers and the losses belong to training code, not here.
"""

from __future__ import annotations

import torch
from torch import nn

from ..color import rgb_to_ycbcr, ycbcr_to_rgb
from .base import Paper, SRModel
from .fsrcnn import FSRCNN, FSRCNNBody


class PISREncoder(nn.Module):
    """HR image (B, C, H, W) -> LR-sized code (B, C, H/s, W/s)."""

    def __init__(self, *, scale: int, channels: int, num_features: int, shrink_features: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, num_features, 5, padding=2),
            nn.PReLU(num_features),
            nn.Conv2d(num_features, num_features, 5, stride=scale, padding=2),
            nn.PReLU(num_features),
            nn.Conv2d(num_features, shrink_features, 3, padding=1),
            nn.PReLU(shrink_features),
            nn.Conv2d(shrink_features, channels, 3, padding=1),
        )

    def forward(self, gt: torch.Tensor) -> torch.Tensor:
        return self.layers(gt)


class PISRTeacher(SRModel, tags=["pisr", "teacher", "fsrcnn"]):
    """PISR's teacher: an encoder that compresses the HR image to LR size and an FSRCNN decoder."""

    architecture = "pisr-teacher"
    paper = Paper(
        title="Learning with Privileged Information for Efficient Image Super-Resolution",
        authors="Wonkyung Lee, Junghyup Lee, Dohyung Kim, Bumsub Ham",
        year=2020,
        url="https://arxiv.org/abs/2007.07524",
        bibtex="""@inproceedings{lee2020pisr,
  title={Learning with Privileged Information for Efficient Image Super-Resolution},
  author={Lee, Wonkyung and Lee, Junghyup and Kim, Dohyung and Ham, Bumsub},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2020}
}""",
    )
    role = "teacher"

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
            scale: the student's upscaling factor; the encoder's stride (HR height and width
                must be multiples of it).
            num_features: d of the decoder (and the encoder's wide layers) (paper: 56).
            shrink_features: s of the decoder (and the encoder's third layer) (paper: 12).
            num_mapping_layers: m, mapping layers of the decoder (paper: 4).
            color_mode: "y" encodes and decodes the luma channel as in the paper, "rgb" all three.
        """
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if color_mode not in ("y", "rgb"):
            raise ValueError(f"color_mode must be 'y' or 'rgb', got {color_mode!r}")
        self.scale = scale
        self.color_mode = color_mode
        self._student_config = dict(
            scale=scale,
            num_features=num_features,
            shrink_features=shrink_features,
            num_mapping_layers=num_mapping_layers,
            color_mode=color_mode,
        )
        channels = 1 if color_mode == "y" else 3
        self.encoder = PISREncoder(
            scale=scale, channels=channels, num_features=num_features, shrink_features=shrink_features
        )
        self.decoder = FSRCNNBody(
            scale=scale,
            channels=channels,
            num_features=num_features,
            shrink_features=shrink_features,
            num_mapping_layers=num_mapping_layers,
        )

    @property
    def size_multiple(self) -> int:
        return self.scale

    def _check(self, gt: torch.Tensor) -> None:
        if gt.dim() != 4 or gt.shape[1] != 3:
            raise ValueError(f"expected an RGB batch (B, 3, H, W), got {tuple(gt.shape)}")
        if gt.shape[-2] % self.scale or gt.shape[-1] % self.scale:
            raise ValueError(
                f"PISRTeacher x{self.scale} needs height and width that are multiples of {self.scale}, "
                f"got {tuple(gt.shape[-2:])}"
            )

    def encode(self, gt: torch.Tensor) -> torch.Tensor:
        """RGB HR image (B, 3, H, W) -> code (B, C, H/s, W/s), C = 1 (luma) in "y" mode, else 3.

        PISR trains the code to imitate the real LR image (its luma in "y" mode)."""
        self._check(gt)
        return self.encoder(rgb_to_ycbcr(gt)[:, :1] if self.color_mode == "y" else gt)

    def decode(
        self, code: torch.Tensor, *, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Code (B, C, h, w) -> reconstruction (B, C, h*s, w*s) in the code's channel space (luma in "y"
        mode); with ``return_features`` also the decoder's stage outputs by name (``feature_extraction``,
        ``shrinking``, ``mapping``, ``expanding``), the targets of PISR's VID loss."""
        return self.decoder(code, return_features=return_features)

    def forward(self, gt: torch.Tensor) -> torch.Tensor:
        """RGB HR image -> its RGB reconstruction through the LR-sized code (same size as ``gt``)."""
        recon = self.decode(self.encode(gt))
        if self.color_mode == "rgb":
            return recon
        return ycbcr_to_rgb(torch.cat([recon, rgb_to_ycbcr(gt)[:, 1:]], dim=1))

    def student(self, *, initialize: bool = True) -> FSRCNN:
        """The matching student FSRCNN; with ``initialize`` its weights are copied from the decoder,
        as PISR does before distillation."""
        student = FSRCNN(**self._student_config)
        if initialize:
            student.body.load_state_dict(self.decoder.state_dict(), strict=True)
        return student.to(next(self.parameters()).device)
