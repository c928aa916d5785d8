"""Inference: seam-free tiling, OOM back-off, precision fallback, threads, input kinds, outscale, CLI."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn
from torch.nn import functional as F

import srhub
from srhub.cli import main as cli_main
from srhub.inference import (
    TileOutOfMemory,
    _axis_weights,
    _prepared,
    resolve_dtype,
    tile_layout,
    tiled_forward,
    upscale,
    upscale_files,
)
from srhub.io import ImageTooSmall, read_image
from srhub.models.rrdbnet import RRDBNet
from srhub.models.srvgg import SRVGGNetCompact


class Bicubic(nn.Module):
    """A stand-in generator: plain bicubic upsampling (tiny receptive field, no weights)."""

    scale = 2
    size_multiple = 1

    def forward(self, lq):
        return F.interpolate(lq, scale_factor=self.scale, mode="bicubic", align_corners=False)


def _set5_crop(datasets_root, height=97, width=83) -> torch.Tensor:
    """A real image: a crop of Set5 'baby' whose sides no tile size below divides."""
    pil = PILImage.open(datasets_root / "benchmark" / "Set5" / "baby.png").convert("RGB")
    array = np.asarray(pil)[100 : 100 + height, 120 : 120 + width]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float() / 255


# ---------------------------------------------------------------------- tiling
@pytest.mark.parametrize("length,tile,overlap,multiple", [(97, 32, 8, 1), (83, 40, 10, 1), (98, 48, 12, 2), (100, 40, 16, 4), (30, 64, 8, 1)])
def test_tile_layout_covers_with_overlap(length, tile, overlap, multiple):
    size, starts = tile_layout(length, tile, overlap, multiple)
    assert starts[0] == 0 and starts[-1] + size == length
    assert size <= tile + multiple - 1 and size % multiple == 0 and all(s % multiple == 0 for s in starts)
    for a, b in itertools.pairwise(starts):
        assert a + size - b >= overlap  # neighbours overlap by at least `overlap`


def test_blending_weights_sum_to_one():
    size, starts = tile_layout(97, 32, 8)
    total = torch.zeros(97 * 3)
    for start, weight in zip(starts, _axis_weights(starts, size, 3)):
        total[start * 3 : (start + size) * 3] += weight
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-5, rtol=0)


TILED_MODELS = {
    "rrdbnet-x4": lambda: RRDBNet(scale=4, num_features=16, num_blocks=2, growth_channels=8),
    "rrdbnet-x2": lambda: RRDBNet(scale=2, num_features=16, num_blocks=2, growth_channels=8),  # size_multiple 2
    "srvgg-x4": lambda: SRVGGNetCompact(scale=4, num_features=16, num_convs=8),
}


@pytest.mark.parametrize("name", sorted(TILED_MODELS))
def test_tiled_matches_untiled(datasets_root, name):
    model = TILED_MODELS[name]().eval()
    lq = _set5_crop(datasets_root)
    full = tiled_forward(model, lq, tile=0)
    assert full.shape == (1, 3, 97 * model.scale, 83 * model.scale)
    for tile, overlap in ((40, 14), (48, 16), (64, 20)):  # none divides 97 or 83
        tiled = tiled_forward(model, lq, tile=tile, tile_overlap=overlap)
        difference = (tiled - full).abs().max().item()
        assert difference < 1 / 255, f"{name} tile {tile}: max abs difference {difference * 255:.3f}/255"
    # Without overlap the tiles' borders show: the check above can fail.
    seams = (tiled_forward(model, lq, tile=40, tile_overlap=0) - full).abs().max().item()
    assert seams > 1 / 255, seams


@pytest.mark.slow
def test_tiled_matches_untiled_real_weights(datasets_root):
    model = srhub.load("realesr-animevideov3-x4")
    lq = _set5_crop(datasets_root, 120, 100)
    full = tiled_forward(model, lq, tile=0)
    for tile in (72, 96, 112):  # none divides 120 or 100
        difference = (tiled_forward(model, lq, tile=tile, tile_overlap=32) - full).abs().max().item()
        assert difference < 1 / 255, f"tile {tile}: {difference * 255:.3f}/255"


# ---------------------------------------------------------------------- memory, precision, threads
class Limited(Bicubic):
    """Raises the CUDA out-of-memory error for inputs over ``limit`` pixels; records input sizes."""

    def __init__(self, limit, error=torch.OutOfMemoryError):
        super().__init__()
        self.limit, self.error, self.sizes = limit, error, []

    def forward(self, lq):
        if lq.shape[-1] * lq.shape[-2] > self.limit:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.sizes.append(tuple(lq.shape[-2:]))
        return super().forward(lq)


def test_out_of_memory_halves_the_tile():
    lq = torch.rand(1, 3, 70, 60)
    model = Limited(limit=40 * 40).eval()
    with pytest.warns(UserWarning, match="out of memory"):
        out = tiled_forward(model, lq, tile=0, tile_overlap=8)
    assert max(h * w for h, w in model.sizes) <= 40 * 40
    reference = Bicubic()(lq)
    assert (out - reference).abs().max().item() < 1 / 255


def test_out_of_memory_message_form_and_floor():
    lq = torch.rand(1, 3, 40, 40)
    model = Limited(limit=10, error=lambda m: RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)")).eval()
    with pytest.raises(TileOutOfMemory, match="even with 20px tiles"), pytest.warns(UserWarning):
        tiled_forward(model, lq, tile=0)


def test_other_errors_are_not_swallowed():
    model = Limited(limit=10, error=ValueError)
    with pytest.raises(ValueError):
        tiled_forward(model, torch.rand(1, 3, 20, 20), tile=0)


class Overflows(nn.Module):
    """Fine in float32, overflows in float16: the gain 1e5 is beyond float16's range (65504)."""

    scale = 2
    size_multiple = 1

    def __init__(self, black=False):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(1e5), requires_grad=False)
        self.black = black

    def forward(self, lq):
        up = F.interpolate(lq, scale_factor=2, mode="nearest")
        if self.black:  # overflow that ends in zeros instead of inf/NaN
            return torch.where(torch.isfinite(self.gain), up, torch.zeros_like(up))
        return up * self.gain / self.gain


