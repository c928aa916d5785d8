"""Training losses: VGG19 perceptual loss, GAN losses (standard and relativistic average)
and PISR's distillation losses. Device-agnostic; nothing here touches global state.

VGG19 weights
-------------
:class:`PerceptualLoss` uses srhub's own VGG19 (:mod:`srhub.perceptual`; torchvision is not
needed) with ImageNet weights found by :func:`srhub.perceptual.backbone_state_dict`:

1. the ``weights`` argument (``--vgg-weights``): a ``.safetensors`` file with torchvision's
   key layout, or torchvision's ``vgg19-dcbb9e9d.pth`` itself;
2. the ``SRHUB_VGG19_WEIGHTS`` environment variable: the same;
3. torch's hub cache, ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``;
4. with network access, torchvision's URL (``torch.hub.load_state_dict_from_url`` with its
   hash check), which fills that cache for offline runs afterwards (``SRHUB_OFFLINE=1``
   turns this off).

The key layout is torchvision's ``vgg19().features`` state dict: ``features.{i}.weight`` /
``features.{i}.bias`` for the 16 convolutions at indices 0, 2, 5, 7, 10, 12, 14, 16, 19,
21, 23, 25, 28, 30, 32, 34 (shapes ``(out, in, 3, 3)``). If none is found,
:class:`VGGWeightsMissing` says where to put the file; training scripts then stop unless
``--no-perceptual`` was given.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from torch.nn import functional as F

from .models.base import WeightsError
from .perceptual import TORCHVISION_URLS, VGG_PLANS, VGGFeatures, WeightsMissing, backbone_state_dict, vgg_layer_names

TORCHVISION_VGG19_FILE = TORCHVISION_URLS["vgg19"].rsplit("/", 1)[-1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_LAYERS = vgg_layer_names(VGG_PLANS["vgg19"])


class VGGWeightsMissing(WeightsMissing):
    """No ImageNet VGG19 weights were found for the perceptual loss."""


class VGG19Features(VGGFeatures):
    """VGG19's convolutional part, cut after ``last_layer``; same indices as torchvision's."""

    def __init__(self, *, last_layer: str = "pool5") -> None:
        super().__init__(variant="vgg19", last_layer=last_layer)


def load_vgg19_weights(features: VGG19Features, weights: str | os.PathLike | None = None, *, download: bool | None = None) -> str:
    """Fill ``features`` with ImageNet weights (see the module docstring); return the source used."""
    try:
        state, source = backbone_state_dict("vgg19", weights, download=download)
    except WeightsMissing as error:
        raise VGGWeightsMissing(
            f"the perceptual loss needs ImageNet VGG19 weights: {error} (--vgg-weights PATH takes either). "
            "To train without the perceptual term, pass --no-perceptual."
        ) from None
    expected = features.state_dict()
    wrong = sorted(k for k in expected if k not in state or state[k].shape != expected[k].shape)
    if wrong:
        raise WeightsError(f"{source} does not hold VGG19 weights in torchvision's layout (mismatched: {wrong[:4]})")
    features.load_state_dict({k: state[k] for k in expected}, strict=True)
    return source


class PerceptualLoss(nn.Module):
    """Distance between VGG19 feature maps of ``sr`` and ``gt``, summed over weighted layers.

    Args:
        layer_weights: layer name -> weight; ``conv5_4`` is the feature map *before* the
            ReLU (ESRGAN), ``relu5_4`` after it (SRGAN).
        weights: a safetensors file with VGG19 weights (see the module docstring); None
            searches the environment and torchvision's cache.
        criterion: "l1" or "mse".
        use_input_norm: normalise [0, 1] inputs with ImageNet mean and std, as VGG was trained.
    """

    def __init__(
        self,
        *,
        layer_weights: dict[str, float],
        weights: str | os.PathLike | None = None,
        criterion: str = "l1",
        use_input_norm: bool = True,
    ) -> None:
        super().__init__()
        if not layer_weights:
            raise ValueError("layer_weights must name at least one VGG19 layer")
        unknown = sorted(set(layer_weights) - set(VGG19_LAYERS))
        if unknown:
            raise ValueError(f"unknown VGG19 layers {unknown}; known: {', '.join(VGG19_LAYERS)}")
        if criterion not in ("l1", "mse"):
            raise ValueError(f"criterion must be 'l1' or 'mse', got {criterion!r}")
        self.layer_weights = dict(layer_weights)
        self.criterion = criterion
        self.use_input_norm = use_input_norm
        last = max(layer_weights, key=VGG19_LAYERS.index)
        self.vgg = VGG19Features(last_layer=last)
        self.weights_source = load_vgg19_weights(self.vgg, weights)
        self.vgg.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.vgg.eval()  # no dropout/batch norm, but keep it fixed regardless
        return self

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        if sr.shape != gt.shape:
            raise ValueError(f"sr and gt shapes differ: {tuple(sr.shape)} vs {tuple(gt.shape)}")
        if self.use_input_norm:
            sr, gt = (sr - self.mean) / self.std, (gt - self.mean) / self.std
        layers = list(self.layer_weights)
        sr_features = self.vgg(sr, layers)
        with torch.no_grad():
            gt_features = self.vgg(gt.detach(), layers)
        distance = F.l1_loss if self.criterion == "l1" else F.mse_loss
        return sum(w * distance(sr_features[n], gt_features[n]) for n, w in self.layer_weights.items())


# --------------------------------------------------------------------------------------
# adversarial losses (on discriminator logits)
# --------------------------------------------------------------------------------------


def gan_loss(logits: torch.Tensor, *, target_is_real: bool) -> torch.Tensor:
    """The standard (non-saturating) GAN loss: binary cross-entropy on logits."""
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def ragan_loss(logits: torch.Tensor, reference_logits: torch.Tensor, *, target_is_real: bool) -> torch.Tensor:
    """Relativistic average GAN term (ESRGAN eq. 1-2): is ``logits`` more real (``target_is_real``)
    or less real than the average of ``reference_logits``?"""
    return gan_loss(logits - reference_logits.mean(), target_is_real=target_is_real)


def ragan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic average GAN, discriminator side: real images should look more real than
    the average fake, fakes less real than the average real. Pass logits of detached fakes."""
    return 0.5 * (
        ragan_loss(real_logits, fake_logits.detach(), target_is_real=True)
        + ragan_loss(fake_logits, real_logits.detach(), target_is_real=False)
    )


