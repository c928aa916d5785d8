from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("SRHUB_DATASETS", ROOT.parent / "shared" / "datasets"))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    if not (DATASETS / "benchmark" / "Set5").is_dir():
        pytest.fail(f"benchmark datasets not found under {DATASETS} (set SRHUB_DATASETS)")
    return DATASETS
