"""Shared fixtures, and the markers that tell which install flavour a test needs.

srhub is installed three ways (``.ci/run`` tests each in its own virtualenv):

* the core package (``pip install -e .``): unmarked tests;
* the Space (a venv from ``requirements.txt`` alone, tests run from a ``srhub space build``
  folder): tests marked ``app``;
* every extra (``.[train,app,fast,dev]``): everything.

A test marked with a flavour's marker needs the modules in :data:`NEEDS`. Where they are
missing the test is skipped, naming the extra to install, unless ``SRHUB_TEST_STRICT=1``
(set by ``.ci/run``), where a missing module is an error: CI must not skip what its flavour
promises to run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("SRHUB_DATASETS", ROOT.parent / "shared" / "datasets"))

#: marker -> (modules the marked tests import, the install that provides them)
NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "app": (("gradio", "gradio_client"), "requirements.txt (the Space), or srhub[app]"),
    "fast": (("onnx", "onnxruntime", "openvino"), "srhub[fast]"),
    "train": (("accelerate", "tensorboard"), "srhub[train]"),
    "reference": (("ncnn", "skimage"), "srhub[dev]"),
    "video": (("av",), "srhub[video], srhub[app] or requirements.txt"),
}


def pytest_collection_modifyitems(config, items):
    strict = os.environ.get("SRHUB_TEST_STRICT") == "1"
    for item in items:
        for marker, (modules, install) in NEEDS.items():
            if item.get_closest_marker(marker) is None:
                continue
            missing = [name for name in modules if importlib.util.find_spec(name) is None]
            if not missing:
                continue
            message = f"needs {', '.join(missing)} (install {install})"
            if strict:
                item.add_marker(pytest.mark.usefixtures("_missing_requirement"))
                item.user_properties.append(("missing", message))
            else:
                item.add_marker(pytest.mark.skip(reason=message))


@pytest.fixture()
def _missing_requirement(request):
    message = dict(request.node.user_properties)["missing"]
    pytest.fail(f"{message}; SRHUB_TEST_STRICT=1 means this install flavour must run it")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    if not (DATASETS / "benchmark" / "Set5").is_dir():
        pytest.fail(f"benchmark datasets not found under {DATASETS} (set SRHUB_DATASETS)")
    return DATASETS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_app(folder: Path, log: Path, *, env: dict[str, str], timeout: float = 180):
    """``python app.py`` run in ``folder`` on a free local port, as a user starts it; yields its URL.

    ``env`` is added to this process's environment (``None`` values remove a variable). The
    server is stopped afterwards; if it dies or does not answer in time, the test fails with
    the end of its log.
    """
    port = free_port()
    full_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    full_env.pop("SPACES_ZERO_GPU", None)
    for key, value in env.items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=folder, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{folder}/app.py did not start (exit code {process.poll()}):\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
