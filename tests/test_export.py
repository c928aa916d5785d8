"""ONNX export: dynamic height/width graphs that match PyTorch on sizes not seen at export."""

from __future__ import annotations

import json

import pytest
import torch

from srhub import BSRN, RRDBNet, SRVGGNetCompact, VGGStyleDiscriminator
from srhub.cli import main
from srhub.export import ExportError, export_onnx, onnxruntime_session

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.fast

TINY = {
    "rrdbnet-x4": lambda: RRDBNet(scale=4, num_features=8, num_blocks=1, growth_channels=4),
    "rrdbnet-x2": lambda: RRDBNet(scale=2, num_features=8, num_blocks=1, growth_channels=4),  # pixel-unshuffle input
    "rrdbnet-x1": lambda: RRDBNet(scale=1, num_features=8, num_blocks=1, growth_channels=4),
    "srvggnet-compact": lambda: SRVGGNetCompact(scale=4, num_features=8, num_convs=2),
    "bsrn": lambda: BSRN(scale=3, num_features=16, num_blocks=1),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_dynamic_graph_matches_pytorch_on_unseen_sizes(name, tmp_path):
    model = TINY[name]().eval()
    result = export_onnx(model, tmp_path / "model.onnx")
    assert result.path.is_file() and result.path.read_bytes() == result.onnx_bytes
    # export_onnx's own verification: two sizes other than the traced one
    assert len(result.max_abs) == 2 and result.example_size not in result.max_abs
    # and an independent check here, on sizes the function did not use (batch 1 and 3)
    m = model.size_multiple
    session = onnxruntime_session(result.path.read_bytes(), threads=1)
    for batch, (h, w) in [(1, (20 * m, 17 * m)), (3, (6 * m + 24, 44))]:  # sides >= 16 (see srhub.export)
        h, w = h // m * m, w // m * m
        assert (h, w) != result.example_size
        lq = torch.rand(batch, 3, h, w)
        with torch.no_grad():
            expected = model(lq)
        (got,) = session.run(["sr"], {"lq": lq.numpy()})
        assert got.shape == (batch, 3, h * model.scale, w * model.scale)
        assert float((torch.from_numpy(got) - expected).abs().max()) < 1e-3


def test_graph_declares_dynamic_axes_and_config(tmp_path):
    model = RRDBNet(scale=2, num_features=8, num_blocks=1, growth_channels=4)
    export_onnx(model, tmp_path / "m.onnx", verify=False)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["srhub.architecture"] == "rrdbnet"
    assert meta["srhub.scale"] == "2" and meta["srhub.size_multiple"] == "2"
    assert json.loads(meta["srhub.config"]) == model.config


def test_export_leaves_model_untouched():
    model = SRVGGNetCompact(scale=2, num_features=8, num_convs=1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_discriminator_cannot_be_exported():
    with pytest.raises(ExportError, match="discriminator, not a generator"):
        export_onnx(VGGStyleDiscriminator())


class _SizeBranch(torch.nn.Module):
    """A generator whose forward takes a Python branch on the input width: tracing bakes in one side."""

    scale = 2

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        feat = self.conv(lq)
        if lq.shape[-1] < 40:
            feat = feat * 2
        return torch.nn.functional.pixel_shuffle(feat, 2)


def test_size_dependent_forward_is_caught():
    with pytest.raises(ExportError, match="depends on the input size"):
        export_onnx(_SizeBranch(), example_size=(32, 32))  # verified at 16x17 (same branch) and 56x72 (not)


def test_bad_example_size():
    with pytest.raises(ExportError, match="multiples of 2"):
        export_onnx(RRDBNet(scale=2, num_features=8, num_blocks=1, growth_channels=4), example_size=(33, 32))


def test_cli_export(tmp_path, capsys):
    folder = tmp_path / "tiny"
    SRVGGNetCompact(scale=2, num_features=8, num_convs=1).save_pretrained(folder)
    assert main(["export", str(folder), "-o", str(tmp_path / "out.onnx"), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "out.onnx").is_file() and "max abs difference" in out
    assert main(["export", str(tmp_path / "missing"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "srhub export:" in capsys.readouterr().err
