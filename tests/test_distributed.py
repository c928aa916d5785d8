"""``srhub upscale`` and ``srhub video`` under ``accelerate launch`` with 2 CPU processes equal a 1-process run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("accelerate")

pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


def _launch(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes N -m srhub.cli ...``: N real processes, also on a CPU-only machine."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "srhub.cli", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)


def _single(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srhub.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_two_processes_share_a_folder_of_images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / "broken.png")
    (folder / "broken.png").write_bytes(b"not a png")
    two = _launch("upscale", str(folder), "-o", str(tmp_path / "two"), "--model", "espcn-x2", "--no-progress")
    one = _single("upscale", str(folder), "-o", str(tmp_path / "one"), "--model", "espcn-x2", "--no-progress")
    assert one.returncode == two.returncode == 1  # the broken file fails in both
    # One summary for the whole run, from the main process, counting every file once.
    assert two.stdout.count("written") == 1 and "5 written, 0 skipped, 1 failed" in two.stdout, two.stderr
    assert "5 written, 0 skipped, 1 failed" in one.stdout
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) == 5
    for name in names:
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "one" / name)), np.asarray(Image.open(tmp_path / "two" / name)))
    assert not list((tmp_path / "two").glob(".*"))  # no progress files left behind


def test_two_processes_split_a_video_at_keyframes_and_join_it(tmp_path):
    av = pytest.importorskip("av")
    from test_video import make_clip

    from srhub.distributed import keyframe_segments

    clip = make_clip(tmp_path / "in.mkv", pts_ms=[0, 40, 120, 130, 200, 280, 320, 400, 440, 520, 600, 640], gop=4)
    assert len(keyframe_segments(clip, 2)) == 2
    two = _launch("video", str(clip), "-o", str(tmp_path / "two.mkv"), "--model", "espcn-x2", "--lossless", "--no-progress")
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("->") == 1  # one report, from the main process
    one = _single("video", str(clip), "-o", str(tmp_path / "one.mkv"), "--model", "espcn-x2", "--lossless", "--no-progress")
    assert one.returncode == 0, one.stderr

    def summary(path: Path):
        with av.open(str(path)) as container:
            streams = [(s.type, s.codec_context.name if s.codec_context else None) for s in container.streams]
            chapters = [c["metadata"]["title"] for c in container.chapters()]
            others = [(p.stream.type, p.pts, bytes(p)) for p in container.demux(container.streams.audio[0], container.streams.subtitles[0]) if p.size]
        with av.open(str(path)) as container:
            frames = [(f.pts, f.rotation, f.to_ndarray().tobytes()) for f in container.decode(video=0)]
        return streams, chapters, sorted(others, key=lambda x: (x[0], x[1])), frames

    joined, single = summary(tmp_path / "two.mkv"), summary(tmp_path / "one.mkv")
    assert joined[0] == single[0] == [("video", "ffv1"), ("audio", "aac"), ("subtitle", "srt")]
    assert joined[1] == single[1] == ["first", "second"]
    assert joined[2] == single[2]  # audio and subtitles, packet for packet
    assert len(joined[3]) == len(single[3]) == 12
    assert joined[3] == single[3]  # every frame identical, with its timestamp and the rotation
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no segments left behind


def test_two_processes_join_h264_segments_into_mp4(tmp_path):
    """H.264 with B-frames: Matroska segments store no dts for their first packets; the MP4 join must supply them."""
    av = pytest.importorskip("av")
    from test_video import make_clip

    clip = make_clip(tmp_path / "in.mkv", pts_ms=list(range(0, 800, 40)), gop=5, subtitle=None)
    two = _launch("video", str(clip), "-o", str(tmp_path / "two.mp4"), "--model", "espcn-x2", "--no-progress")
    assert two.returncode == 0, two.stderr
    one = _single("video", str(clip), "-o", str(tmp_path / "one.mp4"), "--model", "espcn-x2", "--no-progress")
    assert one.returncode == 0, one.stderr

    def frames(path: Path):
        with av.open(str(path)) as container:
            return [(float(f.pts * f.time_base), f.to_ndarray().astype(np.float32)) for f in container.decode(video=0)]

    joined, single = frames(tmp_path / "two.mp4"), frames(tmp_path / "one.mp4")
    assert [t for t, _ in joined] == [t for t, _ in single] == [i * 0.04 for i in range(20)]
    # The first segment is encoded exactly as in one process; after the cut the encoder restarts (CRF 18).
    assert all(np.abs(a - b).mean() < 4 for (_, a), (_, b) in zip(joined, single))
