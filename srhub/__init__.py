"""srhub: image super-resolution models with one clean API and Hub-ready weights."""

from .hub import load
from .inference import upscale
from .io import read_image, write_image
from .pretrained import list_pretrained
from .video import upscale_video
from .models import ARCHITECTURES, DISCRIMINATORS, MODELS, SRCNN, SRModel, WeightsError, get_model_class
from .models import EBRN, ESPCN, FSRCNN, PISRTeacher, SRGANDiscriminator, SRResNet
from .models import BSRN, BSRNS, RRDBNet, SRVGGNetCompact, UNetDiscriminatorSN, VGGStyleDiscriminator
from .models import RealCUGAN, Waifu2xCUNet, Waifu2xUpConv7

#: The SRGAN paper's generator; srhub's SRResNet is its BasicSR (MSRResNet) form.
SRGAN = SRResNet
#: ESRGAN's and Real-ESRGAN's generator is RRDBNet (Real-ESRGAN adds the x2 / x1 pixel-unshuffle input).
ESRGAN = RRDBNet
RealESRGAN = RRDBNet

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "DISCRIMINATORS",
    "MODELS",
    "SRCNN",
    "EBRN",
    "ESPCN",
    "FSRCNN",
    "PISRTeacher",
    "SRGAN",
    "SRGANDiscriminator",
    "SRResNet",
    "SRModel",
    "BSRN",
    "BSRNS",
    "ESRGAN",
    "RealESRGAN",
    "RRDBNet",
    "RealCUGAN",
    "Waifu2xCUNet",
    "Waifu2xUpConv7",
    "SRVGGNetCompact",
    "UNetDiscriminatorSN",
    "VGGStyleDiscriminator",
    "WeightsError",
    "get_model_class",
    "list_pretrained",
    "load",
    "read_image",
    "upscale",
    "upscale_video",
    "write_image",
]
