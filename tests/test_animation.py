"""Animated GIF, WebP and APNG through ``srhub upscale``: every frame, its duration and the loop count kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

ROOT = Path(__file__).resolve().parents[1]


def _pattern(index: int, width: int, height: int) -> np.ndarray:
    """A textured RGB frame that changes with ``index``."""
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 60 * np.sin((x + 3 * index) / 5.0) * np.cos(y / 7.0)
    rgb = np.stack([base, np.roll(base, 7, axis=1), 255 - base], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _srhub(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srhub.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def _animated_gif(path: Path, count: int = 5) -> tuple[list[int], int]:
    from PIL import Image

    frames = [Image.fromarray(_pattern(i, 40, 32)).quantize(colors=64) for i in range(count)]
    durations = [60, 120, 80, 200, 40][:count]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=3, disposal=2)
    return durations, 3


@pytest.mark.parametrize("kind", ["gif", "webp", "png"])
def test_animations_keep_every_frame_their_durations_and_loop(tmp_path, kind):
    from PIL import Image

    source = tmp_path / "in" / "anim.gif"
    source.parent.mkdir()
    durations, loop = _animated_gif(source)
    if kind != "gif":  # the same animation as animated WebP / APNG
        with Image.open(source) as gif:
            frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(gif)]
        source = source.with_suffix(f".{kind}")
        frames[0].save(source, save_all=True, append_images=frames[1:], duration=durations, loop=loop, lossless=True)
    out = tmp_path / "out"
    result = _srhub("upscale", str(source.parent), "-o", str(out), "--model", "espcn-x2", "--no-progress")
    assert result.returncode == 0, result.stderr
    written = out / f"anim_x2.{kind}"
    with Image.open(written) as pil:
        assert pil.is_animated and pil.n_frames == len(durations)
        assert pil.size == (80, 64) and pil.info.get("loop") == loop
        got = []
        for i in range(pil.n_frames):
            pil.seek(i)
            pil.load()
            got.append(pil.info["duration"])
            # each frame is its own picture upscaled, not the first frame repeated
            reference = np.asarray(Image.fromarray(_pattern(i, 40, 32)).resize((80, 64), Image.BICUBIC), np.float32)
            assert np.abs(np.asarray(pil.convert("RGB"), np.float32) - reference).mean() < 25
        assert got == durations


def test_a_transparent_gif_keeps_its_transparency(tmp_path):
    frames = []
    for i in range(3):
        rgba = np.zeros((24, 24, 4), np.uint8)
        rgba[..., :3] = _pattern(i, 24, 24)
        rgba[4 + i : 16 + i, 4:16, 3] = 255  # an opaque square moving on a transparent background
        frames.append(Image.fromarray(rgba, "RGBA"))
    source = tmp_path / "sprite.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=[50, 70, 90], loop=0, disposal=2)
    result = _srhub("upscale", str(source), "-o", str(tmp_path / "sprite_x2.gif"), "--model", "espcn-x2", "--no-progress")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "sprite_x2.gif") as pil:
        assert pil.n_frames == 3 and pil.size == (48, 48)
        for i in range(3):
            pil.seek(i)
            alpha = np.asarray(pil.convert("RGBA"))[..., 3]
            assert alpha[0, 0] == 0 and alpha[2 * (10 + i), 20] == 255  # background clear, the square opaque
