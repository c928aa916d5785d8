"""Original PyTorch checkpoints (``.pth``): safe loading, key mapping, architecture inference."""

from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .common import ConversionError, ConvertedModel, load_strict

# ======================================================================================
# Original PyTorch checkpoints (.pth)
# ======================================================================================

# Old-style ESRGAN (xinntao/ESRGAN RRDBNet_arch) names -> BasicSR names.
_OLD_ESRGAN_RENAMES = [
    (r"^RRDB_trunk\.(\d+)\.RDB([123])\.", r"body.\1.rdb\2."),
    (r"^trunk_conv\.", "conv_body."),
    (r"^upconv1\.", "conv_up1."),
    (r"^upconv2\.", "conv_up2."),
    (r"^HRconv\.", "conv_hr."),
]


def _load_checkpoint(path: Path) -> Any:
    if not path.is_file():
        raise ConversionError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(
            f"{path} holds pickled objects other than tensors and plain containers; srhub loads checkpoints "
            f"with torch.load(weights_only=True) only and refuses it ({first})"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, TypeError) as error:
        raise ConversionError(f"{path} is not a readable PyTorch checkpoint: {error}") from error


def _unwrap_state_dict(checkpoint: Any, source: str) -> tuple[dict[str, torch.Tensor], str]:
    """Pick the state dict out of a checkpoint: ``params_ema`` over ``params`` (BasicSR), else the dict itself."""
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"{source} holds a {type(checkpoint).__name__}, not a state dict")
    layout = "plain state dict"
    for key in ("params_ema", "params"):
        if key in checkpoint:
            checkpoint, layout = checkpoint[key], f"BasicSR wrapper, '{key}'"
            break
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ConversionError(f"{source}: the state dict ({layout}) is empty or not a dict")
    bad = [key for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise ConversionError(f"{source}: entries {bad[:4]} are not tensors; not a state dict ({layout})")
    return dict(checkpoint), layout


def _rename_old_esrgan(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    if not any(key.startswith("RRDB_trunk.") for key in state):
        return state, False
    renamed = {}
    for key, value in state.items():
        new = key
        for pattern, replacement in _OLD_ESRGAN_RENAMES:
            new = re.sub(pattern, replacement, new)
        renamed[new] = value
    return renamed, True


def _infer_pth_config(state: dict[str, torch.Tensor], source: str) -> tuple[str, dict[str, Any]]:
    """Architecture and configuration from key names and shapes."""
    if "conv_first.weight" in state and any(re.match(r"body\.\d+\.rdb1\.conv1\.weight$", k) for k in state):
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.rdb1\.conv1\.weight$", k))}
        first = state["conv_first.weight"]
        unshuffle = {3: 4, 12: 2, 48: 1}  # Real-ESRGAN feeds x2 / x1 models pixel-unshuffled input
        if first.shape[1] not in unshuffle:
            raise ConversionError(
                f"{source}: conv_first takes {first.shape[1]} channels; srhub's RRDBNet takes 3 (x4), "
                "12 (x2, pixel-unshuffled) or 48 (x1)"
            )
        if "conv_last.weight" not in state:
            raise ConversionError(f"{source}: RRDBNet checkpoint without conv_last.weight")
        return "rrdbnet", {
            "scale": unshuffle[first.shape[1]],
            "in_channels": 3,
            "out_channels": state["conv_last.weight"].shape[0],
            "num_features": first.shape[0],
            "num_blocks": len(blocks),
            "growth_channels": state["body.0.rdb1.conv1.weight"].shape[0],
        }
    body = {int(m.group(1)): v for k, v in state.items() if (m := re.match(r"body\.(\d+)\.weight$", k))}
    if body and all(not k.startswith(("conv_first", "conv_body")) for k in state):
        convs = [i for i in sorted(body) if body[i].dim() == 4]
        acts = [i for i in sorted(body) if body[i].dim() == 1]
        if len(convs) < 2:
            raise ConversionError(f"{source}: too few convolutions for SRVGGNetCompact")
        if len(acts) != len(convs) - 1:
            raise ConversionError(
                f"{source}: SRVGGNetCompact checkpoint without one PReLU per hidden conv; srhub can infer only "
                "activation='prelu' from weights"
            )
        first, last = body[convs[0]], body[convs[-1]]
        in_channels = first.shape[1]
        scale = math.isqrt(last.shape[0] // in_channels)
        if scale * scale * in_channels != last.shape[0]:
            raise ConversionError(f"{source}: the last conv's {last.shape[0]} outputs are not in_channels * scale^2")
        return "srvggnet-compact", {
            "scale": scale,
            "in_channels": in_channels,
            "out_channels": in_channels,
            "num_features": first.shape[0],
            "num_convs": len(convs) - 2,
            "activation": "prelu",
        }
    sample = ", ".join(sorted(state)[:6])
    raise ConversionError(
        f"{source}: the keys ({sample}, ...) match no architecture srhub converts (RRDBNet in BasicSR or old "
        "ESRGAN naming, SRVGGNetCompact)"
    )


def convert_pth(path: str | os.PathLike) -> ConvertedModel:
    """Convert an original PyTorch checkpoint (Real-ESRGAN, ESRGAN, BasicSR) into an srhub model.

    Loads with ``torch.load(weights_only=True)`` only: a file with arbitrary pickled
    objects raises :class:`ConversionError` without running them.
    """
    from ..models import get_model_class

    path = Path(path)
    state, layout = _unwrap_state_dict(_load_checkpoint(path), str(path))
    state, renamed = _rename_old_esrgan(state)
    if renamed:
        layout += ", old-style ESRGAN key names"
    architecture, config = _infer_pth_config(state, str(path))
    model = get_model_class(architecture)(**config)
    load_strict(model, {k: v.float() for k, v in state.items()}, source=str(path))
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values()})
    return ConvertedModel(
        model=model.eval(),
        architecture=architecture,
        config={**config, "architecture": architecture},
        source=f"PyTorch checkpoint {path.name} ({layout})",
        storage="+".join(dtypes),
    )
