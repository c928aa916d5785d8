"""Original PyTorch checkpoints (``.pth``): safe loading, key mapping, architecture inference.

Layouts understood: BasicSR (``params_ema`` / ``params``) and old-style ESRGAN RRDBNet,
BasicSR SRVGGNetCompact, bilibili's Real-CUGAN (``upcunet_v3.py`` names: ``unet1.conv1.conv.0``,
``unet2.conv3.seblock.conv1``, ``conv_final``; Pro checkpoints carry an extra ``pro`` entry) and
nagadomi's nunif waifu2x (``{"name": "waifu2x.upcunet" | "waifu2x.cunet" | "waifu2x.upconv_7",
"state_dict": ...}``; upconv_7's ``net.0`` ... ``net.12``).

Hostile files: a checkpoint is loaded with ``torch.load(weights_only=True)`` (memory-mapped
when it is a zip archive, so declared storages are not read into memory), every tensor must be
backed by its own storage (an ``expand``-ed zero tensor of 10^12 elements saved in 2 KB is
refused before anything touches its elements), the tensors may hold at most
:data:`MAX_PARAMETERS` values in all, and the configuration inferred from their shapes is
checked (per-argument ranges, parameter count on the meta device) before a model is built.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..models.base import MAX_PARAMETERS, WeightsError, check_config
from .common import ConversionError, ConvertedModel, with_weights

#: Sane ranges of the constructor arguments inferred from a checkpoint's shapes.
_ARGUMENT_RANGES = {"num_features": (1, 4096), "num_blocks": (1, 1000), "growth_channels": (1, 4096),
                    "num_convs": (0, 1000), "in_channels": (1, 64), "out_channels": (1, 64)}  # fmt: skip

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
    if path.stat().st_size == 0:
        raise ConversionError(f"{path} is empty, not a PyTorch checkpoint")
    try:
        # A zip archive (every torch.save since 1.6) is memory-mapped: declared storage sizes cost nothing.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "global" not in str(error).lower():  # random bytes: an unsupported opcode, not a forbidden object
            raise ConversionError(
                f"{path} is not a readable PyTorch checkpoint (its pickle stream is corrupt or it is another "
                f"kind of file: {first[:200]})"
            ) from error
        raise ConversionError(
            f"{path} holds pickled objects other than tensors and plain containers; srhub loads checkpoints "
            f"with torch.load(weights_only=True) only and refuses it ({first})"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, TypeError) as error:
        raise ConversionError(f"{path} is not a readable PyTorch checkpoint: {_first_line(error)}") from error
    except (KeyError, IndexError, MemoryError, OverflowError, UnicodeDecodeError, zipfile.BadZipFile) as error:
        # torch's weights-only unpickler meets text or random bytes as a raw KeyError / IndexError
        raise ConversionError(
            f"{path} is not a readable PyTorch checkpoint (its pickle stream is corrupt or it is another kind "
            f"of file: {type(error).__name__} {_first_line(error)})"
        ) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_tensor_sizes(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse tensors that claim more elements than their storage holds, and oversized checkpoints.

    A view with a zero (or overlapping) stride, like ``torch.zeros(1).expand(10**6, 10**6)``,
    is stored as its one-element storage: cheap to load, but 4 TB once converted to float32.
    """
    total = 0
    for key, tensor in state.items():
        if tensor.dim() and min(tensor.shape) == 0:
            continue
        extent = 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
        available = tensor.untyped_storage().nbytes() // max(tensor.element_size(), 1) - tensor.storage_offset()
        if tensor.numel() > extent or extent > available or any(st < 0 for st in tensor.stride()):
            raise ConversionError(
                f"{source}: tensor {key!r} claims shape {tuple(tensor.shape)} ({tensor.numel():,} values) but its "
                f"storage holds {max(available, 0):,}: an expanded or overlapping view, refused"
            )
        total += tensor.numel()
        if total > MAX_PARAMETERS:
            raise ConversionError(f"{source}: the tensors hold more than {MAX_PARAMETERS:,} values; refused")


def check_inferred_config(cls, config: dict[str, Any], source: str) -> None:
    """Check a configuration read off tensor shapes before building the model it implies: the
    checks of a ``config.json`` (:func:`srhub.models.base.check_config`), with this door's ranges."""
    try:
        check_config(cls, config, source=f"{source} (the configuration its shapes imply)", ranges=_ARGUMENT_RANGES)
    except WeightsError as error:
        raise ConversionError(str(error)) from error


