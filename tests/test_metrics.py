"""srhub.metrics: agreement with scikit-image on real images, the protocol's steps, bad inputs, LPIPS availability."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from PIL import Image

from srhub import metrics
from srhub.degradations import imresize


def _load(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32) / 255.0).permute(2, 0, 1)


def _y_numpy(array: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr luma on uint8 RGB, as float64 (written independently of srhub.color)."""
    rgb = array.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def peak_signal_noise_ratio(*args, **kwargs) -> float:
    return pytest.importorskip("skimage.metrics").peak_signal_noise_ratio(*args, **kwargs)


def _skimage_ssim(a: np.ndarray, b: np.ndarray, **kwargs) -> float:
    return pytest.importorskip("skimage.metrics").structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, **kwargs
    )


@pytest.fixture(scope="module")
def real_pairs(datasets_root):
    """(gt, sr) uint8 arrays: three Set5 images and their x4 bicubic reconstructions."""
    pairs = []
    for name in ("bird", "butterfly", "head"):
        gt = _load(datasets_root / "benchmark" / "Set5" / f"{name}.png")
        gt = gt[: gt.shape[0] // 4 * 4, : gt.shape[1] // 4 * 4]
        gt_u8 = torch.from_numpy(gt.copy()).permute(2, 0, 1).contiguous()
        sr = imresize(imresize(gt_u8, scale=0.25), scale=4).permute(1, 2, 0).numpy()
        pairs.append((gt, sr))
    return pairs


@pytest.mark.reference
def test_y_channel_agrees_with_scikit_image(real_pairs):
    for gt, sr in real_pairs:
        border = 4
        y_gt = _y_numpy(gt)[border:-border, border:-border]
        y_sr = _y_numpy(sr)[border:-border, border:-border]
        sr_t, gt_t = _to_tensor(sr), _to_tensor(gt)
        ours_psnr = metrics.psnr(sr_t, gt_t, crop_border=border)
        ours_ssim = metrics.ssim(sr_t, gt_t, crop_border=border)
        assert ours_psnr == pytest.approx(peak_signal_noise_ratio(y_gt, y_sr, data_range=255), abs=1e-4)
        assert ours_ssim == pytest.approx(_skimage_ssim(y_gt, y_sr), abs=1e-4)
        assert 20 < ours_psnr < 40 and 0.5 < ours_ssim < 1  # real, non-trivial values


@pytest.mark.reference
def test_rgb_mode_agrees_with_scikit_image(real_pairs):
    gt, sr = real_pairs[0]
    border = 2
    gt_c, sr_c = gt[border:-border, border:-border], sr[border:-border, border:-border]
    sr_t, gt_t = _to_tensor(sr), _to_tensor(gt)
    assert metrics.psnr(sr_t, gt_t, crop_border=border, y_channel=False) == pytest.approx(
        peak_signal_noise_ratio(gt_c, sr_c, data_range=255), abs=1e-4
    )
    assert metrics.ssim(sr_t, gt_t, crop_border=border, y_channel=False) == pytest.approx(
        _skimage_ssim(gt_c.astype(np.float64), sr_c.astype(np.float64), channel_axis=2), abs=1e-4
    )


@pytest.mark.reference
def test_ssim_averages_the_valid_region_not_the_padded_map():
    # torchmetrics' map over windows fully inside the image; its own mean
    # includes windows reaching into its reflected padding and differs.
    from torchmetrics.functional.image import structural_similarity_index_measure

    torch.manual_seed(0)
    gt = torch.rand(2, 3, 40, 36)
    sr = (gt + 0.3 * torch.randn_like(gt)).clamp(0, 1)
    sr8, gt8 = (sr.double() * 255).round(), (gt.double() * 255).round()
    plain, full_map = structural_similarity_index_measure(
        sr8, gt8, data_range=255.0, reduction="none", return_full_image=True
    )
    valid = full_map[..., 5:-5, 5:-5].reshape(2, -1).mean(dim=1).mean().item()
    ours = metrics.ssim(sr, gt, y_channel=False)
    assert ours == pytest.approx(valid, abs=1e-10)
    assert abs(plain.mean().item() - ours) > 1e-4
    assert ours == pytest.approx(
        _skimage_ssim(gt8[0].permute(1, 2, 0).numpy(), sr8[0].permute(1, 2, 0).numpy(), channel_axis=2) / 2
        + _skimage_ssim(gt8[1].permute(1, 2, 0).numpy(), sr8[1].permute(1, 2, 0).numpy(), channel_axis=2) / 2,
        abs=1e-6,
    )


def test_quantisation_and_batches():
    torch.manual_seed(0)
    gt = (torch.rand(2, 3, 32, 32) * 255).round() / 255
    almost = gt + 0.3 / 255  # rounds back to gt
    assert metrics.psnr(almost, gt) == math.inf
    assert metrics.ssim(almost, gt) == pytest.approx(1.0)
    assert math.isfinite(metrics.psnr(almost, gt, quantize=False))
    # uint8 tensors are taken as they are.
    gt8 = (gt * 255).round().to(torch.uint8)
    noisy = (gt + 0.02 * torch.randn_like(gt)).clamp(0, 1)
    assert metrics.psnr(noisy, gt8.float() / 255) == pytest.approx(metrics.psnr(noisy, gt), abs=1e-9)
    # A batch gives the mean of per-image values, not the PSNR of pooled pixels.
    per_image = [metrics.psnr(noisy[i], gt[i]) for i in range(2)]
    assert metrics.psnr(noisy, gt) == pytest.approx(sum(per_image) / 2, abs=1e-9)
    # crop_border removes pixels: damage confined to the border disappears.
    damaged = gt.clone()
    damaged[..., :3, :] = 0
    assert metrics.psnr(damaged, gt, crop_border=3) == math.inf
    assert metrics.psnr(damaged, gt, crop_border=2) < 40


def test_one_channel_input_is_taken_as_luma():
    torch.manual_seed(0)
    gt = torch.rand(1, 1, 24, 24)
    sr = (gt + 0.03 * torch.randn_like(gt)).clamp(0, 1)
    a, b = ((image.double() * 255).round()[0, 0].numpy() for image in (sr, gt))
    # (torchmetrics keeps data_range as a float32 tensor: agreement to ~1e-6 dB, not to float64 precision)
    assert metrics.psnr(sr, gt) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-5)
    assert metrics.psnr(sr, gt) != pytest.approx(metrics.psnr(sr.expand(1, 3, 24, 24), gt.expand(1, 3, 24, 24)), abs=0.5)


