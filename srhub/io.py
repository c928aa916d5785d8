"""Reading and writing images for super-resolution without the usual surprises.

``read_image`` turns a file (or its bytes) into an :class:`Image` record: float
pixels in [0, 1] plus what is needed to write the result back faithfully.

* **Orientation**: the EXIF Orientation tag is applied (``ImageOps.exif_transpose``),
  so a phone photo is upscaled the way it is displayed; the tag is then dropped.
* **Colour profile**: the ICC profile is kept and written into the output.
  CMYK is converted to RGB through its embedded ICC profile with LittleCMS
  (``ImageCms``) when there is one; without a profile Pillow's naive formula
  ``R = 255 - C - K`` (clipped) is used, which shifts colours.
* **Bit depth** comes from the decoded data type, never from pixel values: a
  16-bit PNG decodes to ``uint16`` (with ``pypng``, since Pillow keeps only
  8 bits of 16-bit colour PNGs) and is written back as a 16-bit PNG.
* **Channels**: grey stays grey (``pixels`` has one channel); alpha is kept
  apart, straight (not premultiplied), in ``alpha``; palette images become RGB
  or RGBA, ``1`` becomes grey, YCbCr/LAB/HSV become RGB.
* **Guards**: a pixel limit checked from the header before decoding
  (:class:`ImageTooLarge`, decompression bombs), empty, truncated, corrupt and
  non-image files (:class:`UnreadableImage`); every message names the file.

``write_image`` writes atomically (a temporary file in the target folder,
renamed over the target when complete), so a failure never leaves a
half-written image behind.
"""

from __future__ import annotations

import io
import os
import uuid
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import png  # pypng: 16-bit colour PNGs, which Pillow cannot hold
import torch
from PIL import Image as PILImage
from PIL import ImageCms, ImageOps, UnidentifiedImageError

#: Default limit on the number of pixels of an input (width * height), checked before decoding.
DEFAULT_MAX_PIXELS = 100_000_000
#: Images with a side shorter than this are refused by :func:`srhub.upscale`.
MIN_SIDE = 4
#: File extensions read when a folder is given, and written by ``write_image``.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
    """An image that cannot be read, written or processed; the message names the file."""


class UnreadableImage(ImageError):
    """An empty, truncated or corrupt file, or one that is not an image at all."""


class ImageTooLarge(ImageError):
    """An image with more pixels than the configured limit (a decompression-bomb guard)."""


class ImageTooSmall(ImageError):
    """An image too small to upscale (a side shorter than :data:`MIN_SIDE` pixels)."""


@dataclass(frozen=True)
class Image:
    """Decoded pixels plus the metadata needed to write an upscaled copy back.

    Attributes:
        pixels: ``(C, H, W)`` float32 tensor in [0, 1]; ``C`` is 1 (grey) or 3 (RGB).
        alpha: ``(1, H, W)`` float32 straight (not premultiplied) opacity, or None.
        bit_depth: 8 or 16 bits per channel, from the decoded data type.
        icc_profile: the embedded ICC profile (bytes) or None (sRGB assumed).
        exif: EXIF block with the Orientation tag already applied and removed, or None.
        source: file name (or ``"<bytes>"``, ``"<array>"`` ...) for error messages.
        format: the file format as Pillow names it ("PNG", "JPEG", ...) or None.
        mode: the Pillow mode of the original ("RGB", "P", "CMYK", "I;16", ...).
    """

    pixels: torch.Tensor
    alpha: torch.Tensor | None = None
    bit_depth: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    source: str = "<image>"
    format: str | None = None
    mode: str = "RGB"

    def __post_init__(self) -> None:
        if self.pixels.dim() != 3 or self.pixels.shape[0] not in (1, 3):
            raise ValueError(f"pixels must be (1 or 3, H, W), got {tuple(self.pixels.shape)}")
        if self.alpha is not None and (self.alpha.dim() != 3 or self.alpha.shape != (1, *self.pixels.shape[1:])):
            raise ValueError(f"alpha must be (1, H, W) matching pixels, got {tuple(self.alpha.shape)}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")

    @property
    def height(self) -> int:
        return self.pixels.shape[1]

    @property
    def width(self) -> int:
        return self.pixels.shape[2]

    @property
    def is_grayscale(self) -> bool:
        return self.pixels.shape[0] == 1

    def with_pixels(self, pixels: torch.Tensor, alpha: torch.Tensor | None) -> Image:
        """A copy with new pixels (and alpha), keeping the metadata."""
        return replace(self, pixels=pixels, alpha=alpha)

    def to_numpy(self, *, bit_depth: int | None = None) -> np.ndarray:
        """``(H, W)`` grey or ``(H, W, C)`` (C = 2, 3 or 4) ``uint8`` / ``uint16`` array, rounded."""
        depth = bit_depth or self.bit_depth
        channels = [self.pixels] if self.alpha is None else [self.pixels, self.alpha]
        array = _quantize(torch.cat(channels) if len(channels) > 1 else self.pixels, depth)
        return array[..., 0] if array.shape[-1] == 1 else array

    def to_pil(self) -> PILImage.Image:
        """A Pillow image: L, LA, RGB or RGBA (8-bit), or I;16 for 16-bit grey; ICC profile attached."""
        if self.bit_depth == 16 and self.is_grayscale and self.alpha is None:
            array = self.to_numpy().astype("<u2")
            pil = PILImage.frombytes("I;16", (self.width, self.height), array.tobytes())
        else:
            pil = PILImage.fromarray(self.to_numpy(bit_depth=8))
        if self.icc_profile:
            pil.info["icc_profile"] = self.icc_profile
        return pil


