"""ImageNet feature networks for perceptual losses and LPIPS, defined here so that neither
needs torchvision (whose PyPI builds must match the installed torch exactly, one of the
most reported problems of BasicSR and Real-ESRGAN).

Each network's ``state_dict`` has torchvision's key names and shapes (``features.0.weight``,
...), so torchvision's published files load as they are:

========================  ==================================  ============================
network                   used by                             torchvision file
========================  ==================================  ============================
``VGGFeatures("vgg19")``  the GAN scripts' perceptual loss    ``vgg19-dcbb9e9d.pth``
``VGGFeatures("vgg16")``  LPIPS ``net="vgg"``                 ``vgg16-397923af.pth``
``AlexNetFeatures``       LPIPS ``net="alex"`` (the default)  ``alexnet-owt-7be5be79.pth``
``SqueezeNetFeatures``    LPIPS ``net="squeeze"``             ``squeezenet1_1-b8a52dc0.pth``
========================  ==================================  ============================

:func:`backbone_state_dict` finds the weights, in order: an explicit file (``.safetensors``,
or a ``.pth`` read with ``torch.load(weights_only=True)``); the ``SRHUB_<NAME>_WEIGHTS``
environment variable (e.g. ``SRHUB_VGG19_WEIGHTS``); torch's hub cache
(``$TORCH_HOME/hub/checkpoints/<file>``, where torchvision keeps them too); and, when
``download`` is on (the default, unless ``SRHUB_OFFLINE=1``), torchvision's URL through
``torch.hub.load_state_dict_from_url`` with its SHA-256 prefix check, which fills that cache
for offline use afterwards.

LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018, version 0.1) adds 1x1 "linear" heads trained on human judgements; their
weights ship with torchmetrics (a core dependency) and with the ``lpips`` package, as
``alex.pth``/``vgg.pth``/``squeeze.pth`` with keys ``lin{k}.model.1.weight`` of shape
``(1, C_k, 1, 1)``. :class:`LPIPS` reads them from there, or from ``heads=PATH``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from .models.base import WeightsError

TORCHVISION_URLS = {
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "squeezenet1_1": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}
# VGG configurations "D" (VGG16) and "E" (VGG19): channels per 3x3 convolution, "M" for 2x2 max pooling.
VGG_PLANS = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class WeightsMissing(FileNotFoundError):
    """No ImageNet weights were found (or could be fetched) for a feature network."""


def _cache_file(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_URLS[name].rsplit("/", 1)[-1]


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def backbone_state_dict(name: str, path: str | os.PathLike | None = None, *, download: bool | None = None) -> tuple[dict, str]:
    """``(state dict, where it came from)`` of torchvision's ImageNet weights for ``name``
    (``vgg19``, ``vgg16``, ``alexnet``, ``squeezenet1_1``), looked up as the module docstring
    says; ``download`` None means yes unless the environment sets ``SRHUB_OFFLINE=1``."""
    if download is None:
        download = os.environ.get("SRHUB_OFFLINE", "") not in ("1", "true", "True")
    if name not in TORCHVISION_URLS:
        raise ValueError(f"unknown network {name!r}; known: {', '.join(TORCHVISION_URLS)}")
    variable = f"SRHUB_{name.upper()}_WEIGHTS"
    for candidate in (path, os.environ.get(variable)):
        if candidate:
            if not Path(candidate).is_file():
                raise WeightsMissing(f"{name} weights file not found: {candidate}")
            return _read(Path(candidate)), str(candidate)
    cached = _cache_file(name)
    if cached.is_file():
        return _read(cached), str(cached)
    if download:
        try:
            state = torch.hub.load_state_dict_from_url(
                TORCHVISION_URLS[name], map_location="cpu", check_hash=True, weights_only=True, progress=False
            )
            return state, str(cached)
        except (OSError, RuntimeError) as error:  # no network, or a file whose hash does not match
            reason = f"downloading {TORCHVISION_URLS[name]} failed ({error})"
    else:
        reason = "downloads are off (SRHUB_OFFLINE=1)"
    raise WeightsMissing(
        f"ImageNet {name} weights not found and {reason}. Pass a file (.safetensors or torchvision's .pth), "
        f"set {variable}, or put torchvision's {cached.name} in {cached.parent}."
    )


def _strict_load(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``module``'s entries of ``state`` strictly (a torchvision file also holds the classifier,
    and the layers past where ``module`` is cut)."""
    expected = module.state_dict()
    features = {k: v for k, v in state.items() if k in expected}  # layers past a cut are dropped
    wrong = sorted(k for k in expected if k not in features or features[k].shape != expected[k].shape)
    if wrong:
        raise WeightsError(f"{source} does not hold {type(module).__name__} weights (mismatched: {wrong[:4]})")
    module.load_state_dict(features, strict=True)


# --------------------------------------------------------------------------------------
# the networks (convolutional parts only, with torchvision's indices)
# --------------------------------------------------------------------------------------


def vgg_layer_names(plan: tuple) -> list[str]:
    """Names of a VGG's ``features`` entries in order: conv1_1, relu1_1, ..., pool5."""
    names, block, index = [], 1, 1
    for item in plan:
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names


