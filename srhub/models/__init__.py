"""The model registry: a plain dict from srhub's model names to classes.

``MODELS`` holds super-resolution generators (``forward(lq) -> sr``);
``DISCRIMINATORS`` the adversarial critics used in GAN training.
"""

from __future__ import annotations

from .base import Paper, SRModel, WeightsError
from .srcnn import SRCNN

MODELS: dict[str, type[SRModel]] = {
    "srcnn": SRCNN,
}

DISCRIMINATORS: dict[str, type[SRModel]] = {}

ARCHITECTURES: dict[str, type[SRModel]] = {**MODELS, **DISCRIMINATORS}


def get_model_class(name: str) -> type[SRModel]:
    """The class registered under ``name`` (a generator or a discriminator)."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None


__all__ = ["ARCHITECTURES", "DISCRIMINATORS", "MODELS", "Paper", "SRModel", "WeightsError", "get_model_class", "SRCNN"]
