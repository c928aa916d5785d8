"""FSRCNN, ESPCN, SRResNet (+ SRGAN discriminator), EBRN and PISR's teacher: checks beyond the registry-wide ones."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import srhub
from srhub.color import rgb_to_y, rgb_to_ycbcr
from srhub.models.base import check_state_dict


def _bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


# ---------------------------------------------------------------- SRResNet / BasicSR MSRResNet


def _basicsr_msrresnet_state(scale: int, num_feat: int = 64, num_block: int = 16, num_ch: int = 3) -> dict:
    """Key names and shapes of a BasicSR ``MSRResNet`` checkpoint, written out from BasicSR's layout."""
    def conv(cin: int, cout: int) -> dict:
        return {"weight": torch.randn(cout, cin, 3, 3) * 0.05, "bias": torch.randn(cout) * 0.05}

    layers = {"conv_first": conv(num_ch, num_feat)}
    for i in range(num_block):
        layers[f"body.{i}.conv1"] = conv(num_feat, num_feat)
        layers[f"body.{i}.conv2"] = conv(num_feat, num_feat)
    if scale == 4:
        layers["upconv1"] = conv(num_feat, num_feat * 4)
        layers["upconv2"] = conv(num_feat, num_feat * 4)
    else:
        layers["upconv1"] = conv(num_feat, num_feat * scale * scale)
    layers["conv_hr"] = conv(num_feat, num_feat)
    layers["conv_last"] = conv(num_feat, num_ch)
    return {f"{name}.{kind}": tensor for name, params in layers.items() for kind, tensor in params.items()}


def _basicsr_msrresnet_forward(state: dict, x: torch.Tensor, scale: int, num_block: int) -> torch.Tensor:
    """BasicSR's MSRResNet.forward, written with functional ops on the raw state dict."""
    conv = lambda name, t: F.conv2d(t, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)  # noqa: E731
    lrelu = lambda t: F.leaky_relu(t, 0.1)  # noqa: E731
    out = lrelu(conv("conv_first", x))
    for i in range(num_block):
        out = out + conv(f"body.{i}.conv2", F.relu(conv(f"body.{i}.conv1", out)))
    if scale == 4:
        out = lrelu(F.pixel_shuffle(conv("upconv1", out), 2))
        out = lrelu(F.pixel_shuffle(conv("upconv2", out), 2))
    else:
        out = lrelu(F.pixel_shuffle(conv("upconv1", out), scale))
    out = conv("conv_last", lrelu(conv("conv_hr", out)))
    return out + F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("scale", [4, 3])
def test_basicsr_msrresnet_checkpoint_loads_strictly_and_matches(scale):
    state = _basicsr_msrresnet_state(scale)
    model = srhub.SRResNet(scale=scale).eval()
    check_state_dict(model, state, source="BasicSR MSRResNet")
    model.load_state_dict(state, strict=True)
    if scale == 4:
        assert sum(t.numel() for t in state.values()) == model.num_parameters() == 1_517_571
    lq = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(lq), _basicsr_msrresnet_forward(state, lq, scale, 16))


def test_srresnet_init_and_scales():
    model = srhub.SRResNet(scale=4)
    fan_in = 64 * 9
    std = model.body[0].conv1.weight.std().item()
    assert 0.5 * 0.1 * (2 / fan_in) ** 0.5 < std < 1.5 * 0.1 * (2 / fan_in) ** 0.5  # BasicSR: Kaiming x 0.1
    assert torch.count_nonzero(model.conv_last.bias) == 0
    assert srhub.SRGAN is srhub.SRResNet
    for bad in (0, 1, 5, 8):
        with pytest.raises(ValueError, match="scales"):
            srhub.SRResNet(scale=bad)


# ---------------------------------------------------------------- FSRCNN / ESPCN


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("color_mode", ["y", "rgb"])
def test_fsrcnn_exact_output_size_on_odd_inputs(scale, color_mode):
    model = srhub.FSRCNN(scale=scale, num_features=8, shrink_features=4, num_mapping_layers=1, color_mode=color_mode)
    for h, w in [(7, 5), (13, 11), (1, 3)]:
        with torch.no_grad():
            sr = model(torch.rand(2, 3, h, w))
        assert sr.shape == (2, 3, h * scale, w * scale)


def test_fsrcnn_paper_layers():
    model = srhub.FSRCNN(scale=3)
    body = model.body
    assert body.feature_extraction[0].weight.shape == (56, 1, 5, 5)
    assert body.shrinking[0].weight.shape == (12, 56, 1, 1)
    assert len(body.mapping) == 4 and body.mapping[0][0].weight.shape == (12, 12, 3, 3)
    assert body.expanding[0].weight.shape == (56, 12, 1, 1)
    assert body.deconvolution.weight.shape == (56, 1, 9, 9) and body.deconvolution.stride == (3, 3)
    assert body.deconvolution.weight.std() < 0.002  # N(0, 0.001) as in the paper
    with pytest.raises(ValueError):
        srhub.FSRCNN(scale=4, color_mode="lab")
    with pytest.raises(ValueError):
        srhub.ESPCN(scale=-2)


