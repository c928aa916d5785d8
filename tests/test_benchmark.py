"""Benchmark datasets and runner: the papers' bicubic rows, the CLI, folders, pairs and errors."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from srhub import data
from srhub.benchmark import format_table, run_benchmark, write_results
from srhub.cli import main
from srhub.data import BenchmarkDataset, PairedFolderDataset
from srhub.models import SRCNN

# Bicubic rows as printed in the SR papers (e.g. VDSR, EDSR tables): (PSNR, SSIM).
PAPER_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299),
    ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688),
    ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027),
}


@pytest.fixture(scope="module")
def bicubic_rows(datasets_root):
    return run_benchmark(["bicubic"], ["Set5", "Set14"], [2, 3, 4], data_root=datasets_root / "benchmark", progress=False)


def test_bicubic_reproduces_the_papers(bicubic_rows):
    measured = {(row["dataset"], row["scale"]): row for row in bicubic_rows}
    assert set(measured) == set(PAPER_BICUBIC)
    for key, (paper_psnr, paper_ssim) in PAPER_BICUBIC.items():
        row = measured[key]
        assert row["psnr"] == pytest.approx(paper_psnr, abs=0.02), key
        assert row["ssim"] == pytest.approx(paper_ssim, abs=0.002), key
        assert row["images"] == (5 if key[0] == "Set5" else 14)
        assert row["params"] == 0 and row["model"] == "bicubic"


def test_benchmark_dataset_makes_lr_with_matlab_bicubic(datasets_root):
    dataset = BenchmarkDataset("Set14", scale=3, data_root=datasets_root / "benchmark")
    assert len(dataset) == 14 and dataset.name == "Set14"
    assert dataset.grayscale == {"bridge"}  # stored as an 8-bit gray PNG
    index = [path.stem for path in dataset.files].index("comic")  # 250 x 361, not a multiple of 3
    name, lq, gt = dataset[index]
    assert name == "comic"
    assert gt.shape == (3, 360, 249) and lq.shape == (3, 120, 83)
    assert gt.dtype == torch.float32 and 0 <= gt.min() and gt.max() <= 1
    # LR is 8-bit (exact multiples of 1/255) and equals imresize of the mod-cropped uint8 HR.
    assert torch.equal((lq * 255).round() / 255, lq)
    hr = torch.from_numpy(np.asarray(Image.open(dataset.files[index]).convert("RGB")).copy()).permute(2, 0, 1)
    from srhub.degradations import imresize

    assert torch.equal((lq * 255).round().to(torch.uint8), imresize(hr[:, :360, :249].contiguous(), scale=1 / 3))
    bridge = dataset[[path.stem for path in dataset.files].index("bridge")]
    assert bridge.gt.shape[0] == 3 and torch.equal(bridge.gt[0], bridge.gt[1])


def test_cli_writes_json_and_markdown(datasets_root, tmp_path, capsys):
    prefix = tmp_path / "results" / "bicubic"
    code = main(
        ["benchmark", "--models", "bicubic", "--datasets", "Set5", "--scales", "4", "--output", str(prefix),
         "--data-root", str(datasets_root / "benchmark"), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| bicubic | 0 | Set5 | x4 | 28.4" in printed
    payload = json.loads((tmp_path / "results" / "bicubic.json").read_text())
    assert "Y channel" in payload["protocol"]
    (row,) = payload["rows"]
    assert row["model"] == "bicubic" and row["dataset"] == "Set5" and row["scale"] == 4 and row["images"] == 5
    assert row["psnr"] == pytest.approx(28.42, abs=0.02) and row["ssim"] == pytest.approx(0.8104, abs=0.002)
    assert row["seconds_per_image"] > 0
    markdown = (tmp_path / "results" / "bicubic.md").read_text(encoding="utf-8")
    assert "| bicubic | 0 | Set5 | x4 |" in markdown and "Protocol:" in markdown


def test_cli_reports_a_missing_set(tmp_path, capsys):
    code = main(["benchmark", "--models", "bicubic", "--datasets", "Urban100", "--scales", "2",
                 "--data-root", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "Urban100 not found" in error and str(tmp_path / "Urban100") in error and "--download" in error


def _write_images(folder, sizes, seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for index, (height, width) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"img{index}.png")


def test_folder_and_pairs_and_model_scales(tmp_path):
    hr_dir = tmp_path / "tiny_HR"
    _write_images(hr_dir, [(26, 30), (24, 24)])
    folder_set = BenchmarkDataset(hr_dir, scale=2)
    assert folder_set.name == "tiny_HR" and folder_set[0].gt.shape == (3, 26, 30)
    # Pairs from two folders: LR named with a scale suffix, scale read from the sizes.
    lr_dir = tmp_path / "tiny_LR"
    lr_dir.mkdir()
    for item in folder_set:
        Image.fromarray((item.lq * 255).round().byte().permute(1, 2, 0).numpy()).save(lr_dir / f"{item.name}_x2.png")
    pairs = PairedFolderDataset(hr_dir, lr_dir)
    assert pairs.scale == 2 and len(pairs) == 2
    for mine, theirs in zip(pairs, folder_set):
        assert mine.name == theirs.name
        torch.testing.assert_close(mine.lq, theirs.lq)
        torch.testing.assert_close(mine.gt, theirs.gt)

    model = SRCNN(scale=2, num_features=4, hidden_features=4).eval()
    other = SRCNN(scale=3, num_features=4, hidden_features=4).eval()
    rows = run_benchmark([model, other], [hr_dir, pairs], None, progress=False)
    # Without scales each model runs at its own; the x2 pairs are skipped for the x3 model.
    assert [(row["model"], row["dataset"], row["scale"]) for row in rows] == [
        ("srcnn-x2", "tiny_HR", 2), ("srcnn-x2", "tiny_HR", 2), ("srcnn-x3", "tiny_HR", 3)
    ]  # fmt: skip
    assert rows[0]["params"] == model.num_parameters() > 0
    assert rows[0]["psnr"] == pytest.approx(rows[1]["psnr"], abs=1e-6)  # on-the-fly LR == stored LR
    assert run_benchmark([other], [hr_dir], [2], progress=False) == []  # x3 model, x2 requested: skipped
    table = format_table(rows)
    assert table.count("\n") == 4 and "srcnn-x3" in table
    json_path, md_path = write_results(rows, tmp_path / "out" / "tiny")
    assert json.loads(json_path.read_text())["rows"] == rows and md_path.exists()
    with pytest.raises(ValueError, match="explicit scales"):
        run_benchmark(["bicubic"], [hr_dir], None, progress=False)
    with pytest.raises(ValueError, match="scale"):
        BenchmarkDataset(hr_dir, scale=1)


def test_mismatched_pairs_are_rejected(tmp_path):
    _write_images(tmp_path / "hr", [(32, 32)])
    _write_images(tmp_path / "lr", [(10, 10)])
    pairs = PairedFolderDataset(tmp_path / "hr", tmp_path / "lr", scale=2)
    with pytest.raises(ValueError, match="x2"):
        pairs[0]
    (tmp_path / "lr" / "img0.png").rename(tmp_path / "lr" / "other.png")
    with pytest.raises(FileNotFoundError, match="no LR image for img0.png"):
        PairedFolderDataset(tmp_path / "hr", tmp_path / "lr")


def test_download_from_the_hub_unpacks_the_hr_archive(tmp_path, monkeypatch):
    # The Hub call is replaced by a local archive shaped like eugenesiow/Set5's data/Set5_HR.tar.gz.
    archive = tmp_path / "Set5_HR.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for index in range(2):
            buffer = io.BytesIO()
            Image.new("RGB", (12, 12), (index * 100, 0, 0)).save(buffer, format="PNG")
            info = tarfile.TarInfo(f"Set5_HR/img{index}.png")
            info.size = buffer.tell()
            buffer.seek(0)
            tar.addfile(info, buffer)
    calls = []

    def fake_download(*, repo_id, filename, repo_type):
        calls.append((repo_id, filename, repo_type))
        return str(archive)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setenv("SRHUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="download=True"):
        BenchmarkDataset("Set5", scale=2, data_root=tmp_path / "empty")
    dataset = BenchmarkDataset("set5", scale=2, data_root=tmp_path / "empty", download=True)
    assert calls == [("eugenesiow/Set5", "data/Set5_HR.tar.gz", "dataset")]
    assert dataset.name == "Set5" and len(dataset) == 2 and dataset[1].lq.shape == (3, 6, 6)
    # Once unpacked, the cached copy is found without downloading again.
    assert len(BenchmarkDataset("Set5", scale=2, data_root=tmp_path / "empty")) == 2
    assert len(calls) == 1
    with pytest.raises(ValueError, match="no Hub source"):
        data.download_benchmark("Manga109")
