"""What every importer shares: the error type, the result type, and strict weight loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

class ConversionError(ValueError):
    """A foreign file that cannot be converted: unreadable, truncated, or not the target architecture."""


@dataclass
class ConvertedModel:
    """A model with converted weights and what is known about where they came from."""

    model: nn.Module
    architecture: str
    config: dict[str, Any]
    source: str
    storage: str = "fp32"
    #: Some released graphs end with a bicubic resize of the x``scale`` output
    #: (Real-ESRGAN's ncnn animevideov3 "x2"/"x3" are the x4 network followed by a x0.5 / x0.75
    #: resize). The folder holds the network; ``outscale`` is the factor of the whole graph.
    outscale: int | None = None
    notes: list[str] = field(default_factory=list)


def skeleton_model(cls, config: dict[str, Any]) -> nn.Module:
    """``cls(**config)`` on the meta device: shapes only, no memory (initialisers skipped)."""
    from ..models.base import meta_model

    return meta_model(cls, config)


def with_weights(cls, config: dict, state: dict[str, torch.Tensor], *, source: str) -> nn.Module:
    """The model with ``state`` loaded strictly, built without a wasted random initialisation."""
    from ..models.base import build_empty

    model = build_empty(cls, config)
    load_strict(model, {k: v.contiguous() for k, v in state.items()}, source=source)
    return model


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    from ..models.base import WeightsError, check_state_dict

    try:
        check_state_dict(model, state, source=source)
    except WeightsError as error:
        raise ConversionError(str(error)) from error
    model.load_state_dict(state, strict=True, assign=any(p.is_meta for p in model.parameters()))
