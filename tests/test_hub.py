"""The real huggingface_hub code path, offline: a pre-filled cache and HF_HUB_OFFLINE=1."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import srhub

REPO_ID = "srhub/realesrgan-x4plus"


def fill_hf_cache(cache: Path, repo_id: str, folder: Path, commit: str = "0" * 40) -> None:
    """Lay ``folder``'s files out as huggingface_hub's cache would after a download."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for file in folder.iterdir():
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / file.name)


def test_from_pretrained_repo_id_offline(tmp_path):
    model = srhub.SRCNN(scale=2, num_features=8, hidden_features=4)
    folder = tmp_path / "folder"
    model.save_pretrained(folder)
    cache = tmp_path / "hub"
    fill_hf_cache(cache, REPO_ID, folder)
    script = f"""
import torch, srhub
model = srhub.SRCNN.from_pretrained({REPO_ID!r})
generic = srhub.load({REPO_ID!r})
lq = torch.rand(1, 3, 8, 8)
reference = srhub.SRCNN.from_pretrained({str(folder)!r})
assert torch.equal(model(lq), reference(lq)) and torch.equal(generic(lq), reference(lq))
print("ok", type(generic).__name__)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ok SRCNN" in result.stdout


def test_missing_repo_offline_fails_clearly(tmp_path):
    script = "import srhub; srhub.load('srhub/does-not-exist')"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "LocalEntryNotFoundError" in result.stderr or "offline" in result.stderr.lower()


def test_load_folder_without_config_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        srhub.load(tmp_path)
