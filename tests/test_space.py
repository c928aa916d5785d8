"""`srhub space build`: a folder that deploys to a Hugging Face Space as it is.

The build is checked from the command line as typed (files, the card's front matter, the
pins). Then the built folder is served on its own: ``python app.py`` inside it, with its own
copy of srhub, called through ``gradio_client`` on ``/upscale`` and ``/evaluate`` with the
default model (a luma model) and an RGB model. In ``.ci/run``'s Space flavour this whole file
runs in a venv made from the built folder's ``requirements.txt`` alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import served_app
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cups.png"
RGB_MODEL = "bsrn-s-x2"  # shipped weights, RGB in and out


def _srhub(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srhub.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("space") / "srhub-demo"
    done = _srhub("space", "build", str(folder), "--space-id", "someone/sr-demo")
    assert done.returncode == 0, done.stderr
    assert f"wrote {folder}" in done.stdout
    return folder


def _front_matter(card: Path) -> dict:
    from huggingface_hub import SpaceCard

    return SpaceCard.load(card).data.to_dict()


def test_space_folder_holds_what_a_space_runs(space):
    assert (space / "app.py").read_text() == (ROOT / "app.py").read_text()
    assert (space / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
    assert (space / "srhub" / "__init__.py").is_file() and (space / "srhub" / "model_cards" / "template.md").is_file()
    assert sorted(p.name for p in (space / "srhub" / "weights").glob("*.safetensors"))
    assert {p.name for p in (space / "examples").glob("*.png")} == {p.name for p in (ROOT / "examples").glob("*.png")}
    assert not list(space.rglob("__pycache__")) and not list(space.parent.glob(".*partial"))


def test_space_card_front_matter(space):
    import srhub

    data = _front_matter(space / "README.md")
    requirements = (space / "requirements.txt").read_text()
    gradio_pin = re.search(r"^gradio==(\S+)", requirements, re.MULTILINE).group(1)
    assert data["sdk"] == "gradio" and data["sdk_version"] == gradio_pin and data["app_file"] == "app.py"
    assert data["python_version"] == "3.11" and data["license"] == "apache-2.0"
    assert data["title"] and data["emoji"] and 0 < len(data["short_description"]) <= 60
    assert data["models"] == [spec.hub_repo_id for spec in srhub.list_pretrained()]
    assert {"super-resolution", "image-to-image"} <= set(data["tags"])
    assert "someone/sr-demo" in (space / "README.md").read_text(encoding="utf-8")  # the API example names the Space
    for pin in ("openvino==", "onnx==", "torch==", "gradio==", "spaces=="):  # the CPU runtime of the default path
        assert re.search(rf"^{re.escape(pin)}", requirements, re.MULTILINE), pin
    try:
        import gradio
    except ImportError:
        return
    assert gradio.__version__ == gradio_pin  # the tests run the Gradio the Space will run


def test_build_refuses_to_replace_a_folder_without_overwrite(space, tmp_path):
    done = _srhub("space", "build", str(space))
    assert done.returncode == 2 and "exists (use --overwrite" in done.stderr
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    done = _srhub("space", "build", str(other), "--overwrite")
    assert done.returncode == 2 and "holds no Space" in done.stderr and (other / "keep.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def served(space, tmp_path_factory):
    """The built folder's app.py, started inside it (its srhub copy, the real pretrained models)."""
    env = {
        "HF_HUB_OFFLINE": "1",
        "SRHUB_CACHE": os.environ.get("SRHUB_CACHE", str(tmp_path_factory.mktemp("cache"))),
        "SRHUB_APP_MODELS": None,
        "PYTHONPATH": None,
    }
    where = subprocess.run(
        [sys.executable, "-c", "import srhub; print(srhub.__file__)"], cwd=space, capture_output=True, text=True,
        env={k: v for k, v in {**os.environ, **env}.items() if v is not None},
    )
    assert Path(where.stdout.strip()).is_relative_to(space), where  # the Space's own copy is what runs
    log = tmp_path_factory.mktemp("space-log") / "app.log"
    with served_app(space, log, env=env) as url:
        yield url, log


@pytest.mark.app
def test_built_space_serves_upscale_and_evaluate(served, tmp_path):
    from gradio_client import Client, handle_file

    url, log = served
    client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path))
    listed = [entry["name"] for entry in client.predict(api_name="/models")]
    default = listed[0]
    assert RGB_MODEL in listed and default.startswith("fsrcnn")  # the smallest: a luma model
    for model in (default, RGB_MODEL):
        scale = int(model.rsplit("x", 1)[1])
        _, png, info = client.predict(handle_file(str(EXAMPLE)), model=model, api_name="/upscale")
        assert info["model"] == model and Image.open(png).size == (160 * scale, 160 * scale), info
        _, png, result = client.predict(handle_file(str(EXAMPLE)), model=model, api_name="/evaluate")
        assert Image.open(png).size == (160, 160) and result["mode"] == "reference"
        assert result[model]["psnr_y"] > result["bicubic"]["psnr_y"] > 20, result  # trained models beat bicubic
    assert "Traceback" not in log.read_text()