class VGGFeatures(nn.Module):
    """VGG16 or VGG19's convolutional part (``features``), cut after ``last_layer``."""

    def __init__(self, *, variant: str = "vgg19", last_layer: str = "pool5") -> None:
        super().__init__()
        if variant not in VGG_PLANS:
            raise ValueError(f"variant must be one of {', '.join(VGG_PLANS)}, got {variant!r}")
        self.variant, self.layer_names = variant, vgg_layer_names(VGG_PLANS[variant])
        if last_layer not in self.layer_names:
            raise ValueError(f"unknown {variant} layer {last_layer!r}; known: {', '.join(self.layer_names)}")
        layers: list[nn.Module] = []
        in_channels = 3
        for item in VGG_PLANS[variant]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_channels, item, 3, padding=1), nn.ReLU(inplace=False)]
                in_channels = item
        self.features = nn.Sequential(*layers[: self.layer_names.index(last_layer) + 1])

    def forward(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Feature maps of the named layers (``conv*`` are before activation, ``relu*`` after)."""
        wanted, out = set(layers), {}
        for name, module in zip(self.layer_names, self.features):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional part as torchvision defines it (the "one weird trick" variant:
    64-192-384-256-256 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )


class Fire(nn.Module):
    """SqueezeNet's module: a 1x1 squeeze, then 1x1 and 3x3 expansions concatenated."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.squeeze(x))
        return torch.cat([self.activation(self.expand1x1(x)), self.activation(self.expand3x3(x))], dim=1)


class SqueezeNetFeatures(nn.Module):
    """SqueezeNet 1.1's convolutional part as torchvision defines it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        )


# --------------------------------------------------------------------------------------
# LPIPS
# --------------------------------------------------------------------------------------

# net -> (torchvision network, the ``features`` index where each compared stage ends, its channels)
LPIPS_NETS = {
    "alex": ("alexnet", (2, 5, 8, 10, 12), (64, 192, 384, 256, 256)),
    "vgg": ("vgg16", (4, 9, 16, 23, 30), (64, 128, 256, 512, 512)),
    "squeeze": ("squeezenet1_1", (2, 5, 8, 10, 11, 12, 13), (64, 128, 256, 384, 384, 512, 512)),
}


def lpips_heads_file(net: str) -> Path | None:
    """The linear heads' weight file shipped by torchmetrics or the ``lpips`` package, if installed."""
    for package, folder in (("torchmetrics", "functional/image/lpips_models"), ("lpips", "weights/v0.1")):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            candidate = Path(spec.origin).parent / folder / f"{net}.pth"
            if candidate.is_file():
                return candidate
    return None


class LPIPS(nn.Module):
    """LPIPS v0.1 distance between images in [0, 1], ``(B, 3, H, W) -> (B,)``; lower is closer.

    Each stage's features are normalised to unit length over channels, squared differences
    are weighted by the stage's 1x1 head, averaged over the image and summed over stages.

    Args:
        net: "alex", "vgg" or "squeeze".
        backbone_weights: torchvision's ImageNet file for the backbone (see
            :func:`backbone_state_dict`; None looks it up, ``download`` permitting).
        heads: the linear heads' ``.pth`` (None: the file torchmetrics or ``lpips`` ships).
        download: fetch missing backbone weights from torchvision's URL (None: unless ``SRHUB_OFFLINE=1``).
        pretrained: False leaves every weight random (tests of the plumbing only).
    """

    def __init__(
        self,
        *,
        net: str = "alex",
        backbone_weights: str | os.PathLike | None = None,
        heads: str | os.PathLike | None = None,
        download: bool | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"unknown LPIPS backbone {net!r}; known: {', '.join(LPIPS_NETS)}")
        backbone, self.ends, channels = LPIPS_NETS[net]
        if backbone == "alexnet":
            self.backbone = AlexNetFeatures()
        elif backbone == "squeezenet1_1":
            self.backbone = SqueezeNetFeatures()
        else:
            self.backbone = VGGFeatures(variant="vgg16")
        self.backbone.features = self.backbone.features[: self.ends[-1]]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        # the scaling of lpips v0.1: inputs in [-1, 1] minus ``shift``, over ``scale``
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        if pretrained:
            state, source = backbone_state_dict(backbone, backbone_weights, download=download)
            _strict_load(self.backbone, state, source)
            heads_file = Path(heads) if heads is not None else lpips_heads_file(net)
            if heads_file is None or not heads_file.is_file():
                raise WeightsMissing(f"LPIPS {net} heads not found ({heads_file or 'neither torchmetrics nor lpips ships them'})")
            self.load_heads(torch.load(heads_file, map_location="cpu", weights_only=True))
        self.eval().requires_grad_(False)

    def load_heads(self, state: dict[str, torch.Tensor]) -> None:
        """Load the ``lpips`` package's ``lin{k}.model.1.weight`` tensors, strictly."""
        wanted = {f"lin{k}.model.1.weight": head.weight for k, head in enumerate(self.heads)}
        if set(state) != set(wanted) or any(state[k].shape != v.shape for k, v in wanted.items()):
            raise WeightsError(f"not LPIPS heads for this backbone: keys {sorted(state)[:8]}")
        with torch.no_grad():
            for key, weight in wanted.items():
                weight.copy_(state[key])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS compares two (B, 3, H, W) batches, got {tuple(x.shape)} and {tuple(y.shape)}")
        x, y = (2 * x - 1 - self.shift) / self.scale, (2 * y - 1 - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        start = 0
        for end, head in zip(self.ends, self.heads):
            stage = self.backbone.features[start:end]
            x, y = stage(x), stage(y)
            start = end
            diff = (_unit(x) - _unit(y)) ** 2
            total = total + head(diff).mean(dim=(1, 2, 3))
        return total


def _unit(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
