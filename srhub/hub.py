"""Loading models by folder, Hub repo id or srhub pretrained name.

``load`` is the one entry point: it reads ``config.json``, finds the class for
its ``architecture`` in the registry and loads the weights strictly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import hf_hub_download

from .models import SRModel, get_model_class
from .models.base import CONFIG_NAME


def _architecture_of(config_path: str | os.PathLike, source: str) -> str:
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {CONFIG_NAME} of {source}: {error}") from error
    if not isinstance(config, dict) or "architecture" not in config:
        raise ValueError(f"{CONFIG_NAME} of {source} names no 'architecture'; it was not written by srhub")
    return config["architecture"]


def load(
    name_or_path: str | os.PathLike,
    *,
    device: str = "cpu",
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> SRModel:
    """Load a model from a local folder or a Hugging Face Hub repo id, in eval mode.

    The folder or repo must hold srhub's ``config.json`` and ``model.safetensors``.
    A name from ``srhub.list_pretrained()`` (e.g. ``"realesrgan-x4plus"``) loads
    offline from srhub's cache, converting on first use (see ``srhub.pretrained``).
    """
    source = str(name_or_path)
    from .pretrained import PRETRAINED, load_pretrained

    if source in PRETRAINED and not os.path.isdir(source):
        return load_pretrained(
            source, device=device, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only
        )
    if os.path.isdir(source):
        config_path = os.path.join(source, CONFIG_NAME)
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{source} has no {CONFIG_NAME}: not an srhub model folder")
    else:
        config_path = hf_hub_download(
            repo_id=source,
            filename=CONFIG_NAME,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
    cls = get_model_class(_architecture_of(config_path, source))
    return cls.from_pretrained(
        source,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        map_location=device,
    )
