"""Loading models by folder, Hub repo id or srhub pretrained name.

``load`` is the one entry point: it reads ``config.json``, finds the class for
its ``architecture`` in the registry and loads the weights strictly.
"""

from __future__ import annotations

import json
import os
import re
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


#: "owner/name" as the Hub spells repo ids (srhub's own models are always namespaced).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class UnknownModelError(ValueError):
    """A model name that is neither a pretrained name, a folder, nor shaped like a Hub repo id."""


def check_model_name(source: str) -> None:
    """Raise :class:`UnknownModelError` at once (no network) unless ``source`` can name a model.

    A pretrained name, an existing folder and an ``owner/name`` Hub repo id pass; anything
    else (a typo of a pretrained name, a missing folder) is refused with the known names.
    """
    from .pretrained import PRETRAINED

    if source in PRETRAINED or os.path.isdir(source):
        return
    looks_like_path = source.startswith((".", "/", "~")) or "\\" in source  # a relative, absolute, home or Windows path
    if _HUB_ID.match(source) and not looks_like_path and not os.path.exists(source):
        return
    import difflib

    what = "no such model folder" if looks_like_path or os.path.exists(source) else "unknown model"
    close = difflib.get_close_matches(source, list(PRETRAINED), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    names = ", ".join(sorted(PRETRAINED))
    raise UnknownModelError(
        f"{what} {source!r}; {hint}give a pretrained name ({names}), an srhub model folder, "
        "or a Hub repo id (owner/name)"
    )


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

    check_model_name(source)
    if source in PRETRAINED and not os.path.isdir(source):
        return load_pretrained(
            source, device=device, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only
        )
    if os.path.isdir(source):
        config_path = os.path.join(source, CONFIG_NAME)
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{source} has no {CONFIG_NAME}: not an srhub model folder")
    else:
        try:
            config_path = hf_hub_download(
                repo_id=source,
                filename=CONFIG_NAME,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
            )
        except Exception as error:  # noqa: BLE001 - the Hub client's many error types, reported as one
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"cannot get {source!r} from the Hugging Face Hub ({type(error).__name__}: {first})") from error
    cls = get_model_class(_architecture_of(config_path, source))
    return cls.from_pretrained(
        source,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        map_location=device,
    )