def _y_models(scale):
    return [
        srhub.FSRCNN(scale=scale, num_features=8, shrink_features=4, num_mapping_layers=1),
        srhub.ESPCN(scale=scale, num_features=8, hidden_features=4),
    ]


@pytest.mark.parametrize("scale", [2, 3])
def test_y_mode_chroma_is_bicubic(scale):
    lq = torch.rand(1, 3, 9, 7)
    expected_cbcr = _bicubic(rgb_to_ycbcr(lq)[:, 1:], scale)
    for model in _y_models(scale):
        with torch.no_grad():
            sr = model(lq)
        torch.testing.assert_close(rgb_to_ycbcr(sr)[:, 1:], expected_cbcr, atol=1e-5, rtol=0)
        # the luma is the network's, not bicubic
        assert (rgb_to_y(sr) - _bicubic(rgb_to_y(lq), scale)).abs().max() > 1e-3


class _BicubicLuma(torch.nn.Module):
    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        assert y.shape[1] == 1  # the luma path sees one channel
        return _bicubic(y, self.scale)


class _BicubicESPCN(srhub.ESPCN):
    def _body(self, y: torch.Tensor) -> torch.Tensor:
        return _BicubicLuma(self.scale)(y)


@pytest.mark.parametrize("scale", [2, 4])
def test_y_mode_with_bicubic_luma_path_is_bicubic(scale):
    lq = torch.rand(1, 3, 8, 6)
    fsrcnn = _y_models(scale)[0]
    fsrcnn.body = _BicubicLuma(scale)
    espcn = _BicubicESPCN(scale=scale)
    for model in (fsrcnn, espcn):
        with torch.no_grad():
            torch.testing.assert_close(model(lq), _bicubic(lq, scale), atol=1e-5, rtol=0)


def test_rgb_mode_runs_on_three_channels():
    assert srhub.ESPCN(scale=3, color_mode="rgb").conv3.weight.shape == (27, 32, 3, 3)
    assert srhub.ESPCN(scale=3).conv3.weight.shape == (9, 32, 3, 3)
    assert srhub.FSRCNN(scale=2, color_mode="rgb").body.feature_extraction[0].weight.shape[1] == 3


def test_fsrcnn_forward_with_features_matches_forward():
    model = srhub.FSRCNN(scale=3, num_features=8, shrink_features=4, num_mapping_layers=2).eval()
    lq = torch.rand(1, 3, 7, 6)
    with torch.no_grad():
        sr, features = model.forward_with_features(lq)
        torch.testing.assert_close(sr, model(lq))
    assert list(features) == ["feature_extraction", "shrinking", "mapping", "expanding"]
    assert features["expanding"].shape == (1, 8, 7, 6)


# ---------------------------------------------------------------- EBRN


def test_ebrn_structure_and_scales():
    model = srhub.EBRN(scale=4, num_features=8, extraction_features=8, num_blocks=4)
    assert all(brm.down is not None for brm in model.brms[:-1]) and model.brms[-1].down is None
    assert len(model.fusion) == 3 and model.reconstruction.in_channels == 4 * 8
    assert srhub.EBRN(scale=4).brms[0].up.kernel_size == (8, 8)
    x8 = srhub.EBRN(scale=8, num_features=4, extraction_features=4, num_blocks=2)
    with torch.no_grad():
        assert x8(torch.rand(1, 3, 3, 5)).shape == (1, 3, 24, 40)
    for bad in (0, 1, 5):
        with pytest.raises(ValueError, match="scales"):
            srhub.EBRN(scale=bad)


def test_ebrn_back_projection_feeds_next_module():
    """Zeroing the first BRM's residual path must change the output (the chain is really recursive)."""
    model = srhub.EBRN(scale=2, num_features=4, extraction_features=4, num_blocks=3).eval()
    lq = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        before = model(lq)
        model.brms[0].down.weight.zero_()
        model.brms[0].down.bias.fill_(5.0)
        after = model(lq)
    assert (before - after).abs().max() > 1e-4


# ---------------------------------------------------------------- SRGAN discriminator


def _tiny_discriminator():
    return srhub.SRGANDiscriminator(num_features=4, input_size=32)


