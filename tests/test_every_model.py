"""Every pretrained name, through the doors a user takes, on whatever this install has.

These tests run in every install flavour (see ``.ci/run``): on the core package alone
``srhub.upscale``'s default path is eager PyTorch, with the ``fast`` extra it is an exported
graph on OpenVINO or ONNX Runtime. Each name is upscaled once through the default path and
compared with eager float32 PyTorch, so a path that breaks (or drifts) for one family shows.
The CLI and the benchmark are driven as typed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import srhub
from srhub import accel

ROOT = Path(__file__).resolve().parents[1]
NAMES = [spec.name for spec in srhub.list_pretrained()]


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A 40x36 crop of a real photo (odd sizes on purpose)."""
    return Image.open(ROOT / "examples" / "cups.png").convert("RGB").crop((50, 40, 90, 76))


@pytest.mark.parametrize("name", NAMES)
def test_default_path_upscales_every_pretrained_name(name, photo):
    spec = srhub.pretrained.get_pretrained(name)
    sr = srhub.upscale(photo, model=name)
    scale = spec.outscale or spec.scale
    assert sr.mode == "RGB" and sr.size == (photo.width * scale, photo.height * scale)
    reference = srhub.upscale(photo, model=name, fast=False, precision="fp32")
    diff = np.abs(np.asarray(sr, dtype=np.float32) - np.asarray(reference, dtype=np.float32))
    # The default CPU path may be bf16 (within 0.5/255 mean of float32, see srhub.accel); eager is exact.
    assert diff.mean() < 0.5 and diff.max() < 64, (name, diff.mean(), diff.max())
    assert np.asarray(sr).std() > 5  # a picture, not a flat colour


@pytest.mark.parametrize("name", ["fsrcnn-x2", "espcn-x3", "pisr-x4", "srcnn-x2"])
def test_luma_models_on_the_torch_runtime(name, photo, monkeypatch):
    """Regression: with no ONNX runtime installed (the core package, the Space before it pinned one) the
    fast path is PyTorch itself; its inference-mode outputs broke the in-place clamp for luma models."""
    monkeypatch.setattr(accel, "installed_runtimes", lambda: ("torch",))
    model = srhub.load(name)
    assert accel.choose_plan(model, device="cpu", precision="auto").runtime == "torch"
    sr = srhub.upscale(photo, model=model)
    reference = srhub.upscale(photo, model=model, fast=False)
    assert np.abs(np.asarray(sr, dtype=np.int16) - np.asarray(reference, dtype=np.int16)).max() <= 1


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "srhub.cli", *args], capture_output=True, text=True, timeout=300, **kwargs
    )


def test_cli_upscale_and_benchmark_as_typed(tmp_path, photo, datasets_root):
    source = tmp_path / "in.png"
    photo.save(source)
    done = _cli("upscale", str(source), "-o", str(tmp_path / "out.png"), "--model", "fsrcnn-x2", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "out.png").size == (photo.width * 2, photo.height * 2)
    done = _cli(
        "benchmark", "--models", "bicubic", "espcn-x3", "--datasets", "Set5", "--scales", "3",
        "--data-root", str(datasets_root / "benchmark"), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "Set5" in line]
    assert len(rows) == 2, done.stdout
    psnr = {row.split("|")[1].strip(): float(row.split("|")[5]) for row in rows}
    assert 30.0 < psnr["bicubic"] < psnr["espcn-x3"] < 40.0, done.stdout
