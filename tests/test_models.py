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
}

# Parameter counts at each paper's (or reference release's) configuration: (constructor kwargs, expected, rel. tol.)
PAPER_PARAMS: dict[str, tuple[dict, int, float]] = {
    # TPAMI paper, 9-5-5 on Y: 57,184 weights (+97 biases)
    "srcnn": (dict(scale=3), 57_281, 0.0),
}

DISCRIMINATOR_INPUT: dict[str, int] = {}


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
    card = (saved / "README.md").read_text()
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
    card = (tmp_path / "README.md").read_text()
    assert "model-index" in card and "30.1" in card and "photos-43" in card and "100 steps" in card