def test_discriminator_layers_and_shapes():
    model = srhub.SRGANDiscriminator()
    convs = [model.conv_first] + [block.conv for block in model.blocks]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert model.dense1.in_features == 512 * 6 * 6 and model.dense1.out_features == 1024
    assert model.dense2.out_features == 1
    assert srhub.get_model_class("srgan-discriminator") is srhub.SRGANDiscriminator
    assert model.role == "discriminator" and model.supported_scales == ()
    tiny = _tiny_discriminator().eval()
    with torch.no_grad():
        logits = tiny(torch.rand(5, 3, 32, 32))
    assert logits.shape == (5, 1) and torch.isfinite(logits).all()
    with torch.no_grad():  # a logit, not a probability: no sigmoid at the end
        tiny.dense2.bias.fill_(5.0)
        tiny.dense2.weight.zero_()
        assert torch.equal(tiny(torch.rand(1, 3, 32, 32)), torch.full((1, 1), 5.0))
    with pytest.raises(ValueError, match="32, 32"):
        tiny(torch.rand(1, 3, 48, 48))
    with pytest.raises(ValueError, match="multiple of 16"):
        srhub.SRGANDiscriminator(input_size=100)


def test_discriminator_gradients_reach_everything():
    model = _tiny_discriminator().train()
    image = torch.rand(2, 3, 32, 32, requires_grad=True)
    F.binary_cross_entropy_with_logits(model(image), torch.ones(2, 1)).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    silent = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent, silent


def test_discriminator_save_load_roundtrip(tmp_path):
    model = _tiny_discriminator().train()
    model(torch.rand(4, 3, 32, 32))  # move the batch-norm running statistics away from their defaults
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = srhub.load(tmp_path)
    assert type(loaded) is srhub.SRGANDiscriminator and loaded.config == model.config
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(image), loaded(image))


# ---------------------------------------------------------------- PISR teacher


def _tiny_teacher(scale=3, color_mode="y"):
    return srhub.PISRTeacher(
        scale=scale, num_features=8, shrink_features=4, num_mapping_layers=2, color_mode=color_mode
    )


@pytest.mark.parametrize("color_mode", ["y", "rgb"])
def test_teacher_shapes(color_mode):
    teacher = _tiny_teacher(color_mode=color_mode).eval()
    channels = 1 if color_mode == "y" else 3
    gt = torch.rand(2, 3, 12, 15)
    assert teacher.size_multiple == 3 and teacher.role == "teacher"
    with torch.no_grad():
        code = teacher.encode(gt)
        recon, features = teacher.decode(code, return_features=True)
        out = teacher(gt)
    assert code.shape == (2, channels, 4, 5)
    assert recon.shape == (2, channels, 12, 15)
    assert out.shape == gt.shape
    assert features["expanding"].shape == (2, 8, 4, 5) and features["mapping"].shape == (2, 4, 4, 5)
    if color_mode == "y":  # only luma goes through the autoencoder
        torch.testing.assert_close(rgb_to_ycbcr(out)[:, 1:], rgb_to_ycbcr(gt)[:, 1:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="multiples of 3"):
        teacher(torch.rand(1, 3, 13, 15))


def test_teacher_gradients_reach_every_parameter():
    teacher = _tiny_teacher(scale=2).train()
    gt = torch.rand(1, 3, 8, 10)
    recon, features = teacher.decode(teacher.encode(gt), return_features=True)
    (F.l1_loss(recon, rgb_to_y(gt)) + features["expanding"].square().mean()).backward()
    silent = [n for n, p in teacher.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent, silent


def test_teacher_student_shares_the_decoder():
    teacher = _tiny_teacher(scale=3).eval()
    student = teacher.student()
    assert type(student) is srhub.FSRCNN and student.scale == 3
    assert student.config["num_features"] == 8 and student.config["num_mapping_layers"] == 2
    lq = torch.rand(1, 3, 5, 4)
    with torch.no_grad():
        # the student on an LR image is the teacher's decoder fed that image's luma as the code
        torch.testing.assert_close(rgb_to_y(student(lq)), teacher.decode(rgb_to_y(lq)), atol=1e-5, rtol=0)
    fresh = teacher.student(initialize=False)
    assert not torch.equal(fresh.body.feature_extraction[0].weight, teacher.decoder.feature_extraction[0].weight)
    # PISR's paper configuration: the student is the paper's FSRCNN
    assert srhub.PISRTeacher(scale=4).student().num_parameters() == srhub.FSRCNN(scale=4).num_parameters()


def test_teacher_save_load_roundtrip(tmp_path):
    teacher = _tiny_teacher(scale=2).eval()
    teacher.save_pretrained(tmp_path)
    loaded = srhub.load(tmp_path)
    assert type(loaded) is srhub.PISRTeacher and loaded.config == teacher.config
    gt = torch.rand(1, 3, 8, 6)
    with torch.no_grad():
        assert torch.equal(teacher(gt), loaded(gt))