def ragan_generator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic average GAN, generator side: the symmetric form, so the generator also
    learns from the real images' logits (ESRGAN section 3.2)."""
    real_logits = real_logits.detach()
    return 0.5 * (
        ragan_loss(real_logits, fake_logits, target_is_real=False) + ragan_loss(fake_logits, real_logits, target_is_real=True)
    )


def generator_adversarial_loss(
    discriminator: nn.Module, gt: torch.Tensor, sr: torch.Tensor, *, relativistic: bool
) -> torch.Tensor:
    """The generator's adversarial loss. The discriminator's parameters are frozen during the
    call (gradients reach ``sr`` only); pass the unwrapped module, not a DDP wrapper."""
    discriminator.requires_grad_(False)
    try:
        fake_logits = discriminator(sr)
        if not relativistic:
            return gan_loss(fake_logits, target_is_real=True)
        return ragan_generator_loss(discriminator(gt), fake_logits)
    finally:
        discriminator.requires_grad_(True)


# --------------------------------------------------------------------------------------
# PISR: imitation and variational information distillation
# --------------------------------------------------------------------------------------


def pisr_teacher_loss(
    sr: torch.Tensor, gt: torch.Tensor, code: torch.Tensor, lq: torch.Tensor, *, imitation_weight: float = 1e-4
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PISR teacher objective: L1 reconstruction of ``gt`` plus ``imitation_weight`` times the
    L1 distance between the encoder's compressed image ``code`` and the LR image ``lq``.
    The weight 1e-4 is the authors' FSRCNN setting."""
    if code.shape != lq.shape:
        raise ValueError(f"teacher code {tuple(code.shape)} and lq {tuple(lq.shape)} must have the same shape")
    reconstruction = F.l1_loss(sr, gt)
    imitation = F.l1_loss(code, lq)
    return reconstruction + imitation_weight * imitation, {"reconstruction": reconstruction, "imitation": imitation}


def _adapter(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, in_channels, 1), nn.PReLU(), nn.Conv2d(in_channels, out_channels, 1))


class VIDLoss(nn.Module):
    """Variational information distillation (Ahn et al., CVPR 2019) as PISR uses it.

    The teacher's feature map ``t`` is modelled, given the student's ``s``, as a
    distribution with mean ``mu(s)`` and a heteroscedastic scale ``v(s)`` (one per
    element, PISR's "None" homoscedasticity), both predicted by small 1x1-conv adapters;
    the loss is the mean negative log-likelihood of ``t``. Maximising it maximises a
    lower bound of the mutual information between teacher and student features.

    Args:
        channels: feature channels (student and teacher match in PISR).
        pdf: "gaussian" (the paper's choice; ``v`` is the variance) or "laplace" (``v``
            is the scale).
        variance_scale: softplus output times this, plus ``eps``; PISR uses 1e-3 for the
            Gaussian and 0.1 for the Laplace, so the predicted variance starts small.
        eps: floor of the variance/scale.
    """

    def __init__(self, *, channels: int, pdf: str = "gaussian", variance_scale: float | None = None, eps: float = 1e-8) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if pdf not in ("gaussian", "laplace"):
            raise ValueError(f"pdf must be 'gaussian' or 'laplace', got {pdf!r}")
        self.pdf = pdf
        self.variance_scale = variance_scale if variance_scale is not None else (1e-3 if pdf == "gaussian" else 0.1)
        self.eps = eps
        self.mean = _adapter(channels, channels)
        self.variance = _adapter(channels, channels)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.shape != teacher.shape:
            raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} features differ")
        teacher = teacher.detach()
        mu = self.mean(student)
        v = F.softplus(self.variance(student)) * self.variance_scale + self.eps
        if self.pdf == "gaussian":
            nll = 0.5 * math.log(2 * math.pi) + 0.5 * torch.log(v) + (mu - teacher) ** 2 / (2 * v)
        else:
            nll = torch.log(2 * v) + (mu - teacher).abs() / v
        return nll.mean()