@pytest.mark.parametrize("black", [False, True])
def test_half_overflow_is_recomputed_in_float32(black):
    model = Overflows(black)
    lq = torch.rand(1, 3, 20, 20)
    with pytest.warns(UserWarning, match="recomputed in float32"):
        out = tiled_forward(model, lq, tile=0, precision="fp16", device="cpu")
    torch.testing.assert_close(out, F.interpolate(lq, scale_factor=2, mode="nearest"))
    assert model.gain.dtype == torch.float32  # the shared model was not cast


def test_precision_choice():
    model = SRVGGNetCompact(scale=4, num_features=8, num_convs=2)
    assert resolve_dtype("auto", torch.device("cpu"), model) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda"), model) == torch.float16
    assert resolve_dtype("auto", torch.device("mps"), model) == torch.float16
    assert resolve_dtype("bf16", torch.device("cpu"), model) == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        resolve_dtype("int8", torch.device("cpu"), model)


def test_bfloat16_on_cpu_is_close(datasets_root):
    model = SRVGGNetCompact(scale=4, num_features=16, num_convs=4).eval()
    lq = _set5_crop(datasets_root, 32, 32)
    fp32 = tiled_forward(model, lq, tile=0)
    bf16 = tiled_forward(model, lq, tile=0, precision="bf16")
    assert (bf16 - fp32).abs().max().item() < 4 / 255
    assert next(model.parameters()).dtype == torch.float32


def test_prepared_copy_is_cached_and_refreshed():
    model = SRVGGNetCompact(scale=4, num_features=8, num_convs=2).eval()
    assert _prepared(model, torch.device("cpu"), torch.float32) is model
    first = _prepared(model, torch.device("cpu"), torch.bfloat16)
    assert first is not model and _prepared(model, torch.device("cpu"), torch.bfloat16) is first
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # an optimizer step: the cached copy is stale now
    assert _prepared(model, torch.device("cpu"), torch.bfloat16) is not first


def test_threads_share_one_model():
    model = SRVGGNetCompact(scale=4, num_features=8, num_convs=3).eval()
    images = [torch.rand(3, 30 + 3 * i, 26) for i in range(4)]
    expected = [upscale(image, model=model, tile=16, tile_overlap=4, precision=p) for image in images for p in ("fp32", "bf16")]
    results, errors = [None] * len(expected), []

    def work(index):
        try:
            results[index] = upscale(images[index // 2], model=model, tile=16, tile_overlap=4, precision=("fp32", "bf16")[index % 2])
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(expected))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for got, want in zip(results, expected):
        assert torch.equal(got, want)
    assert all(p.dtype == torch.float32 for p in model.parameters())


# ---------------------------------------------------------------------- image kinds and options
def test_pil_modes_round_trip():
    model = Bicubic()
    rgb = PILImage.new("RGB", (12, 10), (30, 60, 90))
    assert upscale(rgb, model=model).size == (24, 20)
    assert upscale(rgb.convert("L"), model=model).mode == "L"
    assert upscale(rgb.convert("LA"), model=model).mode == "LA"
    assert upscale(rgb.convert("RGBA"), model=model).mode == "RGBA"
    assert upscale(rgb.quantize(8), model=model).mode == "RGB"
    assert upscale(rgb.convert("CMYK"), model=model).mode == "RGB"
    grey16 = PILImage.frombytes("I;16", (12, 10), np.full((10, 12), 40000, dtype="<u2").tobytes())
    out = upscale(grey16, model=model)
    assert out.mode == "I;16" and int(np.asarray(out).max()) == 40000


def test_numpy_and_tensor_kinds():
    model = Bicubic()
    u16 = np.full((8, 9, 3), 1000, dtype=np.uint16)
    out = upscale(u16, model=model)
    assert out.dtype == np.uint16 and out.shape == (16, 18, 3) and int(out.max()) == 1000
    grey = np.random.default_rng(0).random((8, 9)).astype(np.float32)
    out = upscale(grey, model=model)
    assert out.dtype == np.float32 and out.shape == (16, 18)
    batch = torch.rand(2, 4, 8, 9, dtype=torch.float64)
    out = upscale(batch, model=model)
    assert out.shape == (2, 4, 16, 18) and out.dtype == torch.float64
    assert upscale(torch.rand(1, 8, 9), model=model).shape == (1, 16, 18)
    with pytest.raises(TypeError):
        upscale([1, 2, 3], model=model)


def test_16bit_png_file_stays_16bit(tmp_path):
    import png

    array = np.random.default_rng(4).integers(0, 65536, size=(12, 10, 3), dtype=np.uint16)
    png.from_array(array.reshape(12, 30), mode="RGB;16").save(str(tmp_path / "deep.png"))
    result = upscale(read_image(tmp_path / "deep.png"), model=Bicubic())
    srhub.write_image(result, tmp_path / "deep_x2.png")
    again = read_image(tmp_path / "deep_x2.png")
    assert again.bit_depth == 16 and (again.height, again.width) == (24, 20)
    assert (again.to_numpy() % 257 != 0).mean() > 0.9  # not 8-bit values stretched to 16 bits


def test_alpha_edges_do_not_halo():
    # Opaque red square on a transparent background whose hidden colour is bright green.
    rgba = np.zeros((24, 24, 4), dtype=np.uint8)
    rgba[..., 1] = 255
    rgba[8:16, 8:16] = (255, 0, 0, 255)
    for alpha in ("model", "bicubic"):
        out = upscale(rgba, model=Bicubic(), alpha=alpha).astype(float) / 255
        visible = out[..., 3] > 0.05
        assert visible.sum() > 16 * 16
        assert out[..., 1][visible].max() < 2 / 255, alpha  # no green on the square's edges
        assert out[..., 0][visible].min() > 0.9, alpha
    # Upscaling the straight (non-premultiplied) colour would have bled green in: the check can fail.
    naive = F.interpolate(torch.from_numpy(rgba / 255.0).permute(2, 0, 1)[None], scale_factor=2, mode="bicubic")[0]
    assert naive[1][naive[3] > 0.05].max() > 0.2


def test_outscale_any_factor():
    model = Bicubic()
    image = torch.rand(3, 20, 16)
    assert upscale(image, model=model, outscale=2.5).shape == (3, 50, 40)
    assert upscale(image, model=model, outscale=0.5).shape == (3, 10, 8)
    torch.testing.assert_close(upscale(image, model=model, outscale=2), upscale(image, model=model))
    for bad in (0, -1.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="outscale"):
            upscale(image, model=model, outscale=bad)


def test_tiny_images_are_refused():
    for size in ((1, 1), (3, 10)):
        with pytest.raises(ImageTooSmall, match="too small"):
            upscale(PILImage.new("RGB", size), model=Bicubic())


def test_bad_model_and_options():
    with pytest.raises(ValueError, match="scale"):
        upscale(torch.rand(3, 8, 8), model=nn.Identity())
    with pytest.raises(ValueError, match="not a generator"):
        upscale(torch.rand(3, 8, 8), model=srhub.VGGStyleDiscriminator(num_features=8))
    with pytest.raises(ValueError, match="alpha"):
        upscale(torch.rand(3, 8, 8), model=Bicubic(), alpha="nearest")
    with pytest.raises(ValueError, match="tile"):
        upscale(torch.rand(3, 8, 8), model=Bicubic(), tile=4)


# ---------------------------------------------------------------------- files and the CLI
@pytest.fixture()
def model_folder(tmp_path):
    folder = tmp_path / "model"
    srhub.SRCNN(scale=2, num_features=8, hidden_features=4, color_mode="rgb").save_pretrained(folder)
    return folder


def test_cli_folder_with_a_bad_file(tmp_path, model_folder, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    PILImage.new("RGB", (20, 16), (200, 100, 50)).save(inputs / "a.png")
    PILImage.new("L", (18, 14), 80).save(inputs / "b.jpg")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (inputs / "notes.txt").write_text("not an image, and not picked up from a folder")
    out = tmp_path / "out"
    argv = ["upscale", str(inputs), "-o", str(out), "--model", str(model_folder), "--tile", "16", "--no-progress"]

    assert cli_main(argv) == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "2 written, 0 skipped, 1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.png", "b_x2.jpg"]  # nothing half-written
    assert PILImage.open(out / "a_x2.png").size == (40, 32)
    assert PILImage.open(out / "b_x2.jpg").mode == "L"

    (inputs / "broken.png").unlink()
    assert cli_main(argv) == 1  # outputs exist: refused per file, not overwritten silently
    assert "exists" in capsys.readouterr().err
    assert cli_main([*argv, "--skip-existing"]) == 0
    assert "0 written, 2 skipped" in capsys.readouterr().out
    assert cli_main([*argv, "--overwrite", "--format", "webp", "--suffix", "_big", "--outscale", "3"]) == 0
    assert PILImage.open(out / "a_big.webp").size == (60, 48)


def test_single_file_to_file_and_missing_input(tmp_path, model_folder):
    source = tmp_path / "photo.png"
    PILImage.new("RGBA", (10, 10), (1, 2, 3, 128)).save(source)
    report = upscale_files([source, tmp_path / "missing.png"], tmp_path / "out", model=str(model_folder), progress=False)
    assert [p.name for p in report.written] == ["photo_x2.png"]
    assert len(report.failed) == 1 and "missing.png" in report.failed[0][1]
    report = upscale_files([source], tmp_path / "exact.png", model=str(model_folder), progress=False)
    assert read_image(tmp_path / "exact.png").alpha is not None
    with pytest.raises(ValueError, match="existing"):
        upscale_files([source], tmp_path, model=str(model_folder), existing="maybe")