def _unwrap_state_dict(checkpoint: Any, source: str) -> tuple[dict[str, torch.Tensor], str]:
    """Pick the state dict out of a checkpoint: ``params_ema`` over ``params`` (BasicSR), else the dict itself."""
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"{source} holds a {type(checkpoint).__name__}, not a state dict")
    layout = "plain state dict"
    for key in ("params_ema", "params"):
        if key in checkpoint:
            checkpoint, layout = checkpoint[key], f"BasicSR wrapper, '{key}'"
            break
    else:
        if isinstance(checkpoint.get("state_dict"), dict) and isinstance(checkpoint.get("name"), str):
            layout = f"nunif checkpoint, '{checkpoint['name']}'"
            checkpoint = {**checkpoint["state_dict"], _NUNIF_NAME: checkpoint["name"]}
    if isinstance(checkpoint, dict) and "pro" in checkpoint and any(k.startswith("unet1.") for k in checkpoint):
        checkpoint = {**{k: v for k, v in checkpoint.items() if k != "pro"}, _CUGAN_PRO: True}
        layout += ", Real-CUGAN Pro"
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ConversionError(f"{source}: the state dict ({layout}) is empty or not a dict")
    bad = [key for key, value in checkpoint.items()
           if not isinstance(value, torch.Tensor) and key not in (_NUNIF_NAME, _CUGAN_PRO)]  # fmt: skip
    if bad:
        raise ConversionError(f"{source}: entries {bad[:4]} are not tensors; not a state dict ({layout})")
    return dict(checkpoint), layout


_NUNIF_NAME = "<nunif name>"  # markers the unwrapping leaves for the inference (never tensor keys)
_CUGAN_PRO = "<real-cugan pro>"
_NUNIF_ARCHITECTURES = {"waifu2x.upcunet": "waifu2x-cunet", "waifu2x.cunet": "waifu2x-cunet",
                        "waifu2x.upconv_7": "waifu2x-upconv7"}  # fmt: skip


def _infer_unet_config(state: dict[str, Any], source: str) -> tuple[str, dict[str, Any]]:
    """Real-CUGAN / waifu2x cunet / waifu2x upconv_7 from key names and the upscaling layer's shape."""
    nunif = state.get(_NUNIF_NAME)
    if nunif is not None and nunif not in _NUNIF_ARCHITECTURES:
        raise ConversionError(f"{source}: nunif model {nunif!r}; srhub converts {', '.join(_NUNIF_ARCHITECTURES)}")
    if "net.0.weight" in state:
        return "waifu2x-upconv7", {"scale": 2, "in_channels": int(state["net.0.weight"].shape[1])}
    bottom = state.get("unet1.conv_bottom.weight")
    first = state.get("unet1.conv1.conv.0.weight")
    if bottom is None or first is None or bottom.dim() != 4 or first.dim() != 4:
        raise ConversionError(f"{source}: a U-Net checkpoint without unet1.conv1 / unet1.conv_bottom weights")
    in_channels = int(first.shape[1])
    if "conv_final.weight" in state:
        scale = 4
    elif bottom.shape[0] == in_channels:  # a plain conv (out, in, k, k): the x1 cunet
        scale = 1
    else:  # a transposed conv (in, out, k, k): kernel 4 -> x2, 5 -> x3
        scale = {4: 2, 5: 3}.get(int(bottom.shape[-1]), 0)
        if not scale:
            raise ConversionError(f"{source}: unet1.conv_bottom has a {bottom.shape[-1]}px kernel; expected 4 or 5")
    if nunif is not None or scale == 1:
        return "waifu2x-cunet", {"scale": scale, "in_channels": in_channels}
    return "realcugan", {"scale": scale, "in_channels": in_channels, "pro_normalization": bool(state.get(_CUGAN_PRO))}


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
    if any(key.startswith(("unet1.", "net.")) for key in state) or _NUNIF_NAME in state:
        return _infer_unet_config(state, source)
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
    check_tensor_sizes({k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, str(path))
    state, renamed = _rename_old_esrgan(state)
    if renamed:
        layout += ", old-style ESRGAN key names"
    architecture, config = _infer_pth_config(state, str(path))
    state = {k: v for k, v in state.items() if k not in (_NUNIF_NAME, _CUGAN_PRO)}
    cls = get_model_class(architecture)
    check_inferred_config(cls, config, str(path))
    model = with_weights(cls, config, {k: v.float() for k, v in state.items()}, source=str(path))
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values()})
    return ConvertedModel(
        model=model.eval(),
        architecture=architecture,
        config={**config, "architecture": architecture},
        source=f"PyTorch checkpoint {path.name} ({layout})",
        storage="+".join(dtypes),
    )