# ---------------------------------------------------------------------- conversions
def _quantize(pixels: torch.Tensor, bit_depth: int) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, C) uint8/uint16, converted in blocks to keep temporaries small."""
    maxval = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    out = np.empty((pixels.shape[1], pixels.shape[2], pixels.shape[0]), dtype=dtype)
    rows = max(1, 2**22 // max(1, pixels.shape[2]))  # about 4 M pixels at a time: small temporaries
    for c in range(pixels.shape[0]):
        for top in range(0, pixels.shape[1], rows):
            block = pixels[c, top : top + rows].float().clamp(0, 1).mul_(maxval).round_()
            out[top : top + rows, :, c] = block.numpy()
    return out


def _to_float(array: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) uint8/uint16 -> (C, H, W) float32 in [0, 1]."""
    maxval = 255.0 if array.dtype == np.uint8 else 65535.0
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(np.array(array.transpose(2, 0, 1), dtype=np.float32)).div_(maxval)


def _split(array: np.ndarray, has_alpha: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    tensor = _to_float(array)
    if has_alpha:
        return tensor[:-1].contiguous(), tensor[-1:].contiguous()
    return tensor, None


def _cmyk_to_rgb(pil: PILImage.Image, icc_profile: bytes | None) -> tuple[PILImage.Image, bytes | None]:
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            srgb = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(pil, source, srgb, outputMode="RGB"), None
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: use the naive formula below, as for untagged CMYK
    return pil.convert("RGB"), None


def from_pil(pil: PILImage.Image, *, source: str = "<PIL image>") -> Image:
    """An :class:`Image` from a Pillow image (no EXIF rotation here: :func:`read_image` does that)."""
    icc = pil.info.get("icc_profile") or None
    exif = pil.info.get("exif") or None
    mode = pil.mode
    if mode == "F":
        raise ImageError(f"{source}: 32-bit float images (mode F) are not supported")
    if mode.startswith("I;16") or mode == "I":
        array = np.asarray(pil)
        if mode == "I":  # 32-bit integer grey, e.g. 16-bit PNGs from old Pillow versions
            array = np.clip(array, 0, 65535)
        pixels, alpha = _split(array.astype(np.uint16), has_alpha=False)
        return Image(pixels, alpha, 16, icc, exif, source, pil.format, mode)
    if mode == "CMYK":
        pil, icc = _cmyk_to_rgb(pil, icc)
    elif mode in ("P", "PA"):
        pil = pil.convert("RGBA" if mode == "PA" or pil.has_transparency_data else "RGB")
    elif mode == "1":
        pil = pil.convert("L")
    elif mode in ("La",):
        pil = pil.convert("LA")
    elif mode in ("RGBa",):
        pil = pil.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        pil = pil.convert("RGBA" if "A" in pil.getbands() else "RGB")
    pixels, alpha = _split(np.asarray(pil), has_alpha=pil.mode in ("LA", "RGBA"))
    return Image(pixels, alpha, 8, icc, exif, source, pil.format, mode)


def from_numpy(array: np.ndarray, *, source: str = "<array>") -> Image:
    """An :class:`Image` from ``(H, W)`` or ``(H, W, C)`` (C = 1, 2, 3, 4: grey, grey+alpha, RGB, RGBA).

    ``uint8`` and ``uint16`` arrays keep their bit depth; float arrays are taken as [0, 1]
    (8-bit on output).
    """
    if not isinstance(array, np.ndarray):
        raise ImageError(f"{source}: expected a numpy array, got {type(array).__name__}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(f"{source}: expected an (H, W) or (H, W, C) array with C in 1..4, got shape {array.shape}")
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype in (np.uint8, np.uint16):
        bit_depth = 8 if array.dtype == np.uint8 else 16
        tensor = _to_float(array)
    elif np.issubdtype(array.dtype, np.floating):
        bit_depth = 8
        planes = (array if array.ndim == 3 else array[..., None]).transpose(2, 0, 1)
        tensor = torch.from_numpy(np.array(planes, dtype=np.float32))
        if not torch.isfinite(tensor).all():
            raise ImageError(f"{source}: the array holds NaN or infinite values")
    else:
        raise ImageError(f"{source}: unsupported dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")
    has_alpha = channels in (2, 4)
    pixels, alpha = (tensor[:-1], tensor[-1:]) if has_alpha else (tensor, None)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    return Image(pixels, alpha, bit_depth, None, None, source, None, mode)


# ---------------------------------------------------------------------- reading
def _check_pixels(width: int, height: int, max_pixels: int | None, source: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(
            f"{source}: {width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,} "
            "(raise max_pixels if the file is trusted)"
        )


def _png_bit_depth(data: bytes) -> int | None:
    if data[:8] == _PNG_SIGNATURE and len(data) >= 26 and data[12:16] == b"IHDR":
        return data[24]
    return None


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """The EXIF Orientation transform on an (H, W, C) array, as ``ImageOps.exif_transpose`` does it."""
    transforms = {
        2: lambda a: a[:, ::-1],  # mirror left-right
        3: lambda a: a[::-1, ::-1],  # rotate 180
        4: lambda a: a[::-1],  # mirror top-bottom
        5: lambda a: a.transpose(1, 0, 2),  # transpose
        6: lambda a: np.rot90(a, k=-1),  # rotate 90 clockwise
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # transverse
        8: lambda a: np.rot90(a, k=1),  # rotate 90 counter-clockwise
    }
    return np.ascontiguousarray(transforms[orientation](array)) if orientation in transforms else array


def _read_png16(data: bytes, pil: PILImage.Image, source: str) -> Image:
    """A 16-bit PNG through pypng (Pillow reduces 16-bit colour PNGs to 8 bits)."""
    try:
        width, height, rows, info = png.Reader(bytes=data).asDirect()
        array = np.vstack([np.asarray(row, dtype=np.uint16)[None] for row in rows])
    except (png.Error, zlib.error, ValueError, EOFError) as error:
        raise UnreadableImage(f"{source}: corrupt or truncated PNG ({error})") from error
    planes = info["planes"]
    array = array.reshape(height, width, planes)
    if info["bitdepth"] != 16:  # asDirect rescales sBIT; anything else is 8-bit after all
        return from_pil(pil, source=source)
    orientation = pil.getexif().get(0x0112, 1)
    array = _apply_orientation(array, orientation)
    pixels, alpha = _split(array, has_alpha=info["alpha"])
    mode = {1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[planes]
    return Image(pixels, alpha, 16, pil.info.get("icc_profile") or None, None, source, "PNG", mode)


def read_image(source: str | os.PathLike | bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image:
    """Read an image file (or its bytes) into an :class:`Image`, EXIF orientation applied.

    Args:
        source: a path, or the encoded bytes of an image file.
        max_pixels: refuse images with more pixels than this (checked from the header,
            before decoding); None for no limit of srhub's own (Pillow's limit of
            ``2 * PIL.Image.MAX_IMAGE_PIXELS`` still applies).

    Raises:
        FileNotFoundError: the path does not exist.
        UnreadableImage: empty, truncated or corrupt file, or not an image.
        ImageTooLarge: over ``max_pixels``.
        ImageError: a pixel format srhub does not handle (32-bit float).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "<bytes>"
    else:
        name = str(source)
        if os.path.isdir(name):
            raise UnreadableImage(f"{name}: is a folder, not an image file")
        data = Path(name).read_bytes()  # FileNotFoundError names the path
    if not data:
        raise UnreadableImage(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)  # our own limit governs
            pil = PILImage.open(io.BytesIO(data))
    except PILImage.DecompressionBombError as error:
        raise ImageTooLarge(f"{name}: {error}") from error
    except UnidentifiedImageError as error:
        raise UnreadableImage(f"{name}: not an image file (or a format Pillow cannot read)") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableImage(f"{name}: corrupt image header ({error})") from error
    _check_pixels(pil.width, pil.height, max_pixels, name)
    if pil.format == "PNG" and _png_bit_depth(data) == 16:
        return _read_png16(data, pil, name)
    fmt = pil.format
    try:
        pil.load()
        pil = ImageOps.exif_transpose(pil)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as error:
        raise UnreadableImage(f"{name}: corrupt or truncated image data ({error})") from error
    return replace(from_pil(pil, source=name), format=fmt)


# ---------------------------------------------------------------------- writing
def format_for(path: str | os.PathLike) -> str:
    """Pillow's format name for a file extension; ImageError for an unknown one."""
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        raise ImageError(f"{path}: unknown image extension {suffix!r}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    return _FORMATS[suffix]


def _png16_bytes(image: Image) -> bytes:
    array = image.to_numpy(bit_depth=16)
    height, width = array.shape[:2]
    planes = 1 if array.ndim == 2 else array.shape[2]
    writer = png.Writer(
        width=width, height=height, greyscale=planes in (1, 2), alpha=planes in (2, 4), bitdepth=16, compression=6
    )
    buffer = io.BytesIO()
    writer.write(buffer, array.reshape(height, width * planes))
    if not image.icc_profile:
        return buffer.getvalue()
    chunks = list(png.Reader(bytes=buffer.getvalue()).chunks())
    iccp = b"ICC profile\x00\x00" + zlib.compress(image.icc_profile)
    chunks.insert(1, (b"iCCP", iccp))  # right after IHDR, before IDAT as the spec requires
    out = io.BytesIO()
    png.write_chunks(out, chunks)
    return out.getvalue()


def _encode(image: Image, fmt: str, quality: int) -> bytes:
    if fmt == "PNG" and image.bit_depth == 16:
        return _png16_bytes(image)
    pil = image.to_pil()
    if pil.mode == "I;16" and fmt != "PNG":
        pil = PILImage.fromarray(image.to_numpy(bit_depth=8))
    if fmt in ("JPEG", "BMP") and pil.mode in ("LA", "RGBA"):
        warnings.warn(f"{fmt} has no alpha channel: the image is composited over white", stacklevel=3)
        background = PILImage.new(pil.mode, pil.size, "white")
        pil = PILImage.alpha_composite(background.convert("RGBA"), pil.convert("RGBA")).convert(pil.mode[:-1])
    options: dict = {}
    if image.icc_profile and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        options["icc_profile"] = image.icc_profile
    if image.exif and fmt in ("PNG", "JPEG", "WEBP"):
        options["exif"] = image.exif
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_image(
    image: Image, path: str | os.PathLike, *, quality: int = 95, overwrite: bool = True
) -> Path:
    """Write ``image`` to ``path`` atomically; the format follows the extension.

    16-bit images are written as 16-bit PNGs; JPEG, WebP, BMP and TIFF get 8 bits.
    JPEG and BMP cannot hold alpha: it is composited over white (with a warning).
    The ICC profile (and EXIF, orientation already applied) are embedded where the
    format allows. Nothing is left at ``path`` if encoding or writing fails.

    Args:
        quality: JPEG / WebP quality (1-100).
        overwrite: if False, raise ``FileExistsError`` when ``path`` exists.
    """
    path = Path(path)
    fmt = format_for(path)
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    data = _encode(image, fmt, quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    # os.open with 0o666 lets the umask decide the permissions, as for any new file (mkstemp would give 0600)
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
