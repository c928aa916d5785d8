"""train/gpu_zoo.py end to end on the CPU with a tiny budget: packing, training, the returned files, loading."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import srhub
from srhub.data import BenchmarkDataset
from srhub.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_table  # noqa: E402
from ship_gpu_zoo import unpack  # noqa: E402


def _gpu_zoo():
    """train/gpu_zoo.py as a module (train/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_zoo", ROOT / "train" / "gpu_zoo.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    return zoo


def _smooth_image(seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 6, size)
    waves = 127 + 100 * np.sin(x[None, :, None] * (seed + 1) + x[:, None, None] * np.array([1, 2, 3]))
    return (waves + rng.normal(0, 5, (size, size, 3))).clip(0, 255).astype(np.uint8)


def _run(tmp_path: Path, *extra: str) -> Path:
    for folder in ("train", "more", "val"):
        (tmp_path / folder).mkdir()
    for i in range(4):  # two training folders, packed together (as train-291 and photos-43 can be)
        Image.fromarray(_smooth_image(i, 96)).save(tmp_path / ("train", "more")[i % 2] / f"t{i}.png")
    for i in range(2):
        Image.fromarray(_smooth_image(10 + i, 72)).save(tmp_path / "val" / f"v{i}.png")
    env = os.environ | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    packed, out = tmp_path / "packed", tmp_path / "out"
    subprocess.run(
        [sys.executable, "benchmarks/pack_training_data.py", "--train", str(tmp_path / "train"), str(tmp_path / "more"),
         "--val", str(tmp_path / "val"), "--out", str(packed)],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=120,
    )
    assert len(list((packed / "train").iterdir())) == 4
    for path in (packed / "train").iterdir():  # lossless: every pixel comes back
        source = next(tmp_path.glob(f"*/{path.stem}.png"))
        with Image.open(path) as webp, Image.open(source) as png:
            assert np.array_equal(np.asarray(webp.convert("RGB")), np.asarray(png))
    done = subprocess.run(
        [sys.executable, "train/gpu_zoo.py", "--data", str(packed), "--out", str(out), "--device", "cpu",
         "--smoke", "--checks", "1", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _check_returned_files(out: Path) -> None:
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and all(p.parent == out for p in files), files  # what the device sends back
    assert all(p.stat().st_size <= 16 * 2**20 for p in files)
    assert {"results.json", "log.txt"} <= {p.name for p in files}


def test_gpu_zoo_smoke_run_writes_loadable_best_weights(tmp_path):
    from ship_gpu_zoo import curve_note

    out = _run(tmp_path, "--budget-seconds", "10", "--models", "fsrcnn", "--scales", "3", "4", "--threads", "1")
    _check_returned_files(out)
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"fsrcnn-x3", "fsrcnn-x4"}
    assert all(r["threads"] == 1 for r in results.values())  # --threads reaches the worker, and the card
    assert "on one thread of the CPU (" in curve_note(results["fsrcnn-x3"])
    models = tmp_path / "models"
    assert unpack(out, models) == ["fsrcnn-x3", "fsrcnn-x4"]
    val = tmp_path / "packed" / "Set5"
    for name, result in results.items():
        assert result["steps"] >= 1 and result["best_set5_psnr"] is not None
        assert result["train_data"] == ["train", "more"]  # the packed folders, for the card
        assert [p["step"] for p in result["curve"]] == sorted(p["step"] for p in result["curve"])
        model = srhub.load(models / name).float()  # strict loading; weights over 1M parameters travel as float16
        scale = model.scale
        items = BenchmarkDataset(val, scale=scale)
        with torch.no_grad():
            measured = sum(psnr(model(it.lq[None]).clamp(0, 1), it.gt[None], crop_border=scale) for it in items) / len(items)
        tolerance = 1e-3 if result["saved_dtype"] == "float32" else 0.05  # the kept weights are the best ones
        assert measured == pytest.approx(result["best_set5_psnr"], abs=tolerance)
    # FSRCNN's transfer: x4 starts as the x3 network; its deconvolution learns alone, then every layer at lr / 10
    x3, x4 = srhub.load(models / "fsrcnn-x3").state_dict(), srhub.load(models / "fsrcnn-x4").state_dict()
    result = results["fsrcnn-x4"]
    assert result["transfer_from"] == "fsrcnn-x3" and result["scale_augmentation"] == [0.9, 0.8, 0.7, 0.6]
    tuned = result["fine_tune_all"]
    assert tuned["steps"] >= 1 and tuned["lr"] == pytest.approx(result["lr"] / 10)
    deconv_steps = result["steps"] - tuned["steps"]
    for key, value in x3.items():
        if "deconvolution" in key:
            assert not torch.equal(value, x4[key])
        elif result["best_step"] <= deconv_steps:  # kept from the deconvolution-only phase
            assert torch.equal(value, x4[key]), key
        else:  # a short fine-tune at lr / 10: Adam moves each weight about lr per step at most
            assert (value - x4[key]).abs().max() <= 3 * tuned["lr"] * tuned["steps"], key


def test_from_shipped_goes_on_from_the_shipped_weights(tmp_path):
    from safetensors.torch import load_file
    from ship_gpu_zoo import curve_note
    from ship_trained import previous_training

    out = _run(tmp_path, "--budget-seconds", "12", "--models", "espcn", "fsrcnn", "--scales", "3", "--from-shipped", "--parallel-jobs")
    results = json.loads((out / "results.json").read_text())
    assert {name: r["worker"] for name, r in results.items()} == {"espcn-x3": "espcn-x3", "fsrcnn-x3": "fsrcnn-x3"}
    assert results["fsrcnn-x3"]["kind"] == "continue"  # one process per job: each goes on from srhub's weights
    result = results["espcn-x3"]
    assert result["kind"] == "continue" and result["continued_from"] == "srhub/weights/espcn-x3.safetensors"
    assert result["lr"] == pytest.approx(0.3 * 2e-3) and result["steps"] >= 1  # 0.3 x ESPCN's peak
    unpack(out, tmp_path / "models")
    trained = srhub.load(tmp_path / "models" / "espcn-x3").state_dict()
    shipped = load_file(ROOT / "srhub" / "weights" / "espcn-x3.safetensors")
    assert trained.keys() == shipped.keys()
    for key, value in shipped.items():  # Adam moves each weight about lr per step at most: it went on from them
        assert (trained[key] - value.float()).abs().max() <= 3 * result["lr"] * result["steps"], key
    before = previous_training("espcn-x3")
    note = curve_note(result, before)
    assert f"Continued from the weights srhub shipped before ({before['steps']:,} steps" in note and "0.0006" in note
    assert result["device"].endswith(" CPU") and " cores" in result["device"]  # the CPU model, for the card
    assert result["threads"] == 2 and "on the CPU (" in note and "), alone" in note and "GPU" not in note


def test_espcn_features_from_x3_start_x4_from_the_x3_network(tmp_path):
    from ship_gpu_zoo import curve_note

    out = _run(tmp_path, "--budget-seconds", "8", "--models", "espcn", "--scales", "3", "4", "--features-from-x3")
    results = json.loads((out / "results.json").read_text())
    assert results["espcn-x3"]["kind"] == "train" and "features_from" not in results["espcn-x3"]
    result = results["espcn-x4"]
    assert result["kind"] == "features" and result["features_from"] == "espcn-x3 (this run)"
    assert result["lr"] == pytest.approx(2e-3) and result["steps"] >= 1  # a fresh start: the full rate
    assert "started as those of espcn-x3 (this run), with a fresh sub-pixel layer" in curve_note(result)
    record = {"training": {"script": "train/gpu_zoo.py", "hardware": result["device"], "steps": result["steps"], "config": result}}
    assert ", conv1 and conv2 from espcn-x3 (this run) at the start" in results_table.recipe(record)  # the README table
    unpack(out, tmp_path / "models")
    x3, x4 = (srhub.load(tmp_path / "models" / f"espcn-x{s}").state_dict() for s in (3, 4))
    for key in ("conv1.weight", "conv2.weight"):  # Adam moves each weight about lr per step at most
        assert (x4[key] - x3[key]).abs().max() <= 3 * result["lr"] * result["steps"], key
    assert x4["conv3.weight"].shape[0] == 16 and x3["conv3.weight"].shape[0] == 9


def test_espcn_features_come_from_the_shipped_x3_when_the_run_has_none():
    from safetensors.torch import load_file

    load_espcn_features = _gpu_zoo().load_espcn_features
    model, logged = srhub.models.MODELS["espcn"](scale=4), []
    fresh = model.conv3.weight.detach().clone()
    assert load_espcn_features(model, {}, logged.append) == "srhub/weights/espcn-x3.safetensors"
    shipped = load_file(ROOT / "srhub" / "weights" / "espcn-x3.safetensors")
    assert torch.equal(model.conv1.weight, shipped["conv1.weight"].float())
    assert torch.equal(model.conv2.bias, shipped["conv2.bias"].float())
    assert torch.equal(model.conv3.weight, fresh) and logged
    with pytest.raises(RuntimeError, match="does not fit"):  # a network without those layers is refused
        load_espcn_features(srhub.models.MODELS["fsrcnn"](scale=4), {}, logged.append)


@pytest.mark.slow
def test_gpu_zoo_smoke_run_trains_the_whole_zoo(tmp_path):
    out = _run(tmp_path, "--budget-seconds", "30")
    _check_returned_files(out)
    results = json.loads((out / "results.json").read_text())
    expected = {f"{m}-x4" for m in ("srresnet", "bsrn", "ebrn", "rrdbnet")}
    expected |= {f"{m}-x{s}" for m in ("srcnn", "espcn", "fsrcnn", "bsrn-s", "pisr", "pisr-teacher", "fsrcnn-plain") for s in (2, 3, 4)}
    assert set(results) == expected
    assert not [name for name, result in results.items() if "error" in result]
    for scale in (2, 3, 4):  # the comparison gets the student's steps: teacher + student
        pisr = results[f"pisr-x{scale}"]
        assert results[f"fsrcnn-plain-x{scale}"]["steps"] == pisr["steps"] + pisr["teacher"]["steps"]
    models = tmp_path / "models"
    for name in unpack(out, models):
        model = srhub.load(models / name).float()  # the heavy weights travel as float16
        if model.role == "generator":
            assert model(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16 * model.scale, 16 * model.scale)
    assert srhub.load(models / "rrdbnet-x4").config["num_blocks"] == 23


def test_ship_refuses_a_model_that_does_not_beat_its_previous_record():
    # the shipped espcn-x2, re-measured, only ties its own record: nothing may be written
    from srhub.data import default_data_root

    if not (default_data_root() / "Set14").is_dir():
        pytest.skip("Set5/Set14 are not on disk")
    from ship_trained import ship

    record_path = ROOT / "srhub" / "weights" / "espcn-x2.json"
    record = json.loads(record_path.read_text())
    before = {p: p.stat().st_mtime_ns for p in (record_path, ROOT / "README.md", ROOT / "model_cards" / "espcn-x2.md")}
    previous = {row["dataset"]: row["psnr"] for row in record["results"]}
    assert ship("espcn-x2", srhub.load("espcn-x2").float(), record["training"], must_beat=previous) == 2
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_parallel_jobs_keeps_dependent_jobs_in_one_process():
    from types import SimpleNamespace

    zoo = _gpu_zoo()

    def plan(**flags):
        defaults = {"models": None, "scales": None, "parallel_jobs": True, "from_shipped": False}
        return zoo.processes(SimpleNamespace(**(defaults | flags)))

    separate = plan()
    assert separate["heavy"] == ("heavy", None, None)  # compute-bound: one after another
    assert separate["fsrcnn"] == ("fsrcnn", None, None)  # x2 / x4 start from this run's x3
    assert separate["espcn-x4"] == ("srcnn-espcn", ["espcn"], [4]) and "srcnn-espcn" not in separate
    shipped = plan(from_shipped=True, models=["fsrcnn"])
    assert shipped == {f"fsrcnn-x{s}": ("fsrcnn", ["fsrcnn"], [s]) for s in (2, 3, 4)}
    assert list(plan(parallel_jobs=False)) == list(zoo.WORKERS)


def test_fsrcnn_deconvolution_learns_at_a_tenth_of_the_rate():
    """FSRCNN's paper: 10^-3 for the convolutions, 10^-4 for the deconvolution (LAYER_LR)."""
    zoo = _gpu_zoo()
    torch.manual_seed(0)
    model = srhub.FSRCNN(scale=3)
    groups = zoo.param_groups(model, "fsrcnn", model.parameters())
    deconv = {id(p) for p in model.body.deconvolution.parameters()}
    assert sorted(g["lr_scale"] for g in groups) == [0.1, 1.0]
    assert {id(p) for g in groups if g["lr_scale"] == 0.1 for p in g["params"]} == deconv
    assert [g["lr_scale"] for g in zoo.param_groups(model, "pisr", model.parameters())] == [1.0]  # the same net, one rate
    espcn = srhub.ESPCN(scale=3)  # ESPCN's paper: its final layer learns 10 times slower
    slow = {id(p) for g in zoo.param_groups(espcn, "espcn", espcn.parameters()) if g["lr_scale"] == 0.1 for p in g["params"]}
    assert slow == {id(p) for p in espcn.conv3.parameters()}

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lq, gt = torch.rand(4, 1, 7, 7), torch.rand(4, 1, 21, 21)
    zoo.optimise("t", model, groups, lambda: torch.nn.functional.mse_loss(model.body(lq), gt), lr=1e-3,
                 seconds=60, max_steps=1, log=lambda message: None, checks=0)
    moved = {name: float((p.detach() - before[name]).abs().max()) for name, p in model.named_parameters()}
    # Adam's first step moves every weight with a gradient by about its learning rate
    conv = moved["body.feature_extraction.0.weight"]
    assert conv > 0 and moved["body.deconvolution.weight"] == pytest.approx(conv / 10, rel=0.05)


def test_a_zoo_card_names_every_folder_the_run_trained_on():
    from ship_gpu_zoo import training_data
    from ship_trained import PHOTOS_43, T91, TRAIN_291

    assert training_data({"train_data": ["train-291", "photos-43"]}) == f"{TRAIN_291}; and {PHOTOS_43}"
    assert training_data({"train_data": ["t91"]}) == T91 and "BSDS" not in T91
    assert training_data({}) == TRAIN_291  # records from before the field: those runs packed train-291


def test_pack_t91_packs_the_91_images_of_train_291_alone(tmp_path):
    # the data of ESPCN's and SRCNN's 91-image models, by name; the manifest says which (gpu_zoo records it)
    from pack_training_data import DATASETS

    train_291 = DATASETS / "train-291"
    if not train_291.is_dir():
        pytest.skip("../shared/datasets/train-291 is not beside the checkout")
    out = tmp_path / "packed"
    # WebP effort 0: the same images, 20x faster than the default effort (27 s -> 1.3 s on a slow 2-core Xeon)
    subprocess.run([sys.executable, "benchmarks/pack_training_data.py", "--train", "t91", "--out", str(out), "--method", "0"],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    packed = sorted(p.stem for p in (out / "train").iterdir())
    assert packed == sorted(p.stem for p in train_291.glob("t91_*.png")) and len(packed) == 91
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["train_source"] == ["t91"] and manifest["train_images"] == 91
    missing = subprocess.run([sys.executable, "benchmarks/pack_training_data.py", "--train", str(tmp_path / "empty"),
                              "--out", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             check=False)
    assert missing.returncode != 0 and "not a folder" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "x").exists()  # a mistyped --train writes nothing


def test_espcn_trains_on_the_91_images_where_the_pack_holds_them():
    zoo = _gpu_zoo()

    pack = [(f"{name}.webp", torch.full((3, 4, 4), i, dtype=torch.uint8))
            for i, name in enumerate(["bsd200_1", "t91_a", "t91_b", "wall"])]
    images, data = zoo.recipe_images("espcn", pack)
    assert data == ["t91"] and [int(image[0, 0, 0]) for image in images] == [1, 2]
    images, data = zoo.recipe_images("fsrcnn", pack)  # no subset: every packed image
    assert data is None and len(images) == 4
    images, data = zoo.recipe_images("espcn", [pack[0], pack[3]])  # a pack without them: all of it
    assert data is None and len(images) == 2