def test_evaluate_and_ms_ssim(real_pairs):
    gt, sr = real_pairs[0]  # bird, 288 x 288
    values = metrics.evaluate(_to_tensor(sr), _to_tensor(gt), crop_border=4, metrics=("psnr", "ssim", "ms_ssim"))
    assert set(values) == {"psnr", "ssim", "ms_ssim"}
    assert values["psnr"] == pytest.approx(metrics.psnr(_to_tensor(sr), _to_tensor(gt), crop_border=4))
    assert values["ssim"] < values["ms_ssim"] < 1.0
    assert metrics.ms_ssim(_to_tensor(gt), _to_tensor(gt)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="176"):
        metrics.ms_ssim(torch.rand(3, 100, 100), torch.rand(3, 100, 100))
    with pytest.raises(ValueError, match="unknown metrics"):
        metrics.evaluate(_to_tensor(sr), _to_tensor(gt), metrics=("fid",))


@pytest.mark.parametrize("function", [metrics.psnr, metrics.ssim, metrics.ms_ssim])
def test_bad_inputs_raise_clear_errors(function):
    good = torch.rand(3, 32, 32)
    with pytest.raises(ValueError, match="different sizes"):
        function(torch.rand(3, 32, 30), good)
    with pytest.raises(ValueError, match="batch or channels"):
        function(torch.rand(1, 32, 32), good)
    with pytest.raises(ValueError, match="dimensions"):
        function(torch.rand(1, 3, 32, 32), good)
    with pytest.raises(ValueError, match="empty"):
        function(torch.rand(3, 0, 32), torch.rand(3, 0, 32))
    nan = good.clone()
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        function(nan, good)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        function(torch.rand(32, 32), torch.rand(32, 32))
    with pytest.raises(ValueError, match="channels"):
        function(torch.rand(4, 32, 32), torch.rand(4, 32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        function(np.zeros((3, 32, 32)), good)
    with pytest.raises(ValueError, match="crop_border"):
        function(good, good, crop_border=16)
    with pytest.raises(ValueError, match="crop_border"):
        function(good, good, crop_border=-1)


def test_ssim_needs_a_full_window():
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(torch.rand(3, 20, 20), torch.rand(3, 20, 20), crop_border=5)


@pytest.fixture()
def no_backbones(tmp_path, monkeypatch):
    """An empty torch hub cache and no weight files named in the environment."""
    for name in ("ALEXNET", "VGG16", "SQUEEZENET1_1"):
        monkeypatch.delenv(f"SRHUB_{name}_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    metrics._lpips_model.cache_clear()
    yield tmp_path
    metrics._lpips_model.cache_clear()


def test_lpips_reports_unavailable_instead_of_a_number(no_backbones):
    image = torch.rand(3, 32, 32)
    with pytest.raises(metrics.MetricUnavailable, match="alexnet"):
        metrics.lpips(image, image)
    with pytest.raises(metrics.MetricUnavailable):
        metrics.evaluate(image, image, metrics=("psnr", "lpips"))
    status = metrics.available_metrics()
    assert status["psnr"] is None and status["ssim"] is None
    assert "SRHUB_ALEXNET_WEIGHTS" in status["lpips"]
    with pytest.raises(ValueError, match="backbone"):
        metrics.lpips_unavailable_reason("resnet")


def _backbone(name):
    from srhub import perceptual

    if name == "alexnet":
        return perceptual.AlexNetFeatures()
    if name == "squeezenet1_1":
        return perceptual.SqueezeNetFeatures()
    return perceptual.VGGFeatures(variant="vgg16")


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_lpips_without_torchvision(net, no_backbones, monkeypatch):
    """srhub's backbones take torchvision's key layout; with a backbone file (random weights here) and the
    heads torchmetrics ships, LPIPS is offered: 0 for equal images, larger for larger distortions."""
    from safetensors.torch import save_file

    from srhub import perceptual

    backbone = perceptual.LPIPS_NETS[net][0]
    torchvision_like = {**_backbone(backbone).state_dict(), "classifier.1.weight": torch.zeros(2, 2)}
    path = no_backbones / f"{backbone}.safetensors"
    save_file({k: v.contiguous() for k, v in torchvision_like.items()}, str(path))
    monkeypatch.setenv(f"SRHUB_{backbone.upper()}_WEIGHTS", str(path))
    assert metrics.lpips_unavailable_reason(net) is None
    torch.manual_seed(0)
    gt = torch.rand(3, 64, 64)
    assert metrics.lpips(gt, gt, net=net) == 0.0
    small = metrics.lpips((gt + 0.02 * torch.randn_like(gt)).clamp(0, 1), gt, net=net)
    large = metrics.lpips((gt + 0.3 * torch.randn_like(gt)).clamp(0, 1), gt, net=net)
    assert 0 < small < large
    save_file({"features.0.weight": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="does not hold"):
        perceptual.LPIPS(net=net, backbone_weights=path)


@pytest.mark.skipif(importlib.util.find_spec("lpips") is None, reason="the lpips package is not installed")
def test_lpips_matches_the_lpips_package(monkeypatch):
    """Same numbers as ``lpips.LPIPS`` (0.1.x) for one backbone's weights: torchvision, which the package
    imports, is replaced by srhub's definitions, so this checks the heads, scaling, stages and normalisation."""
    import sys
    import types

    from srhub import perceptual

    built = {}

    def stub(name):
        def build(pretrained=False, **kwargs):
            torch.manual_seed(5)
            built[name] = _backbone(name)
            return built[name]

        return build

    models = types.ModuleType("torchvision.models")
    for name in ("alexnet", "vgg16", "squeezenet1_1"):
        setattr(models, name, stub(name))
    torchvision = types.ModuleType("torchvision")
    torchvision.models = models
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    import lpips as reference_package

    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    for net, (backbone, _, _) in perceptual.LPIPS_NETS.items():
        reference = reference_package.LPIPS(net=net, verbose=False)
        ours = perceptual.LPIPS(net=net, pretrained=False)
        expected = ours.backbone.state_dict()
        ours.backbone.load_state_dict({k: v for k, v in built[backbone].state_dict().items() if k in expected})
        ours.load_heads(torch.load(perceptual.lpips_heads_file(net), map_location="cpu", weights_only=True))
        torch.testing.assert_close(ours(x, y), reference(x, y, normalize=True).flatten(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 150, 97), (2, 3, 75, 140), (1, 1, 11, 11)])
def test_ssim_strips_equal_torchmetrics_valid_map(shape):
    # the strip-by-strip separable SSIM against torchmetrics' float64 full map without its margin,
    # on sizes whose valid rows do not divide into whole strips
    from torchmetrics.functional.image import structural_similarity_index_measure

    torch.manual_seed(1)
    gt = (torch.rand(shape, dtype=torch.float64) * 255).round()
    sr = (gt + 40 * torch.randn_like(gt)).clamp(0, 255).round()
    sr[..., :20, :20] = gt[..., :20, :20] = 128.0  # a flat patch, where E[x^2] - E[x]^2 cancels
    _, full_map = structural_similarity_index_measure(
        sr, gt, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=255.0, return_full_image=True
    )
    expected = full_map[..., 5:-5, 5:-5].reshape(shape[0], -1).mean(dim=1).mean().item()
    assert metrics._ssim(sr, gt) == pytest.approx(expected, abs=1e-12)
    assert metrics._psnr(sr, gt) == pytest.approx(
        (10 * torch.log10(255.0**2 / ((sr - gt) ** 2).mean(dim=(1, 2, 3)))).mean().item(), abs=1e-12
    )
