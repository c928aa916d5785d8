"""srhub: image super-resolution models with one clean API and Hub-ready weights."""

from .hub import load
from .models import ARCHITECTURES, DISCRIMINATORS, MODELS, SRCNN, SRModel, WeightsError, get_model_class

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "DISCRIMINATORS",
    "MODELS",
    "SRCNN",
    "SRModel",
    "WeightsError",
    "get_model_class",
    "load",
]
