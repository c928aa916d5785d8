"""Animated GIF, WebP and PNG (APNG): every frame upscaled, with its duration and the loop count.

``srhub upscale`` used to read only the first frame of an animation. Here Pillow
decodes each frame fully composited (the formats' disposal and blending applied, so
every frame is a complete picture), each goes through :func:`srhub.upscale` like any
image (alpha included), and the result is written as the same kind of animation with
the per-frame durations, the loop count and (for GIF) transparency kept. The file is
written to a temporary name and renamed, as ``write_image`` does.
"""

from __future__ import annotations

import io
import os
import uuid
import warnings
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageSequence, UnidentifiedImageError

from .io import ImageError, ImageTooLarge, UnreadableImage

#: Extensions whose files may be animated, and the Pillow format each is written as.
ANIMATED_FORMATS = {".gif": "GIF", ".webp": "WEBP", ".png": "PNG", ".apng": "PNG"}
#: Animations with more frames than this are refused (a bound on time and memory).
MAX_FRAMES = 10_000


def is_animated(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an animated GIF, WebP or PNG with more than one frame (False for anything unreadable)."""
    path = Path(path)
    if path.suffix.lower() not in ANIMATED_FORMATS or not path.is_file():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(path) as pil:
                return bool(getattr(pil, "is_animated", False)) and getattr(pil, "n_frames", 1) > 1
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return False


def upscale_animation(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    model,
    max_pixels: int | None = None,
    quality: int = 95,
    **options,
) -> int:
    """Upscale every frame of an animated GIF/WebP/PNG into ``target`` (same kind of file); returns the frame count.

    Args:
        model: as in :func:`srhub.upscale`.
        max_pixels: refuse frames with more pixels than this (per frame).
        quality: WebP quality (1-100); GIF and PNG are lossless containers.
        options: passed to :func:`srhub.upscale` (outscale, tile, precision, device, ...).
    """
    from .inference import upscale

    source, target = Path(source), Path(target)
    fmt = ANIMATED_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ImageError(f"{source}: is animated; write it as .gif, .webp or .png (not {target.suffix})")
    try:
        pil = PILImage.open(source)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise UnreadableImage(f"{source}: not an image file ({error})") from error
    with pil:
        if max_pixels is not None and pil.width * pil.height > max_pixels:
            raise ImageTooLarge(f"{source}: {pil.width}x{pil.height} is over the limit of {max_pixels:,} pixels")
        count = getattr(pil, "n_frames", 1)
        if count > MAX_FRAMES:
            raise ImageTooLarge(f"{source}: {count} frames is over the limit of {MAX_FRAMES}")
        loop = pil.info.get("loop", 0 if fmt != "GIF" else None)
        transparent = pil.info.get("transparency") is not None or pil.mode in ("RGBA", "LA", "PA")
        frames, durations = [], []
        try:
            for frame in ImageSequence.Iterator(pil):
                frame.load()  # WebP sets a frame's duration only once it is decoded
                durations.append(int(frame.info.get("duration", pil.info.get("duration", 100)) or 0))
                rgb = frame.convert("RGBA" if transparent or frame.mode in ("RGBA", "LA", "PA") else "RGB")
                frames.append(upscale(rgb, model=model, **options))
        except (OSError, EOFError, SyntaxError, ValueError) as error:
            if isinstance(error, ImageError):
                raise
            raise UnreadableImage(f"{source}: corrupt or truncated animation ({error})") from error
    save: dict = {"save_all": True, "append_images": frames[1:], "duration": durations}
    if loop is not None:
        save["loop"] = loop
    if fmt == "GIF":
        save["disposal"] = 2  # frames are complete pictures: clear before each
        if any(frame.mode == "RGBA" for frame in frames):
            frames = [_gif_frame(frame) for frame in frames]
            save["append_images"] = frames[1:]
            save["transparency"] = 255
    elif fmt == "WEBP":
        save["quality"] = quality
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, **save)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        temp.write_bytes(buffer.getvalue())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return len(frames)


def _gif_frame(frame: PILImage.Image) -> PILImage.Image:
    """An RGBA frame as a 255-colour palette image whose index 255 is transparent (alpha below half)."""
    alpha = frame.getchannel("A")
    paletted = frame.convert("RGB").quantize(colors=255)
    mask = alpha.point(lambda a: 255 if a < 128 else 0)
    paletted.paste(255, mask=mask)
    return paletted
