"""MATLAB-compatible bicubic imresize against values worked out by hand from its definition.

Cubic kernel (a = -0.5) values used below:
    k(0.25) = 1.5/64 - 2.5/16 + 1           =  0.8671875
    k(0.75) = 1.5*27/64 - 2.5*9/16 + 1      =  0.2265625
    k(1.25) = -0.5*125/64 + 2.5*25/16 - 5 + 2 = -0.0703125
    k(1.75) = -0.5*343/64 + 2.5*49/16 - 7 + 2 = -0.0234375
"""

from __future__ import annotations

import pytest
import torch

from srhub.degradations import imresize

K025, K075, K125, K175 = 0.8671875, 0.2265625, -0.0703125, -0.0234375


def _row(values) -> torch.Tensor:
    """A (1, 1, W) float64 image holding one row."""
    return torch.tensor(values, dtype=torch.float64).view(1, 1, -1)


def test_downscale_by_two_matches_hand_computation():
    # x (1-based) = 1..16, squared so that the weights' asymmetry would show.
    x = [float(i * i) for i in range(1, 17)]
    out = imresize(_row(x), scale=0.5)[0, 0]
    assert out.shape == (8,)
    # Antialiased kernel h(d) = 0.5 k(d / 2), width 8. Output j sits at u = 2j - 0.5;
    # the 8 non-zero taps have d = u - i = +-0.5, +-1.5, +-2.5, +-3.5 -> k(0.25), k(0.75), k(1.25), k(1.75),
    # which sum to 2 over the 8 taps, so the normalised weights are k(.)/2:
    w = [K175 / 2, K125 / 2, K075 / 2, K025 / 2, K025 / 2, K075 / 2, K125 / 2, K175 / 2]
    assert w == [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875]
    # j = 4 (interior): u = 7.5, taps i = 4..11.
    expected_interior = sum(wk * x[i - 1] for wk, i in zip(w, range(4, 12)))
    # j = 1 (border): u = 1.5, taps i = -2..5; mirrored (MATLAB's symmetric padding): -2 -> 3, -1 -> 2, 0 -> 1.
    expected_border = sum(wk * x[i - 1] for wk, i in zip(w, [3, 2, 1, 1, 2, 3, 4, 5]))
    # j = 8 (border at the end): u = 15.5, taps i = 12..19; 17 -> 16, 18 -> 15, 19 -> 14.
    expected_end = sum(wk * x[i - 1] for wk, i in zip(w, [12, 13, 14, 15, 16, 16, 15, 14]))
    assert out[3].item() == pytest.approx(expected_interior, abs=1e-10)
    assert out[0].item() == pytest.approx(expected_border, abs=1e-10)
    assert out[7].item() == pytest.approx(expected_end, abs=1e-10)
    assert out[0].item() == pytest.approx(2.19921875, abs=1e-10)  # the same number, written out


def test_upscale_by_two_matches_hand_computation():
    x = [10.0, 40.0, 20.0, 90.0]
    out = imresize(_row(x), scale=2)[0, 0]
    assert out.shape == (8,)
    # No antialiasing when enlarging: kernel k, width 4. Output j sits at u = j/2 + 0.25.
    # j = 1: u = 0.75, taps i = -1..2 with d = 1.75, 0.75, -0.25, -1.25; -1 -> 2 and 0 -> 1 (mirrored).
    expected_border = K175 * x[1] + K075 * x[0] + K025 * x[0] + K125 * x[1]
    assert expected_border == pytest.approx(1.09375 * 10 - 0.09375 * 40)
    # j = 4: u = 2.25, taps i = 1..4 with d = 1.25, 0.25, -0.75, -1.75.
    expected_interior = K125 * x[0] + K025 * x[1] + K075 * x[2] + K175 * x[3]
    assert out[0].item() == pytest.approx(expected_border, abs=1e-10)
    assert out[3].item() == pytest.approx(expected_interior, abs=1e-10)


def test_two_dimensions_are_separable_and_batched():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 12, 9, dtype=torch.float64)
    out = imresize(image, scale=1 / 3)
    assert out.shape == (2, 3, 4, 3)
    # A vertical 1-D resize of each column, then a horizontal one of each row, gives the same.
    columns = imresize(image.transpose(-1, -2).reshape(-1, 1, 12), size=(1, 4))  # (N, 1, 4)
    assert columns.shape[-1] == 4
    steps = columns.reshape(2, 3, 9, 4).transpose(-1, -2)
    rows = imresize(steps.reshape(-1, 1, 9), size=(1, 3)).reshape(2, 3, 4, 3)
    torch.testing.assert_close(out, rows, atol=1e-12, rtol=0)
    # (C, H, W) input works too and equals the batched result.
    torch.testing.assert_close(imresize(image[1], scale=1 / 3), out[1])


def test_output_size_identity_and_constant():
    image = torch.rand(3, 10, 7)
    assert imresize(image, scale=1 / 3).shape == (3, 4, 3)  # ceil(10/3), ceil(7/3)
    assert imresize(image, scale=1.5).shape == (3, 15, 11)
    assert imresize(image, size=(5, 20)).shape == (3, 5, 20)
    torch.testing.assert_close(imresize(image, scale=1), image)  # k(0) = 1, k(+-1) = k(+-2) = 0
    constant = torch.full((3, 9, 9), 0.3)
    torch.testing.assert_close(imresize(constant, scale=0.25), torch.full((3, 3, 3), 0.3))
    assert imresize(image.to(torch.float32), scale=0.5).dtype == torch.float32


def test_uint8_rounds_like_matlab():
    torch.manual_seed(1)
    image = (torch.rand(3, 16, 16) * 255).round().to(torch.uint8)
    out = imresize(image, scale=0.5)
    assert out.dtype == torch.uint8
    # Rounded after each dimension: equal to the float path with rounding in between.
    step = imresize(image.double(), size=(8, 16)).round().clamp(0, 255)
    expected = imresize(step, size=(8, 8)).round().clamp(0, 255)
    assert torch.equal(out, expected.to(torch.uint8))
    # Overshoot of the negative lobes is clamped, not wrapped.
    edge = torch.zeros(1, 8, 8, dtype=torch.uint8)
    edge[:, :, 4:] = 255
    up = imresize(edge, scale=2)
    assert up.min() == 0 and up.max() == 255


def test_bad_inputs():
    with pytest.raises(ValueError, match="exactly one"):
        imresize(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="exactly one"):
        imresize(torch.rand(3, 8, 8), scale=2, size=(4, 4))
    with pytest.raises(ValueError, match="positive"):
        imresize(torch.rand(3, 8, 8), scale=0)
    with pytest.raises(ValueError, match="shape"):
        imresize(torch.rand(8, 8), scale=2)
    with pytest.raises(ValueError, match="empty"):
        imresize(torch.rand(3, 0, 8), scale=2)
    with pytest.raises(ValueError, match="size"):
        imresize(torch.rand(3, 8, 8), size=(4, 0))
    with pytest.raises(ValueError, match="float or uint8"):
        imresize(torch.ones(3, 8, 8, dtype=torch.int32), scale=2)
