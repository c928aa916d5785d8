"""srhub.losses: VGG19 perceptual loss (random weights in a temp file), GAN losses, PISR losses."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from srhub.losses import (
    VGG19_LAYERS,
    PerceptualLoss,
    VGG19Features,
    VGGWeightsMissing,
    VIDLoss,
    gan_loss,
    generator_adversarial_loss,
    pisr_teacher_loss,
    ragan_discriminator_loss,
    ragan_generator_loss,
)
from srhub.models.base import WeightsError


@pytest.fixture()
def no_default_vgg(tmp_path, monkeypatch):
    """No environment variable, an empty torch hub cache and no downloads."""
    monkeypatch.delenv("SRHUB_VGG19_WEIGHTS", raising=False)
    monkeypatch.setenv("SRHUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture()
def vgg_file(tmp_path):
    torch.manual_seed(1)
    state = {k: v.contiguous() for k, v in VGG19Features().state_dict().items()}
    path = tmp_path / "vgg19.safetensors"
    save_file(state, str(path))
    return path, state


def test_vgg19_layout_matches_torchvision_indices():
    names = VGG19_LAYERS
    assert len(names) == 37 and names[0] == "conv1_1" and names[34] == "conv5_4" and names[36] == "pool5"
    keys = list(VGG19Features().state_dict())
    conv_indices = sorted({int(k.split(".")[1]) for k in keys})
    assert conv_indices == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert all(k.startswith("features.") for k in keys)


def test_perceptual_loss_from_safetensors(vgg_file, no_default_vgg):
    path, state = vgg_file
    loss_fn = PerceptualLoss(layer_weights={"conv3_4": 1.0}, weights=path)
    assert torch.equal(loss_fn.vgg.features[0].weight, state["features.0.weight"])
    assert len(loss_fn.vgg.features) == VGG19_LAYERS.index("conv3_4") + 1  # cut after the deepest layer
    gt = torch.rand(1, 3, 24, 24)
    assert loss_fn(gt.clone(), gt).item() == 0.0
    sr = (gt + 0.1 * torch.randn_like(gt)).requires_grad_(True)
    loss = loss_fn(sr, gt)
    assert loss.item() > 0
    loss.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.parameters())


def test_before_and_after_activation_differ(vgg_file, no_default_vgg):
    path, _ = vgg_file
    gt, sr = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    conv = PerceptualLoss(layer_weights={"conv2_2": 1.0}, weights=path)(sr, gt)
    relu = PerceptualLoss(layer_weights={"relu2_2": 1.0}, weights=path)(sr, gt)
    both = PerceptualLoss(layer_weights={"conv2_2": 0.5, "relu2_2": 2.0}, weights=path)(sr, gt)
    assert not torch.allclose(conv, relu)
    torch.testing.assert_close(both, 0.5 * conv + 2.0 * relu)


def test_weights_from_environment_and_torchvision_cache(vgg_file, no_default_vgg, monkeypatch):
    path, state = vgg_file
    monkeypatch.setenv("SRHUB_VGG19_WEIGHTS", str(path))
    assert PerceptualLoss(layer_weights={"conv1_2": 1.0}).weights_source == str(path)
    monkeypatch.delenv("SRHUB_VGG19_WEIGHTS")
    cache = no_default_vgg / "checkpoints"
    cache.mkdir(parents=True)
    torchvision_like = {**state, "classifier.0.weight": torch.zeros(2, 2)}  # torchvision's file has more
    torch.save(torchvision_like, cache / "vgg19-dcbb9e9d.pth")
    loss_fn = PerceptualLoss(layer_weights={"conv1_2": 1.0})
    assert torch.equal(loss_fn.vgg.features[2].weight, state["features.2.weight"])


def test_missing_weights_say_how_to_fix(no_default_vgg, tmp_path):
    with pytest.raises(VGGWeightsMissing) as error:
        PerceptualLoss(layer_weights={"conv5_4": 1.0})
    message = str(error.value)
    assert "--no-perceptual" in message and "SRHUB_VGG19_WEIGHTS" in message
    with pytest.raises(VGGWeightsMissing):
        PerceptualLoss(layer_weights={"conv5_4": 1.0}, weights=tmp_path / "nope.safetensors")


def test_wrong_weights_file_and_bad_arguments(tmp_path, no_default_vgg):
    bad = tmp_path / "bad.safetensors"
    save_file({"features.0.weight": torch.zeros(1)}, str(bad))
    with pytest.raises(WeightsError):
        PerceptualLoss(layer_weights={"conv1_1": 1.0}, weights=bad)
    with pytest.raises(ValueError, match="unknown VGG19 layers"):
        PerceptualLoss(layer_weights={"conv6_1": 1.0}, weights=bad)
    with pytest.raises(ValueError, match="criterion"):
        PerceptualLoss(layer_weights={"conv1_1": 1.0}, weights=bad, criterion="l3")


def test_gan_loss_values():
    zeros = torch.zeros(4, 1)
    assert gan_loss(zeros, target_is_real=True).item() == pytest.approx(math.log(2))
    assert gan_loss(torch.full((2, 1), 20.0), target_is_real=True).item() < 1e-6
    assert gan_loss(torch.full((2, 1), 20.0), target_is_real=False).item() > 19


def test_ragan_is_symmetric_and_prefers_realer_reals():
    real, fake = torch.randn(8, 1), torch.randn(8, 1)
    torch.testing.assert_close(ragan_generator_loss(real, fake), ragan_discriminator_loss(fake, real))
    good = ragan_discriminator_loss(torch.full((4, 1), 3.0), torch.full((4, 1), -3.0))
    bad = ragan_discriminator_loss(torch.full((4, 1), -3.0), torch.full((4, 1), 3.0))
    assert good < bad
    # the generator's loss reaches the fake logits, not the (detached) real ones
    real.requires_grad_(True)
    fake.requires_grad_(True)
    ragan_generator_loss(real, fake).backward()
    assert real.grad is None and fake.grad.abs().sum() > 0


@pytest.mark.parametrize("relativistic", [False, True])
def test_generator_adversarial_loss_freezes_discriminator(relativistic):
    discriminator = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    sr = torch.rand(2, 3, 8, 8, requires_grad=True)
    loss = generator_adversarial_loss(discriminator, torch.rand(2, 3, 8, 8), sr, relativistic=relativistic)
    loss.backward()
    assert sr.grad.abs().sum() > 0
    assert all(p.grad is None and p.requires_grad for p in discriminator.parameters())


def test_pisr_teacher_loss():
    gt, lq = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 4, 4)
    total, parts = pisr_teacher_loss(gt + 0.5, gt, lq + 0.25, lq, imitation_weight=0.1)
    assert parts["reconstruction"].item() == pytest.approx(0.5)
    assert parts["imitation"].item() == pytest.approx(0.25)
    assert total.item() == pytest.approx(0.5 + 0.025)
    with pytest.raises(ValueError, match="same shape"):
        pisr_teacher_loss(gt, gt, torch.rand(2, 1, 3, 3), lq)


@pytest.mark.parametrize("pdf", ["gaussian", "laplace"])
def test_vid_loss_is_the_negative_log_likelihood(pdf):
    vid = VIDLoss(channels=4, pdf=pdf)
    student, teacher = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    mu = vid.mean(student)
    v = F.softplus(vid.variance(student)) * vid.variance_scale + vid.eps
    if pdf == "gaussian":
        expected = -torch.distributions.Normal(mu, v.sqrt()).log_prob(teacher).mean()
    else:
        expected = -torch.distributions.Laplace(mu, v).log_prob(teacher).mean()
    torch.testing.assert_close(vid(student, teacher), expected)


def test_vid_loss_trains_and_checks_shapes():
    torch.manual_seed(0)
    vid = VIDLoss(channels=3)
    student = torch.randn(4, 3, 6, 6)
    teacher = 2 * student + 0.5  # learnable relation
    optimizer = torch.optim.Adam(vid.parameters(), lr=1e-2)
    first = vid(student, teacher).item()
    for _ in range(60):
        loss = vid(student, teacher)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first
    with pytest.raises(ValueError, match="differ"):
        vid(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="pdf"):
        VIDLoss(channels=3, pdf="cauchy")


def test_missing_weights_are_downloaded_with_the_hash_check(vgg_file, no_default_vgg, monkeypatch):
    """Without a file, torchvision's published VGG19 is fetched (hash-checked) into torch's hub cache."""
    path, state = vgg_file
    calls = []

    def fake_download(url, **kwargs):
        calls.append((url, kwargs))
        return {**state, "classifier.0.weight": torch.zeros(2, 2)}

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    monkeypatch.setenv("SRHUB_OFFLINE", "0")
    loss_fn = PerceptualLoss(layer_weights={"conv1_2": 1.0})
    assert torch.equal(loss_fn.vgg.features[2].weight, state["features.2.weight"])
    ((url, kwargs),) = calls
    assert url == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    assert kwargs["check_hash"] is True and kwargs["weights_only"] is True
    assert loss_fn.weights_source == str(no_default_vgg / "checkpoints" / "vgg19-dcbb9e9d.pth")

    def offline(url, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(VGGWeightsMissing, match="no network"):
        PerceptualLoss(layer_weights={"conv1_2": 1.0})
