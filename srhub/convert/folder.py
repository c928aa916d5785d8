"""Converted models as Hub-ready folders: one entry point for any source file, atomic writing, publishing."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from .common import ConversionError, ConvertedModel
from .ncnn import convert_ncnn, ncnn_parity, parity_pattern
from .pth import convert_pth

def convert_file(path: str | os.PathLike) -> ConvertedModel:
    """Convert a ``.param`` (with its ``.bin`` next to it) or a ``.pth``/``.pt`` checkpoint."""
    suffix = Path(path).suffix.lower()
    if suffix == ".param":
        return convert_ncnn(path)
    if suffix in {".pth", ".pt", ".ckpt"}:
        return convert_pth(path)
    raise ConversionError(f"{path}: srhub converts ncnn .param (+ .bin) files and PyTorch .pth checkpoints")


# ======================================================================================
# Writing and publishing folders
# ======================================================================================


def write_model_folder(
    converted: ConvertedModel,
    folder: str | os.PathLike,
    *,
    card: dict[str, Any] | None = None,
    license: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``README.md`` into ``folder`` atomically.

    Everything is written into a temporary folder next to ``folder`` and renamed at
    the end; on any failure nothing is left behind. ``card`` fills the model card
    (see ``SRModel.save_pretrained``); ``license`` overrides the card's license
    (converted weights keep their original license).
    """
    from huggingface_hub import ModelCard

    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    card = dict(card or {})
    card.setdefault("model_name", folder.name)
    card.setdefault("weights_source", converted.source)
    if converted.notes:
        card["summary"] = " ".join(
            [card.get("summary") or (type(converted.model).__doc__ or "").strip().split("\n\n")[0], *converted.notes]
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        converted.model.save_pretrained(tmp, model_card_kwargs=card)
        if license:
            readme = tmp / "README.md"
            model_card = ModelCard.load(readme)
            model_card.data.license = license
            model_card.save(readme)
        umask = os.umask(0)
        os.umask(umask)
        for path in [tmp, *tmp.iterdir()]:  # mkdtemp and safetensors create private files; use the umask
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        if overwrite and folder.exists():
            old = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.old"
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                tmp.rename(folder)  # fails if another process created the folder meanwhile
            except OSError as error:
                raise FileExistsError(f"{folder} appeared while converting: {error}") from error
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def convert_to_folder(
    path: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    name: str | None = None,
    license: str | None = None,
    overwrite: bool = False,
    verify: bool = True,
) -> tuple[Path, ConvertedModel, tuple[float, float] | None]:
    """Convert a ``.param`` (+ ``.bin``) or ``.pth`` file into a Hub-ready folder (what ``srhub convert`` does).

    For ncnn input with ``verify`` and the ``ncnn`` package installed, srhub's output
    is compared with ncnn's on a 32x32 test pattern and the figures go into the card.
    Returns the folder, the converted model and the parity figures (or None).
    """
    from .. import __version__

    path = Path(path)
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    converted = convert_file(path)
    parity = None
    if verify and path.suffix.lower() == ".param":
        try:
            parity = ncnn_parity(converted, path, path.with_suffix(".bin"), parity_pattern(32), threads=1)
        except ImportError:
            parity = None
    training = "Not retrained by srhub: the weights are the original authors'."
    if parity is not None:
        training += (
            f" Conversion check: on a 32x32 test pattern srhub's CPU output differs from the ncnn package's "
            f"(fp32, CPU) by at most {parity[0]:.4f}/255 (mean {parity[1]:.5f}/255)."
        )
    license_note = f"license {license}" if license else "license not recorded here: check the original release"
    card = {
        "model_name": name or folder.name,
        "weights_source": f"{converted.source} ({converted.storage} storage), converted to float32 safetensors by "
        f"`srhub convert` (srhub {__version__}); {license_note}.",
        "training": training,
    }
    write_model_folder(converted, folder, card=card, license=license or "other", overwrite=overwrite)
    return folder, converted, parity


def check_model_folder(folder: str | os.PathLike) -> dict[str, Any]:
    """Raise unless ``folder`` is a complete srhub model folder; return its config."""
    from ..models.base import CONFIG_NAME, WEIGHTS_NAME

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME, "README.md") if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder} is not a complete srhub model folder: missing {', '.join(missing)}")
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {folder / CONFIG_NAME}: {error}") from error
    if not isinstance(config, dict) or "architecture" not in config:
        raise ValueError(f"{folder / CONFIG_NAME} names no architecture; not written by srhub")
    return config


def push_folder(
    folder: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None, api: Any = None
) -> str:
    """Upload a converted model folder (config, weights, card) to the Hub repo ``repo_id``; return its URL."""
    from huggingface_hub import HfApi

    check_model_folder(folder)
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub repo id of the form 'owner/name'")
    api = api if api is not None else HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        commit_message=f"Upload {Path(folder).name} converted by srhub",
        allow_patterns=["config.json", "model.safetensors", "README.md"],
    )
    return f"https://huggingface.co/{repo_id}"
