"""Hostile or mistaken input at the user's door: config bombs, unknown model names, interrupted runs.

Each case goes through what a user runs (``srhub.load``, the ``srhub`` command as typed) and
must end with one clear message, quickly, leaving nothing half-written behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import srhub
from srhub.models import WeightsError, get_model_class

ROOT = Path(__file__).resolve().parents[1]


def _srhub(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "srhub.cli", *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "model"
    get_model_class("srvggnet-compact")(scale=2, num_features=4, num_convs=1).save_pretrained(folder)
    return folder


def _with_config(tiny_folder: Path, target: Path, **changes) -> Path:
    shutil.copytree(tiny_folder, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **changes}))
    return target


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"num_convs": 1_000_000_000}, "num_convs=1000000000 is outside"),
        ({"num_features": 10**7}, "num_features=10000000 is outside"),
        ({"scale": 10**6}, "scale=1000000 is outside"),
        ({"num_features": 4096, "num_convs": 256}, "parameters; srhub refuses more than"),
        ({"num_convs": -1}, "num_convs=-1 is outside"),
    ],
)
def test_config_bombs_are_refused_before_anything_is_built(tiny_folder, tmp_path, changes, words):
    folder = _with_config(tiny_folder, tmp_path / "bomb", **changes)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=words):
        srhub.load(folder)
    assert time.perf_counter() - start < 5  # a hang guard only; the refusal takes milliseconds


def test_config_bomb_through_the_cli(tiny_folder, tmp_path):
    folder = _with_config(tiny_folder, tmp_path / "bomb", num_convs=1_000_000_000)
    Image.new("RGB", (16, 16)).save(tmp_path / "in.png")
    done = _srhub("upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", str(folder))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "outside the range" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["fsrcnn-x22", "realesrgan", "./no-such-folder", "no/such/folder"])
def test_unknown_model_name_is_refused_at_once_with_the_known_names(tmp_path, name):
    Image.new("RGB", (16, 16)).save(tmp_path / "in.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "0"}  # must not even try the network
    done = _srhub("upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--model", name, env=env, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert ("unknown model" in done.stderr or "no such model folder" in done.stderr) and "fsrcnn-x2" in done.stderr
    if name == "fsrcnn-x22":
        assert "did you mean 'fsrcnn-x2'" in done.stderr


def test_hub_shaped_name_offline_fails_with_one_line(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "in.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = _srhub("upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--model", "someone/missing", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot get 'someone/missing' from the Hugging Face Hub" in done.stderr


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_interrupted_folder_run_exits_with_one_line_and_leaves_no_partial_file(tmp_path, sig, code, word):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for index in range(60):
        Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(inputs / f"{index:02d}.png")
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "srhub.cli", "upscale", str(inputs), "-o", str(out), "--model", "espcn-x4",
         "--no-progress", "--no-fast"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: a shell's background job (`cmd &`, how a CI may start pytest) inherits
        # SIGINT ignored, and the CLI rightly keeps ignoring it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.glob("*.png"))) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [f"srhub upscale: {word}; no partial output was left"], stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    for written in out.glob("*.png"):
        Image.open(written).load()  # every file that is there is whole
