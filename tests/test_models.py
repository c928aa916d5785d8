"""Registry-wide checks: every architecture, on tiny configs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import srhub
from srhub.models import ARCHITECTURES, MODELS, WeightsError

# Small configs so the whole registry runs in seconds. Every registered name needs an entry.
TINY: dict[str, dict] = {
    "srcnn": dict(num_features=8, hidden_features=4),
    "fsrcnn": dict(num_features=8, shrink_features=4, num_mapping_layers=2),
    "espcn": dict(num_features=8, hidden_features=4),
    "srresnet": dict(num_features=8, num_blocks=2),
    "ebrn": dict(num_features=8, extraction_features=8, num_blocks=3),
    "srgan-discriminator": dict(num_features=4, input_size=32),  # no scale: a discriminator
    "pisr-teacher": dict(num_features=8, shrink_features=4, num_mapping_layers=2),
    "rrdbnet": dict(num_features=8, num_blocks=1, growth_channels=4),
    "srvggnet-compact": dict(num_features=8, num_convs=2),
    "bsrn": dict(num_features=16, num_blocks=2),
    "bsrn-s": dict(num_features=8, num_blocks=2),
    "esrgan-discriminator": dict(num_features=4),  # no scale; input fixed at 128x128
    "unet-discriminator-sn": dict(num_features=4),  # no scale; any size divisible by 8
    # fixed-width released architectures (1.3 M / 0.55 M parameters): no width arguments to shrink
    "realcugan": dict(),
    "waifu2x-upconv7": dict(),
    "waifu2x-cunet": dict(),
}

# Parameter counts at each paper's (or reference release's) configuration: (constructor kwargs, expected, rel. tol.)
PAPER_PARAMS: dict[str, tuple[dict, int, float]] = {
    # TPAMI paper, 9-5-5 on Y: 57,184 weights (+97 biases)
    "srcnn": (dict(scale=3), 57_281, 0.0),
    # ECCV paper, 56-12-4 on Y: 12,464 weights; + 173 biases + 172 channel-wise PReLU slopes
    "fsrcnn": (dict(scale=3), 12_464 + 173 + 172, 0.0),
    # paper's (5,64)-(3,32)-3 on Y at x3 (no count printed): 1,664 + 18,464 + 2,601 with biases
    "espcn": (dict(scale=3), 22_729, 0.0),
    # BasicSR MSRResNet x4 (16 blocks, 64 features): the released checkpoint's tensor sizes sum to 1,517,571
    "srresnet": (dict(scale=4), 1_517_571, 0.0),
    # 7.63M usually quoted for EBRN x4; a third-party reimplementation prints 7,632,143 (ours + one 12-parameter
    # mean-shift conv); the authors released no code
    "ebrn": (dict(scale=4), 7_630_000, 0.001),
    # Ledig et al. Fig. 4 at 96x96 (no count printed): convs 4,687,232 (BN-followed ones without bias, BN affine
    # counted) + dense 512*6*6 -> 1024: 18,875,392 + dense 1024 -> 1: 1,025
    "srgan-discriminator": (dict(), 23_563_649, 0.0),
    # PISR reference code (lcscc encoder, k=1, FSRCNN 56-12-4 decoder on Y, shared PReLU slopes): 98,728;
    # + 286 for channel-wise PReLU slopes (encoder 124, decoder 172 instead of 3 + 7 shared)
    "pisr-teacher": (dict(scale=4), 98_728 + 286, 0.0),
    # RealESRGAN_x4plus (23 RRDBs, 64 features, growth 32): the ncnn release's weight sizes sum to 16,697,987
    "rrdbnet": (dict(scale=4), 16_697_987, 0.0),
    # realesr-animevideov3 x4 (64 features, 16 convs, PReLU): the ncnn release's weight sizes sum to 621,424
    "srvggnet-compact": (dict(scale=4), 621_424, 0.0),
    # BSRN x4 reference release net_g_BSRN_x4.pth: 352,400 (paper: 352K)
    "bsrn": (dict(scale=4), 352_400, 0.0),
    # BSRN-S reference release net_g_BSRN-S.pth: 156,288 (paper: 156K)
    "bsrn-s": (dict(scale=4), 156_288, 0.0),
    # BasicSR VGGStyleDiscriminator(3, 64) for 128x128 (no count printed in the paper): 14,499,401
    "esrgan-discriminator": (dict(), 14_499_401, 0.0),
    # BasicSR UNetDiscriminatorSN(3, 64), as RealESRGAN_x4plus_netD.pth: 4,376,897 (weight_u/v are buffers)
    "unet-discriminator-sn": (dict(), 4_376_897, 0.0),
    # Real-CUGAN SE x2 (up2x-no-denoise): the ncnn release's weight and bias sizes sum to 1,284,598
    "realcugan": (dict(scale=2), 1_284_598, 0.0),
    # waifu2x upconv_7 (anime, x2): the ncnn release's weight and bias sizes sum to 552,483
    "waifu2x-upconv7": (dict(), 552_483, 0.0),
    # waifu2x cunet x2 (upcunet): the same U-Nets as Real-CUGAN x2, 1,284,598
    "waifu2x-cunet": (dict(scale=2), 1_284_598, 0.0),
}

DISCRIMINATOR_INPUT: dict[str, int] = {"esrgan-discriminator": 128, "unet-discriminator-sn": 32}


def _tiny(name: str, scale: int) -> srhub.SRModel:
    return MODELS[name](scale=scale, **TINY[name])


def _input_for(model: srhub.SRModel, odd: bool = True) -> torch.Tensor:
    multiple = model.size_multiple
    h, w = (13, 11) if odd else (16, 16)
    h, w = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    return torch.rand(1, 3, h, w)


CASES = [(name, scale) for name, cls in MODELS.items() for scale in (2, 3, 4) if scale in cls.supported_scales]


def test_every_model_has_tiny_config_and_paper_count():
    assert set(ARCHITECTURES) <= set(TINY)
    assert set(ARCHITECTURES) <= set(PAPER_PARAMS)


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError) as error:
        srhub.get_model_class("no-such-model")
    assert "srcnn" in str(error.value)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_default_construction_with_scale_keyword(name):
    cls = MODELS[name]
    model = cls(scale=max(cls.supported_scales))
    assert model.scale == max(cls.supported_scales)
    assert model.config["architecture"] == name


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_parameter_count_matches_paper(name):
    kwargs, expected, tolerance = PAPER_PARAMS[name]
    model = srhub.get_model_class(name)(**kwargs)
    count = model.num_parameters()
    assert abs(count - expected) <= tolerance * expected, f"{name}: {count:,} parameters, paper {expected:,}"


@pytest.mark.parametrize("name,scale", CASES)
def test_output_shape(name, scale):
    model = _tiny(name, scale).eval()
    for odd in (True, False):
        lq = _input_for(model, odd)
        with torch.no_grad():
            sr = model(lq)
        assert sr.shape == (1, 3, lq.shape[2] * scale, lq.shape[3] * scale)
        assert torch.isfinite(sr).all()


@pytest.mark.parametrize("name,scale", CASES)
def test_gradients_reach_every_parameter(name, scale):
    model = _tiny(name, scale).train()
    lq = _input_for(model).requires_grad_(True)
    model(lq).square().mean().backward()
    assert lq.grad is not None and lq.grad.abs().sum() > 0
    silent = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None)]
    assert not silent, f"parameters without gradient: {silent}"


def test_bad_constructor_values_raise():
    for name, cls in MODELS.items():
        with pytest.raises(ValueError):
            cls(scale=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_roundtrip(name, tmp_path):
    scale = max(MODELS[name].supported_scales)
    model = _tiny(name, scale).eval()
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in tmp_path.iterdir()}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == name and config["scale"] == scale
    loaded = MODELS[name].from_pretrained(tmp_path)
    assert loaded.config == model.config
    lq = _input_for(model)
    with torch.no_grad():
        assert torch.equal(model(lq), loaded(lq))
    # the generic loader dispatches on config.json
    assert type(srhub.load(tmp_path)) is MODELS[name]


@pytest.fixture
def saved(tmp_path):
    model = _tiny("srcnn", 2)
    model.save_pretrained(tmp_path)
    return tmp_path


def test_missing_key_fails(saved):
    state = load_file(saved / "model.safetensors")
    state.pop("reconstruct.bias")
    save_file(state, saved / "model.safetensors")
    with pytest.raises(WeightsError, match="missing keys.*reconstruct.bias"):
        srhub.SRCNN.from_pretrained(saved)


def test_extra_key_fails(saved):
    state = load_file(saved / "model.safetensors")
    state["extra.weight"] = torch.zeros(3)
    save_file(state, saved / "model.safetensors")
    with pytest.raises(WeightsError, match="unexpected keys.*extra.weight"):
        srhub.SRCNN.from_pretrained(saved)


def test_wrong_shape_fails(saved):
    state = load_file(saved / "model.safetensors")
    state["extract.weight"] = torch.zeros(2, 1, 9, 9)
    save_file(state, saved / "model.safetensors")
    with pytest.raises(WeightsError, match="wrong shapes.*extract.weight"):
        srhub.SRCNN.from_pretrained(saved)


def test_corrupted_file_fails(saved):
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        srhub.SRCNN.from_pretrained(saved)


def test_architecture_mismatch_fails(saved):
    config = json.loads((saved / "config.json").read_text())
    config["architecture"] = "something-else"
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="something-else"):
        srhub.SRCNN.from_pretrained(saved)


def test_non_strict_is_refused(saved):
    with pytest.raises(ValueError, match="strict"):
        srhub.SRCNN.from_pretrained(saved, strict=False)


def test_model_card_is_complete(saved):
    card = (saved / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    for needle in ("library_name: srhub", "pipeline_tag: image-to-image", "license:", "## Usage",
                   "## Evaluation", "## Limitations", "## Citation", "@article"):
        assert needle in card, needle
    assert "More Information Needed" not in card and "{{" not in card


def test_model_card_records_results_and_datasets(tmp_path):
    model = _tiny("srcnn", 4)
    model.save_pretrained(
        tmp_path,
        model_card_kwargs=dict(
            model_name="srcnn-x4",
            datasets=["photos-43"],
            results=[dict(dataset="Set5", scale=4, psnr=30.1, ssim=0.85)],
            training="100 steps of L1 on photos-43",
        ),
    )
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "model-index" in card and "30.1" in card and "photos-43" in card and "100 steps" in card
