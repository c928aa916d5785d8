"""The model registry: plain dicts from srhub's model names to classes.

``MODELS`` holds super-resolution generators (``forward(lq) -> sr``),
``DISCRIMINATORS`` the adversarial critics used in GAN training and
``TEACHERS`` networks used only for distillation.
"""

from __future__ import annotations

from .base import Paper, SRModel, WeightsError
from .srcnn import SRCNN
from .ebrn import EBRN
from .espcn import ESPCN
from .fsrcnn import FSRCNN
from .pisr import PISRTeacher
from .srgan_discriminator import SRGANDiscriminator
from .srresnet import SRResNet
from .bsrn import BSRN, BSRNS
from .rrdbnet import RRDBNet
from .realcugan import RealCUGAN
from .srvgg import SRVGGNetCompact
from .unet_discriminator import UNetDiscriminatorSN
from .vgg_discriminator import VGGStyleDiscriminator
from .waifu2x import Waifu2xCUNet, Waifu2xUpConv7

MODELS: dict[str, type[SRModel]] = {
    "srcnn": SRCNN,
    "fsrcnn": FSRCNN,
    "espcn": ESPCN,
    "srresnet": SRResNet,
    "ebrn": EBRN,
    "rrdbnet": RRDBNet,
    "srvggnet-compact": SRVGGNetCompact,
    "bsrn": BSRN,
    "bsrn-s": BSRNS,
    "realcugan": RealCUGAN,
    "waifu2x-upconv7": Waifu2xUpConv7,
    "waifu2x-cunet": Waifu2xCUNet,
}

DISCRIMINATORS: dict[str, type[SRModel]] = {
    "srgan-discriminator": SRGANDiscriminator,
    "esrgan-discriminator": VGGStyleDiscriminator,
    "unet-discriminator-sn": UNetDiscriminatorSN,
}

# Networks that only exist to train others (e.g. PISR's teacher, which sees the HR image).
TEACHERS: dict[str, type[SRModel]] = {
    "pisr-teacher": PISRTeacher,
}

ARCHITECTURES: dict[str, type[SRModel]] = {**MODELS, **DISCRIMINATORS, **TEACHERS}


def get_model_class(name: str) -> type[SRModel]:
    """The class registered under ``name`` (a generator or a discriminator)."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None


__all__ = ["ARCHITECTURES", "DISCRIMINATORS", "MODELS", "TEACHERS", "Paper", "SRModel", "WeightsError", "get_model_class", "SRCNN", "EBRN", "ESPCN", "FSRCNN", "PISRTeacher", "SRGANDiscriminator", "SRResNet", "BSRN", "BSRNS", "RRDBNet", "RealCUGAN", "Waifu2xCUNet", "Waifu2xUpConv7", "SRVGGNetCompact", "UNetDiscriminatorSN", "VGGStyleDiscriminator"]
