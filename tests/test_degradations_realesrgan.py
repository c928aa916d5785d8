"""Real-ESRGAN training degradations in srhub.degradations: kernels, noise, JPEG, USM, the pipeline."""

from __future__ import annotations

import math

import pytest
import torch

from srhub.degradations import (
    BlurSettings,
    RealESRGANDegradation,
    add_gaussian_noise,
    add_poisson_noise,
    bivariate_kernel,
    filter2d,
    jpeg_compress,
    random_blur_kernel,
    realesrgan_degrade,
    sinc_kernel,
    usm_sharp,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_isotropic_gaussian_is_separable_and_normalised():
    kernel = bivariate_kernel(21, 2.0, 2.0, 0.0)
    r = torch.arange(21, dtype=torch.float64) - 10
    g = torch.exp(-(r**2) / (2 * 4.0))
    expected = g[:, None] * g[None, :]
    torch.testing.assert_close(kernel, expected / expected.sum())


def test_anisotropic_rotation_by_quarter_turn_transposes():
    a = bivariate_kernel(15, 3.0, 1.0, 0.0)
    b = bivariate_kernel(15, 3.0, 1.0, math.pi / 2)
    torch.testing.assert_close(a, b.T)
    # sigma_x > sigma_y: elongated along the width
    assert a[7, 0] > 10 * a[0, 7]


def test_generalized_and_plateau_shapes():
    gaussian = bivariate_kernel(21, 2.0, 2.0, 0.0)
    torch.testing.assert_close(bivariate_kernel(21, 2.0, 2.0, 0.0, shape="generalized", beta=1.0), gaussian)
    heavy = bivariate_kernel(21, 2.0, 2.0, 0.0, shape="generalized", beta=0.5)
    assert heavy[10, 0] > gaussian[10, 0]  # beta < 1: heavier tails
    plateau = bivariate_kernel(21, 2.0, 2.0, 0.0, shape="plateau", beta=2.0)
    assert plateau.sum().item() == pytest.approx(1.0) and plateau.argmax().item() == 10 * 21 + 10
    with pytest.raises(ValueError):
        bivariate_kernel(20, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        bivariate_kernel(21, 0.0, 1.0, 0.0)


def test_sinc_kernel():
    kernel = sinc_kernel(13, math.pi / 2, pad_to=21)
    assert kernel.shape == (21, 21)
    assert kernel.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(kernel, kernel.T)
    torch.testing.assert_close(kernel, kernel.flip(0))
    assert kernel[:4].abs().sum() == 0  # zero padding
    assert kernel.min() < 0  # ringing lobes
    assert kernel.argmax().item() == 10 * 21 + 10


def test_random_kernels_are_seeded_and_valid():
    settings = BlurSettings()
    sizes = (7, 9, 11, 13, 15, 17, 19, 21)
    first = [random_blur_kernel(_gen(s), settings, kernel_sizes=sizes, max_size=21) for s in range(20)]
    again = [random_blur_kernel(_gen(s), settings, kernel_sizes=sizes, max_size=21) for s in range(20)]
    for a, b in zip(first, again):
        assert a.shape == (21, 21) and torch.equal(a, b)
        assert a.sum().item() == pytest.approx(1.0)
    assert len({tuple(k.flatten().tolist()) for k in first}) == 20


def test_filter2d_identity_and_per_image_kernels():
    images = torch.rand(2, 3, 16, 16)
    pulse = torch.zeros(2, 5, 5, dtype=torch.float64)
    pulse[:, 2, 2] = 1
    torch.testing.assert_close(filter2d(images, pulse), images)
    box = pulse.clone()
    box[1] = 1 / 25
    out = filter2d(images, box)
    torch.testing.assert_close(out[0], images[0])
    assert out[1].std() < images[1].std()


def test_gaussian_noise_strength_and_gray():
    flat = torch.full((4, 3, 64, 64), 0.5)
    noisy = add_gaussian_noise(flat, _gen(), sigma_range=(10.0, 10.0), gray_probability=0.0)
    assert (noisy - flat).std().item() == pytest.approx(10 / 255, rel=0.05)
    gray = add_gaussian_noise(flat, _gen(), sigma_range=(10.0, 10.0), gray_probability=1.0)
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    assert not torch.equal(noisy[:, 0], noisy[:, 1])


def test_poisson_noise_scales_and_gray():
    images = torch.rand(2, 3, 32, 32)
    weak = add_poisson_noise(images, _gen(), scale_range=(0.1, 0.1), gray_probability=0.0)
    strong = add_poisson_noise(images, _gen(), scale_range=(2.0, 2.0), gray_probability=0.0)
    assert (weak - images).abs().mean() < (strong - images).abs().mean()
    gray = add_poisson_noise(torch.full((1, 3, 32, 32), 0.4), _gen(), scale_range=(1.0, 1.0), gray_probability=1.0)
    torch.testing.assert_close(gray[:, 0], gray[:, 2])
    assert 0 <= strong.min() and strong.max() <= 1


def test_jpeg_quality_orders_error():
    x = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(2, 3, 32, 32).clone()
    x[:, :, 8:24, 8:24] = torch.rand(2, 3, 16, 16)
    high = jpeg_compress(x, torch.tensor([95.0, 95.0]))
    low = jpeg_compress(x, torch.tensor([10.0, 10.0]))
    assert high.shape == x.shape and high.dtype == x.dtype
    assert (high - x).abs().mean() < (low - x).abs().mean()


def test_usm_sharp():
    flat = torch.full((1, 3, 60, 60), 0.3)
    torch.testing.assert_close(usm_sharp(flat), flat)
    edge = torch.zeros(1, 3, 60, 60)
    edge[..., 30:] = 0.8
    edge[..., :30] = 0.2
    sharp = usm_sharp(edge)
    assert sharp[..., 31].mean() > 0.8 and sharp[..., 28].mean() < 0.2  # overshoot on both sides
    assert sharp.min() >= 0 and sharp.max() <= 1
    assert usm_sharp(torch.rand(2, 3, 16, 16)).shape == (2, 3, 16, 16)  # smaller than the kernel


def test_pipeline_shapes_range_quantisation_and_seeding():
    gt = torch.rand(3, 3, 64, 64)
    lq = realesrgan_degrade(gt, scale=4, generator=_gen(7))
    assert lq.shape == (3, 3, 16, 16)
    assert lq.min() >= 0 and lq.max() <= 1
    torch.testing.assert_close(lq * 255, (lq * 255).round())
    torch.manual_seed(123)  # the global RNG is never used ...
    state = torch.get_rng_state()
    again = realesrgan_degrade(gt, scale=4, generator=_gen(7))
    assert torch.equal(torch.get_rng_state(), state)  # ... nor advanced
    assert torch.equal(lq, again)
    assert not torch.equal(lq, realesrgan_degrade(gt, scale=4, generator=_gen(8)))
    # it degrades: far from a plain bicubic downscale on average
    bicubic = torch.nn.functional.interpolate(gt, size=(16, 16), mode="area")
    assert (lq - bicubic).abs().mean() > 0.01


def test_pipeline_settings_and_errors():
    gt = torch.rand(1, 3, 32, 32)
    clean = RealESRGANDegradation(
        blur1=BlurSettings(sigma_range=(0.2, 0.2), sinc_probability=0.0),
        blur2=BlurSettings(sigma_range=(0.2, 0.2), sinc_probability=0.0),
        final_sinc_probability=0.0,
        resize_probabilities=(0.0, 0.0, 1.0),
        resize_probabilities2=(0.0, 0.0, 1.0),
        gaussian_noise_probability=1.0,
        noise_range=(0.0, 0.0),
        gaussian_noise_probability2=1.0,
        noise_range2=(0.0, 0.0),
        jpeg_range=(100.0, 100.0),
        jpeg_range2=(100.0, 100.0),
    )
    lq = realesrgan_degrade(gt, scale=2, generator=_gen(), settings=clean)
    assert lq.shape == (1, 3, 16, 16)
    noisy = realesrgan_degrade(gt, scale=2, generator=_gen())
    reference = torch.nn.functional.interpolate(gt, size=(16, 16), mode="area")
    assert (lq - reference).abs().mean() < (noisy - reference).abs().mean()
    with pytest.raises(ValueError, match="multiple"):
        realesrgan_degrade(torch.rand(1, 3, 30, 30), scale=4, generator=_gen())
    with pytest.raises(ValueError):
        realesrgan_degrade(torch.rand(3, 32, 32), scale=4, generator=_gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pipeline_on_cuda_matches_seeding():
    gt = torch.rand(2, 3, 32, 32, device="cuda")
    a = realesrgan_degrade(gt, scale=4, generator=torch.Generator("cuda").manual_seed(0))
    b = realesrgan_degrade(gt, scale=4, generator=torch.Generator("cuda").manual_seed(0))
    assert a.device.type == "cuda" and torch.equal(a, b)
