"""``srhub video`` and ``srhub.upscale_video``: tiny clips built with PyAV, upscaled through the CLI, read back."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

pytestmark = pytest.mark.video

ROOT = Path(__file__).resolve().parents[1]
MS = Fraction(1, 1000)
# Variable frame rate: irregular gaps between frames (milliseconds).
VFR_PTS = [0, 40, 120, 130, 300, 340, 420]


def _pattern(index: int, width: int, height: int) -> np.ndarray:
    """A textured RGB frame that changes with ``index`` (edges for the model, motion for the encoder)."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(index)
    base = 128 + 60 * np.sin((x + 3 * index) / 5.0) * np.cos(y / 7.0)
    rgb = np.stack([base, np.roll(base, 7, axis=1), 255 - base], axis=-1) + rng.normal(0, 8, (height, width, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def make_clip(
    path: Path,
    *,
    size: tuple[int, int] = (64, 48),
    pts_ms: list[int] = VFR_PTS,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    audio: bool = True,
    subtitle: str | None = "subrip",
    rotation: int = 90,
    chapters: bool = True,
    gop: int | None = None,
) -> Path:
    """A clip with VFR timestamps, BT.709 tags, a rotation, AAC audio, a subtitle and a chapter."""
    width, height = size
    out = av.open(str(path), "w")
    options = {"crf": "10"} if codec == "libx264" else {}
    if gop:
        options["g"] = str(gop)
    video = out.add_stream(codec, rate=25, options=options)
    video.width, video.height, video.pix_fmt = width, height, pix_fmt
    video.time_base = video.codec_context.time_base = MS
    context = video.codec_context
    context.colorspace, context.color_range, context.color_primaries, context.color_trc = 1, 1, 1, 1  # BT.709
    if rotation:
        video.set_display_rotation(rotation)
    sound = out.add_stream("aac", rate=16000) if audio else None
    text = None
    if subtitle:
        text = out.add_mux_stream(subtitle)
        text.time_base = MS
        text.metadata["language"] = "eng"
    if chapters:
        out.set_chapters([{"id": 1, "start": 0, "end": 200, "time_base": MS, "metadata": {"title": "first"}},
                          {"id": 2, "start": 200, "end": 400, "time_base": MS, "metadata": {"title": "second"}}])
    for i, pts in enumerate(pts_ms):
        frame = av.VideoFrame.from_ndarray(_pattern(i, width, height), format="rgb24")
        frame = frame.reformat(format=pix_fmt, dst_colorspace=1, dst_color_range=1)
        frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc = 1, 1, 1, 1
        frame.pts, frame.time_base = pts, MS
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    if sound is not None:
        rng = np.random.default_rng(0)
        for i in range(8):
            samples = (0.1 * rng.standard_normal((1, 1024))).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, i * 1024
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    if text is not None:
        for start, words in [(0, b"hello"), (200, b"world")]:
            packet = av.Packet(words)
            packet.stream, packet.pts, packet.dts, packet.duration, packet.time_base = text, start, start, 150, MS
            out.mux(packet)
    out.close()
    return path


def _srhub(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "srhub.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip


def _video_frames(path: Path) -> list:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def _packets(path: Path, kind: str) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [
            (float(p.pts * p.time_base) if p.pts is not None else None, bytes(p))
            for p in container.demux(stream) if p.size
        ]  # fmt: skip


def _stream_summary(path: Path) -> list[tuple[str, str | None]]:
    with av.open(str(path)) as container:
        return [(s.type, s.codec_context.name if s.codec_context else None) for s in container.streams]


def test_round_trip_keeps_streams_timing_rotation_and_colour(tmp_path):
    clip = make_clip(tmp_path / "in.mkv")
    out = tmp_path / "out.mkv"
    result = _srhub("video", str(clip), "-o", str(out), "--model", "espcn-x3", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "luma" in result.stdout  # ESPCN ran on the Y plane

    assert _stream_summary(out) == _stream_summary(clip) == [("video", "h264"), ("audio", "aac"), ("subtitle", "srt")]
    source, upscaled = _video_frames(clip), _video_frames(out)
    assert len(upscaled) == len(source) == len(VFR_PTS)
    assert [float(f.pts * f.time_base) for f in upscaled] == [p / 1000 for p in VFR_PTS]
    first = upscaled[0]
    assert (first.width, first.height, first.format.name) == (192, 144, "yuv420p")
    assert first.rotation == 90
    assert (first.colorspace, first.color_primaries, first.color_trc, first.color_range) == (1, 1, 1, 1)
    assert (source[0].colorspace, source[0].color_primaries) == (1, 1)
    # Audio and subtitles are copied packet for packet, with their timestamps.
    assert _packets(out, "audio") == _packets(clip, "audio")
    assert _packets(out, "subtitles") == _packets(clip, "subtitles") and len(_packets(out, "subtitles")) == 2
    with av.open(str(out)) as container:
        assert [c["metadata"]["title"] for c in container.chapters()] == ["first", "second"]
        assert container.streams.subtitles[0].language == "eng"
    # The picture is an upscaled copy of the input, not noise: close to a bicubic upscale of each frame.
    for low, high in zip(source, upscaled):
        y_low = torch.from_numpy(low.to_ndarray()[: low.height].astype(np.float32))[None, None]
        y_high = torch.from_numpy(high.to_ndarray()[: high.height].astype(np.float32))
        bicubic = torch.nn.functional.interpolate(y_low, scale_factor=3, mode="bicubic", align_corners=False)[0, 0]
        assert (y_high - bicubic).abs().mean() < 8


def test_mp4_with_mov_text_subtitles_and_an_rgb_model(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", subtitle="mov_text", pts_ms=[0, 33, 100, 133], chapters=False)
    out = tmp_path / "out.mp4"
    result = _srhub("video", str(clip), "-o", str(out), "--model", "realesr-animevideov3-x2", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "rgb" in result.stdout
    assert _stream_summary(out) == _stream_summary(clip)
    assert _packets(out, "audio") == _packets(clip, "audio")
    # MP4 fills gaps between cues with empty samples (a 2-byte zero length); the cues themselves are copied.
    cues = [_packets(path, "subtitles") for path in (out, clip)]
    assert [c for c in cues[0] if c[1] != b"\0\0"] == [c for c in cues[1] if c[1] != b"\0\0"] == [(0.0, b"hello"), (0.2, b"world")]
    frames = _video_frames(out)
    assert [float(f.pts * f.time_base) for f in frames] == [0, 0.033, 0.1, 0.133]
    assert (frames[0].width, frames[0].height, frames[0].rotation) == (128, 96, 90)


def test_ten_bit_input_gives_ten_bit_output_and_ffv1_is_lossless(tmp_path):
    clip = make_clip(tmp_path / "in.mkv", pix_fmt="yuv420p10le", audio=False, subtitle=None, pts_ms=[0, 40, 80])
    h264 = tmp_path / "out.mkv"
    assert _srhub("video", str(clip), "-o", str(h264), "--model", "fsrcnn-x2", "--no-progress").returncode == 0
    frames = _video_frames(h264)
    assert frames[0].format.name == "yuv420p10le" and len(frames) == 3
    # 10-bit samples really use 10 bits (not 8-bit values shifted).
    y = np.frombuffer(frames[1].planes[0], np.uint16)
    assert (y % 4 != 0).mean() > 0.3

    ffv1 = tmp_path / "lossless.mkv"
    result = _srhub("video", str(clip), "-o", str(ffv1), "--model", "fsrcnn-x2", "--lossless", "--no-progress")
    assert result.returncode == 0, result.stderr
    with av.open(str(ffv1)) as container:
        assert container.streams.video[0].codec_context.name == "ffv1"
    assert _video_frames(ffv1)[0].format.name == "yuv420p10le"


def test_bad_inputs_get_clear_errors_and_leave_nothing(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mkv"
    empty.touch()
    clip = make_clip(tmp_path / "clip.mp4", subtitle=None)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    audio_only = tmp_path / "audio.m4a"
    with av.open(str(audio_only), "w") as out:
        sound = out.add_stream("aac", rate=16000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    for bad, words in [(text, "not a video"), (empty, "empty"), (truncated, "not a video"), (audio_only, "no video stream"),
                       (tmp_path / "missing.mp4", "no such file")]:  # fmt: skip
        result = _srhub("video", str(bad), "-o", str(tmp_path / "out" / "x.mp4"), "--model", "espcn-x2", "--no-progress")
        assert result.returncode == 2, (bad, result.stderr)
        assert words in result.stderr and bad.name in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


class _FailsOnSecondBatch(torch.nn.Module):
    """A stand-in model that upscales one batch and then fails, as an interrupted run would."""

    scale = 2

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        return torch.nn.functional.interpolate(lq, scale_factor=2, mode="nearest")


def test_an_interrupted_run_leaves_no_file(tmp_path):
    from srhub.video import upscale_video

    clip = make_clip(tmp_path / "in.mkv", pts_ms=list(range(0, 400, 40)))
    out = tmp_path / "result" / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        upscale_video(clip, out, model=_FailsOnSecondBatch(), batch_size=2, progress=False)
    assert list((tmp_path / "result").iterdir()) == []  # neither the output nor its temporary file
    with pytest.raises(FileExistsError):
        upscale_video(clip, clip.with_name("in.mkv"), model="espcn-x2", progress=False)


def test_caps_on_duration_and_pixels(tmp_path):
    from srhub.video import VideoTooLarge, probe_video, upscale_video

    clip = make_clip(tmp_path / "in.mkv", pts_ms=list(range(0, 2000, 40)), audio=False, subtitle=None)
    info = probe_video(clip)
    assert (info.width, info.height) == (64, 48) and 1.9 < info.duration < 2.2
    with pytest.raises(VideoTooLarge, match="longer than the limit of 1 s"):
        upscale_video(clip, tmp_path / "a.mkv", model="espcn-x2", max_duration=1, progress=False)
    with pytest.raises(VideoTooLarge, match="over the limit"):
        upscale_video(clip, tmp_path / "b.mkv", model="espcn-x4", max_pixels=256 * 192 - 1, progress=False)
    assert not list(tmp_path.glob("[ab].mkv"))


def test_luma_path_matches_float32_within_half_a_level():
    """The fast luma path (OpenVINO, bf16 where the CPU has it) against eager float32 on the same Y planes."""
    import srhub
    from srhub.video import luma_runner

    model = srhub.load("espcn-x3")
    planes = np.stack([_pattern(i, 96, 64)[..., 1] for i in range(3)])[:, None]
    planes = np.round(16 + planes * 219 / 255).astype(np.uint8)  # limited range, as in a video's Y plane
    with torch.no_grad():
        reference = model.forward_luma(torch.from_numpy(planes).float() / 255).mul(255).round().clamp(0, 255)
    for precision in ("auto", "fp32"):
        run, description = luma_runner(model, precision=precision)
        fast = run(planes)
        assert fast.dtype == np.uint8 and fast.shape == (3, 1, 192, 288)
        difference = np.abs(fast.astype(np.float32) - reference.numpy()).mean()
        assert difference < (0.5 if precision == "auto" else 0.01), (description, difference)
    # 10-bit planes are 4x the 8-bit levels and come back as 10-bit levels.
    run10, _ = luma_runner(model, precision="fp32", bits=10)
    deep = run10(planes.astype(np.int16) * 4)
    assert deep.dtype == np.int16 and np.abs(deep / 4 - reference.numpy()).mean() < 0.3


@pytest.mark.parametrize("name", ["fsrcnn-x2", "fsrcnn-x3", "fsrcnn-x4", "espcn-x4"])
def test_fast_luma_copy_is_the_same_network(name):
    """FSRCNN's transposed convolution rewritten as a sub-pixel one gives the same output (float32)."""
    import srhub
    from srhub.video import _SubPixelDeconvolution, fast_luma_copy

    model = srhub.load(name).eval()
    rewritten = fast_luma_copy(model, bf16=False)
    assert any(isinstance(m, _SubPixelDeconvolution) for m in rewritten.modules()) == name.startswith("fsrcnn")
    y = torch.rand(2, 1, 23, 31) * 0.86 + 0.06
    with torch.no_grad():
        assert torch.allclose(model.forward_luma(y), rewritten.forward_luma(y), atol=1e-5)


def test_sub_pixel_rewrite_of_other_transposed_convolutions():
    from srhub.video import _SubPixelDeconvolution

    torch.manual_seed(0)
    for kernel, stride, padding in [(9, 2, 4), (4, 2, 1), (5, 3, 1), (3, 3, 0)]:
        deconv = torch.nn.ConvTranspose2d(5, 2, kernel, stride=stride, padding=padding)
        x = torch.randn(1, 5, 7, 9)
        expected = deconv(x)
        got = _SubPixelDeconvolution(deconv)(x)
        # The sub-pixel form gives H*s x W*s; the transposed convolution's own size may differ by its padding.
        h, w = min(expected.shape[2], got.shape[2]), min(expected.shape[3], got.shape[3])
        assert torch.allclose(expected[..., :h, :w], got[..., :h, :w], atol=1e-5), (kernel, stride, padding)
