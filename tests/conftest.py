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

import importlib.util
import os
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
