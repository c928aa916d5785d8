"""``srhub space build DIR``: a folder that deploys to a Hugging Face Space as it is.

A Gradio Space runs ``app_file`` from its repository with the packages of its
``requirements.txt``; its ``README.md`` front matter tells the Hub which SDK version to
run and which models the Space uses. The folder written here holds exactly that:

* ``app.py`` (the demo, unchanged) and ``requirements.txt`` (the pinned demo stack,
  including the CPU runtime of srhub's fast path);
* ``srhub/``: the package itself, with its model cards as ``srhub/model_cards`` (the
  installed package maps them there too) and its shipped weights;
* ``examples/``: the example images the demo offers;
* ``README.md``: the Space card. Its ``sdk_version`` is the Gradio version pinned in
  ``requirements.txt`` (a Space installs that Gradio itself; the two must agree), and
  ``models:`` lists the Hub ids of the models the app offers.

The source is a checkout of srhub (``app.py`` next to the ``srhub`` package, as in an
editable install). Push the folder with ``huggingface-cli upload --repo-type space`` or git.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from huggingface_hub import SpaceCard, SpaceCardData

#: Python version the Space runs (the one the pinned stack is tested with).
PYTHON_VERSION = "3.11"
SHORT_DESCRIPTION = "Image super-resolution, from SRCNN to Real-ESRGAN"
EMOJI = "🔍"

_BODY = """
# srhub super-resolution

Upload an image, pick a model and compare before and after with the slider; the
**Measure** tab computes PSNR/SSIM (Y channel, border cropped) against a ground truth,
next to MATLAB-style bicubic. Every model is an [srhub](https://github.com/srhub/srhub)
PyTorch model with strict safetensors weights.

The same functions are an API: `/upscale`, `/evaluate` and `/models`.

```python
from gradio_client import Client, handle_file

client = Client("{space_id}")
slider, png, info = client.predict(handle_file("photo.png"), model="{default}", api_name="/upscale")
```

Settings (Space variables): `SRHUB_APP_MAX_PIXELS` (largest upload),
`SRHUB_APP_MAX_OUTPUT_PIXELS` (largest result), `SRHUB_APP_CONCURRENCY` (model runs at
once). On a ZeroGPU Space the model runs on the GPU inside `@spaces.GPU`; on a CPU Space
it runs srhub's fast CPU path (OpenVINO).

This folder was written by `srhub space build` from srhub {version}.
"""


class SpaceBuildError(ValueError):
    """The Space folder cannot be written (no source checkout, folder exists, ...)."""


def source_root() -> Path:
    """The srhub checkout this package runs from (``app.py`` next to the ``srhub`` package)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "app.py").is_file() or not (root / "requirements.txt").is_file():
        raise SpaceBuildError(
            f"no app.py and requirements.txt next to the srhub package ({root}): "
            "`srhub space build` needs a source checkout of srhub (pip install -e .)"
        )
    return root


def pinned_version(requirements: str, package: str) -> str:
    """The ``package==X`` pin in a requirements file's text."""
    pattern = re.compile(rf"^\s*{re.escape(package)}\s*==\s*([^\s;#]+)", re.IGNORECASE | re.MULTILINE)
    match = pattern.search(requirements)
    if match is None:
        raise SpaceBuildError(f"requirements.txt pins no {package} version ({package}==X)")
    return match.group(1)


def offered_models() -> list[str]:
    """Hub repo ids of the models the app offers (its pretrained catalogue)."""
    from .pretrained import list_pretrained

    return [spec.hub_repo_id for spec in list_pretrained() if spec.hub_repo_id]


def space_card(requirements: str, *, space_id: str = "srhub/srhub-demo") -> SpaceCard:
    """The Space's README.md: front matter the Hub reads, then a short description."""
    from . import __version__

    data = SpaceCardData(
        title="srhub super-resolution",
        sdk="gradio",
        sdk_version=pinned_version(requirements, "gradio"),
        python_version=PYTHON_VERSION,
        app_file="app.py",
        license="apache-2.0",
        models=offered_models(),
        tags=["super-resolution", "image-to-image", "srhub", "real-esrgan", "zerogpu"],
        emoji=EMOJI,
        colorFrom="indigo",
        colorTo="pink",
        short_description=SHORT_DESCRIPTION,
        pinned=False,
    )
    from .app_backend import default_model

    body = _BODY.format(space_id=space_id, default=default_model(), version=__version__)
    return SpaceCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {name for name in names if name == "__pycache__" or name.endswith((".pyc", ".pyo")) or name.startswith(".")}


def build_space(destination: str | os.PathLike, *, overwrite: bool = False, space_id: str = "srhub/srhub-demo") -> Path:
    """Write a Space folder at ``destination`` (see the module docstring); returns its path."""
    root = source_root()
    destination = Path(destination)
    if destination.exists():
        if not overwrite:
            raise SpaceBuildError(f"{destination} exists (use --overwrite to replace it)")
        if not (destination / "app.py").is_file() and any(destination.iterdir()):
            raise SpaceBuildError(f"{destination} is not empty and holds no Space; refusing to replace it")
        shutil.rmtree(destination)
    staging = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        requirements = (root / "requirements.txt").read_text(encoding="utf-8")
        shutil.copy2(root / "app.py", staging / "app.py")
        (staging / "requirements.txt").write_text(requirements, encoding="utf-8")
        shutil.copytree(root / "srhub", staging / "srhub", ignore=_ignore)
        if not (root / "srhub" / "model_cards").is_dir():  # a checkout; a Space folder has them in place
            shutil.copytree(root / "model_cards", staging / "srhub" / "model_cards", ignore=_ignore)
        (staging / "examples").mkdir()
        for example in sorted((root / "examples").iterdir()):
            if example.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".md"):
                shutil.copy2(example, staging / "examples" / example.name)
        space_card(requirements, space_id=space_id).save(staging / "README.md")
        staging.replace(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination

