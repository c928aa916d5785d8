"""Image I/O: EXIF orientation, ICC, 16-bit, grey, alpha, palette, CMYK, and bad files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import png
import pytest
import torch
from PIL import Image as PILImage
from PIL import ImageCms, ImageOps

from srhub.io import (
    Image,
    ImageError,
    ImageTooLarge,
    UnreadableImage,
    _apply_orientation,
    from_numpy,
    read_image,
    write_image,
)

ORIENTATION = 0x0112


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _save(pil: PILImage.Image, path, **options):
    pil.save(path, **options)
    return path


# ---------------------------------------------------------------------- input kinds
def test_exif_rotated_jpeg_is_read_upright(tmp_path):
    stored = PILImage.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # left half red in the stored pixels
    exif = PILImage.Exif()
    exif[ORIENTATION] = 6  # display rotated 90 degrees clockwise: the stored left edge goes to the top
    path = _save(stored, tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)

    image = read_image(path)
    assert (image.width, image.height) == (20, 40)
    top, bottom = image.pixels[:, 5, 10], image.pixels[:, 35, 10]
    assert top[0] > 0.9 and top[2] < 0.1, top  # red on top
    assert bottom[2] > 0.9 and bottom[0] < 0.1, bottom
    assert image.format == "JPEG"
    # The tag is applied, so it must not survive into the output (or viewers would rotate twice).
    written = write_image(image, tmp_path / "out.jpg")
    assert PILImage.open(written).getexif().get(ORIENTATION, 1) == 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_array_orientation_matches_pillow(orientation):
    array = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    pil = PILImage.fromarray(array)
    exif = pil.getexif()
    exif[ORIENTATION] = orientation
    pil.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(pil))
    np.testing.assert_array_equal(_apply_orientation(array, orientation), expected)


def test_16bit_rgb_png_keeps_16_bits(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 65536, size=(9, 11, 3), dtype=np.uint16)
    path = tmp_path / "deep.png"
    png.from_array(array.reshape(9, 33), mode="RGB;16").save(str(path))  # written independently of srhub

    image = read_image(path)
    assert image.bit_depth == 16 and image.pixels.shape == (3, 9, 11)
    np.testing.assert_array_equal(image.to_numpy(), array)
    out = write_image(image, tmp_path / "copy.png")
    _, _, rows, info = png.Reader(filename=str(out)).asDirect()
    assert info["bitdepth"] == 16
    np.testing.assert_array_equal(np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(9, 11, 3), array)


def test_dark_16bit_png_is_16bit_by_dtype_not_values(tmp_path):
    # Every value below 256: a value-based test (max > 255) would call this 8-bit.
    array = np.arange(0, 200, dtype=np.uint16).reshape(10, 20)
    path = _save(PILImage.frombytes("I;16", (20, 10), array.astype("<u2").tobytes()), tmp_path / "dark.png")
    image = read_image(path)
    assert image.bit_depth == 16 and image.is_grayscale
    np.testing.assert_array_equal(image.to_numpy(), array)
    write_image(image, tmp_path / "dark_out.png")
    again = read_image(tmp_path / "dark_out.png")
    assert again.bit_depth == 16
    np.testing.assert_array_equal(again.to_numpy(), array)


def test_16bit_rgba_png_round_trip_with_icc(tmp_path):
    rng = np.random.default_rng(1)
    array = rng.integers(0, 65536, size=(6, 5, 4), dtype=np.uint16)
    icc = _srgb_icc()
    image = Image(*_pixels_alpha(array), bit_depth=16, icc_profile=icc)
    write_image(image, tmp_path / "rgba16.png")
    again = read_image(tmp_path / "rgba16.png")
    assert again.bit_depth == 16 and again.alpha is not None and again.icc_profile == icc
    np.testing.assert_array_equal(again.to_numpy(), array)
    assert PILImage.open(tmp_path / "rgba16.png").info["icc_profile"] == icc  # Pillow reads our iCCP chunk


def _pixels_alpha(array):
    tensor = torch.from_numpy(array.astype(np.float32) / 65535).permute(2, 0, 1)
    return tensor[:3].contiguous(), tensor[3:].contiguous()


def test_icc_profile_kept(tmp_path):
    icc = _srgb_icc()
    path = _save(PILImage.new("RGB", (8, 8), (10, 200, 30)), tmp_path / "tagged.png", icc_profile=icc)
    image = read_image(path)
    assert image.icc_profile == icc
    for name in ("out.png", "out.jpg", "out.webp"):
        write_image(image, tmp_path / name)
        assert PILImage.open(tmp_path / name).info.get("icc_profile") == icc, name


def test_grayscale_stays_grayscale(tmp_path):
    path = _save(PILImage.linear_gradient("L").resize((16, 12)), tmp_path / "grey.png")
    image = read_image(path)
    assert image.is_grayscale and image.alpha is None and image.bit_depth == 8
    write_image(image, tmp_path / "grey_out.png")
    assert PILImage.open(tmp_path / "grey_out.png").mode == "L"
    np.testing.assert_array_equal(np.asarray(PILImage.open(tmp_path / "grey_out.png")), np.asarray(PILImage.open(path)))


def test_grey_alpha(tmp_path):
    pil = PILImage.merge("LA", [PILImage.new("L", (8, 8), 100), PILImage.linear_gradient("L").resize((8, 8))])
    image = read_image(_save(pil, tmp_path / "la.png"))
    assert image.is_grayscale and image.alpha is not None
    write_image(image, tmp_path / "la_out.png")
    out = PILImage.open(tmp_path / "la_out.png")
    assert out.mode == "LA"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(pil))


def test_rgba_round_trip(tmp_path):
    array = np.random.default_rng(2).integers(0, 256, size=(7, 9, 4), dtype=np.uint8)
    image = read_image(_save(PILImage.fromarray(array), tmp_path / "rgba.png"))
    assert image.pixels.shape == (3, 7, 9) and image.alpha.shape == (1, 7, 9)
    np.testing.assert_array_equal(image.to_numpy(), array)


def test_palette_images(tmp_path):
    rgb = PILImage.new("RGB", (10, 10), (200, 30, 40)).quantize(4)
    image = read_image(_save(rgb, tmp_path / "p.png"))
    assert image.mode == "P" and image.pixels.shape[0] == 3 and image.alpha is None
    assert torch.allclose(image.pixels[:, 0, 0], torch.tensor([200, 30, 40]) / 255)

    transparent = rgb.copy()
    transparent.info["transparency"] = transparent.getpixel((0, 0))
    image = read_image(_save(transparent, tmp_path / "p_alpha.png", transparency=transparent.getpixel((0, 0))))
    assert image.alpha is not None and float(image.alpha.max()) == 0.0


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = PILImage.new("CMYK", (8, 8), (255, 0, 0, 0))  # pure cyan
    image = read_image(_save(cmyk, tmp_path / "cmyk.jpg", quality=100))
    assert image.mode == "CMYK" and image.pixels.shape == (3, 8, 8)
    r, g, b = image.pixels[:, 4, 4].tolist()
    assert r < 0.05 and g > 0.95 and b > 0.95  # cyan = (0, 255, 255) by the naive formula


def test_numpy_inputs():
    grey16 = np.full((5, 6), 1234, dtype=np.uint16)
    image = from_numpy(grey16)
    assert image.bit_depth == 16 and image.is_grayscale
    np.testing.assert_array_equal(image.to_numpy(), grey16)
    with pytest.raises(ImageError, match="shape"):
        from_numpy(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(ImageError, match="dtype"):
        from_numpy(np.zeros((4, 4), dtype=np.int64))
    with pytest.raises(ImageError, match="NaN"):
        from_numpy(np.full((4, 4), np.nan, dtype=np.float32))


def test_read_from_bytes():
    buffer = io.BytesIO()
    PILImage.new("RGB", (5, 4), (1, 2, 3)).save(buffer, format="PNG")
    image = read_image(buffer.getvalue())
    assert (image.width, image.height) == (5, 4) and image.source == "<bytes>"


# ---------------------------------------------------------------------- bad inputs
def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnreadableImage, match="empty.png: empty file"):
        read_image(tmp_path / "empty.png")


@pytest.mark.parametrize("bits", [8, 16])
def test_truncated_png(tmp_path, bits):
    array = np.random.default_rng(3).integers(0, 2**bits, size=(64, 64, 3), dtype=np.uint16 if bits == 16 else np.uint8)
    path = tmp_path / "whole.png"
    png.from_array(array.reshape(64, 192), mode=f"RGB;{bits}").save(str(path))
    data = path.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_text_file(tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all\n")
    with pytest.raises(UnreadableImage, match="notes.png: not an image"):
        read_image(tmp_path / "notes.png")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.png")
    with pytest.raises(UnreadableImage, match="folder"):
        read_image(tmp_path)


def test_pixel_limit(tmp_path):
    path = _save(PILImage.new("RGB", (100, 60)), tmp_path / "big.png")
    with pytest.raises(ImageTooLarge, match="100x60 = 6,000 pixels is over the limit of 5,000"):
        read_image(path, max_pixels=5000)
    assert read_image(path, max_pixels=None).width == 100


def test_pixel_limit_checked_before_decoding(tmp_path):
    # A tiny file whose header claims 60000 x 60000 pixels (a decompression bomb).
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(ImageTooLarge, match="bomb.png"):
        read_image(tmp_path / "bomb.png")


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old contents")
    image = from_numpy(np.zeros((4, 4, 3), dtype=np.uint8))

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("srhub.io.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_image(image, target)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary file left


def test_write_refuses_to_overwrite_and_unknown_extension(tmp_path):
    image = from_numpy(np.zeros((4, 4, 3), dtype=np.uint8))
    write_image(image, tmp_path / "a.png")
    with pytest.raises(FileExistsError):
        write_image(image, tmp_path / "a.png", overwrite=False)
    with pytest.raises(ImageError, match="unknown image extension"):
        write_image(image, tmp_path / "a.gifx")


def test_jpeg_output_of_rgba_is_composited_over_white(tmp_path):
    array = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    with pytest.warns(UserWarning, match="no alpha"):
        write_image(from_numpy(array), tmp_path / "flat.jpg")
    assert np.asarray(PILImage.open(tmp_path / "flat.jpg")).min() > 245
