"""The trained models shipped inside srhub: they load by name offline, beat bicubic, measure
what their records say, and the cards and the README table are generated from those records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import srhub
from srhub import pretrained
from srhub.benchmark import run_benchmark
from srhub.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import results_table  # noqa: E402

SHIPPED = [spec.name for spec in srhub.list_pretrained() if spec.package_file is not None]
#: models whose Set5 run takes more than ~10 s on the project's 2-core CPU
HEAVY = {"bsrn-x4", "srresnet-x4", "ebrn-x4", "rrdbnet-x4"}
PSNR_TOLERANCE_DB = 0.05
WEIGHTS_BUDGET_BYTES = 40 * 1024 * 1024


def _marks(name: str):
    return [pytest.mark.slow] if name in HEAVY else []


@pytest.fixture()
def offline(monkeypatch):
    """No Hub access: any download attempt fails the test."""
    import srhub.hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(srhub.hub, "hf_hub_download", lambda *a, **k: pytest.fail("Hub download attempted"))


def test_something_is_shipped_and_every_file_belongs_to_an_entry():
    assert {"espcn-x4"} <= set(SHIPPED)
    weights = ROOT / "srhub" / "weights"
    stems = {path.stem for path in weights.iterdir() if path.suffix in (".json", ".safetensors")}
    assert stems == {pretrained.get_pretrained(name).package_file for name in SHIPPED}


def test_shipped_weights_fit_the_budget():
    total = sum(path.stat().st_size for path in (ROOT / "srhub" / "weights").glob("*.safetensors"))
    assert 0 < total < WEIGHTS_BUDGET_BYTES


@pytest.mark.parametrize("name", SHIPPED)
def test_record_matches_the_table_and_beats_bicubic(name):
    spec = pretrained.get_pretrained(name)
    record = pretrained.shipped_record(name)
    assert record["name"] == name and name.endswith(f"-x{spec.scale}")
    assert record["architecture"] == spec.architecture
    assert record["config"] == spec.config
    assert record["params"] == spec.num_parameters
    rows = {row["dataset"]: row for row in record["results"]}
    assert set(rows) == {"Set5", "Set14"}
    for row in rows.values():
        assert row["scale"] == spec.scale
        assert row["psnr"] > row["bicubic_psnr"], f"{name} does not beat bicubic on {row['dataset']}"
    check = record["fp16_check"]
    if record["dtype"] == "float16":
        assert abs(check["set5_psnr_fp32"] - check["set5_psnr_fp16"]) < check["tolerance_db"]
    assert record["training"]["steps"] > 0 and record["training"]["wall_seconds"] > 0
    assert record["paper"]["citation"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in SHIPPED])
def test_loads_offline_and_measures_the_recorded_set5_psnr(name, offline, datasets_root):
    record = pretrained.shipped_record(name)
    model = srhub.load(name)
    assert model.scale == record["config"]["scale"] and not model.training
    (row,) = run_benchmark([model], ["Set5"], [model.scale], data_root=datasets_root / "benchmark", progress=False)
    recorded = next(r for r in record["results"] if r["dataset"] == "Set5")
    assert row["psnr"] == pytest.approx(recorded["psnr"], abs=PSNR_TOLERANCE_DB)
    assert row["ssim"] == pytest.approx(recorded["ssim"], abs=0.002)
    assert row["psnr"] > recorded["bicubic_psnr"]


@pytest.mark.parametrize("name", SHIPPED)
def test_model_card_is_generated_from_the_record(name):
    record = pretrained.shipped_record(name)
    card = (ROOT / "model_cards" / f"{name}.md").read_text(encoding="utf-8")
    assert card == pretrained.render_trained_card(record)
    set5 = next(r for r in record["results"] if r["dataset"] == "Set5")
    assert f"{set5['psnr']:.2f}" in card and record["training"]["command"] in card
    assert "{{" not in card and "None" not in card


@pytest.mark.parametrize("name", SHIPPED)
def test_card_names_the_data_the_recorded_command_read(name):
    # a train/*.py run records --train-data, a train/gpu_zoo.py run the folders it packed (train_data);
    # its card must name those folders, not a default
    record = pretrained.shipped_record(name)
    training = record["training"]
    folders = training["config"].get("train_data") or ["train-291"]  # older zoo runs packed the 291 images
    names = {Path(folder).name for folder in ([folders] if isinstance(folders, str) else folders)}
    assert all(folder in training["data"] for folder in names)
    summary = pretrained.trained_card(record)["summary"]
    assert ("291-image set" in summary) == ("train-291" in names)
    assert ("43-photo set" in summary) == ("photos-43" in names)


def test_readme_table_is_generated_from_the_records():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert results_table.generated_block() in readme
    for name in SHIPPED:
        assert f"| `{name}` |" in readme


def test_push_publishes_the_weights_and_the_generated_card(monkeypatch):
    name = SHIPPED[0]
    uploaded = {}

    class FakeApi:
        def create_repo(self, **kwargs):
            uploaded["repo"] = kwargs["repo_id"]

        def upload_folder(self, *, folder_path, repo_id, **kwargs):
            folder = Path(folder_path)
            uploaded["files"] = sorted(path.name for path in folder.iterdir())
            uploaded["card"] = (folder / "README.md").read_text(encoding="utf-8")
            uploaded["config"] = json.loads((folder / "config.json").read_text(encoding="utf-8"))

    monkeypatch.setattr("huggingface_hub.HfApi", lambda token=None: FakeApi())
    assert cli_main(["push", name, f"someone/{name}"]) == 0
    record = pretrained.shipped_record(name)
    assert uploaded["repo"] == f"someone/{name}"
    assert uploaded["files"] == ["README.md", "config.json", "model.safetensors"]
    assert uploaded["card"] == (ROOT / "model_cards" / f"{name}.md").read_text(encoding="utf-8")
    assert uploaded["config"] == {**record["config"], "architecture": record["architecture"]}


def test_cli_upscale_by_name(tmp_path, offline):
    name = SHIPPED[0]
    scale = pretrained.get_pretrained(name).scale
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    assert cli_main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", name, "--no-progress"]) == 0
    assert Image.open(tmp_path / "out.png").size == (10 * scale, 12 * scale)
