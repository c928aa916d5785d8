"""Spreading ``srhub upscale`` and ``srhub video`` over processes started by ``accelerate launch``.

Under ``accelerate launch --num_processes N`` (``--multi_gpu``; on a machine without
GPUs that gives N CPU processes talking over gloo) every process runs the same command:

* **Images.** The sorted input files are dealt out round-robin (process ``i`` takes
  files ``i, i + N, ...``); each file is read and written by exactly one process. The
  reports are gathered, so the main process prints the totals.
* **A video.** Its keyframes are listed from the packets (no decoding) and the video is
  cut at keyframes into N segments of about equal packet counts. Each process upscales
  its segment into a video-only file; the main process then joins the segments'
  packets in order, without re-encoding, with the audio, subtitles, chapters and
  metadata copied from the input, into the output (written to a temporary name and
  renamed, as a single-process run is). With FFV1 (``--lossless``) the result is
  identical to a single-process run, packet for packet; with H.264 every frame and
  timestamp is kept, and the encoder restarts at each cut (an IDR frame there).
* **Progress.** Each process writes its count of finished items to a small file in a
  hidden folder next to the output; the main process shows one bar of their sum.
  (Several machines need that folder on a shared file system, as they need the output.)

Nothing here runs unless the ``WORLD_SIZE`` environment variable says there are
several processes; ``accelerate`` is imported only then.
"""

from __future__ import annotations

import heapq
import os
import shutil
import sys
import threading
import uuid
from pathlib import Path

import torch


def world():
    """Accelerate's ``PartialState`` when launched as several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


class _Progress:
    """Per-process counters in files, summed into one tqdm bar on the main process."""

    def __init__(self, folder: Path, state, *, total: int | None, desc: str, unit: str, enabled: bool) -> None:
        self.folder, self.state = folder, state
        self.done = 0
        self.stop = threading.Event()
        self.thread = None
        if state.is_main_process and enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()

    def add(self, count: int) -> None:
        self.done += count
        partial = self.folder / f".{self.state.process_index}.{uuid.uuid4().hex[:6]}"
        partial.write_text(str(self.done))
        os.replace(partial, self.folder / f"progress-{self.state.process_index}")

    def _total(self) -> int:
        total = 0
        for path in self.folder.glob("progress-*"):
            try:
                total += int(path.read_text() or 0)
            except (OSError, ValueError):
                pass
        return total

    def _poll(self) -> None:
        while not self.stop.wait(0.5):
            self.bar.update(self._total() - self.bar.n)

    def close(self) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()
            self.bar.update(self._total() - self.bar.n)
            self.bar.close()


def finish(state) -> None:
    """Tear down the process group once every process is done (after the last barrier).

    A process that exits with the gloo process group still alive can abort at exit
    ("terminate called without an active exception", seen once in a 2-process video run).
    """
    if state is None:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------- images
def upscale_files(inputs, output, *, state, progress: bool = True, **options):
    """:func:`srhub.inference.upscale_files` with the files dealt out among the processes; the gathered report."""
    from accelerate.utils import gather_object

    from . import inference

    files = inference.collect_inputs(inputs)
    mine = files[state.process_index :: state.num_processes]
    output = Path(output)
    single = len(files) == 1 and not Path(inputs[0]).is_dir()
    folder = (output.parent if single else output) / ".srhub-progress"
    if state.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    state.wait_for_everyone()
    bar = _Progress(folder, state, total=len(files), desc="upscaling", unit="image", enabled=progress)
    try:
        report = inference.upscale_files(
            [str(path) for path in mine], output, progress=False,
            on_file=bar.add, single=single, **options,
        )  # fmt: skip
    finally:
        state.wait_for_everyone()
        bar.close()
    reports = gather_object([report])
    state.wait_for_everyone()
    if state.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
    merged = inference.BatchReport()
    for part in reports:
        merged.written += part.written
        merged.skipped += part.skipped
        merged.failed += part.failed
    return merged


# ---------------------------------------------------------------------- a video
def keyframe_segments(path: str | os.PathLike, count: int) -> list[tuple[int, int | None]]:
    """At most ``count`` ``(start, end)`` pts ranges (``end`` None: to the end) cut at keyframes,
    of about equal packet counts, covering the first video stream."""
    from .video import _open_input

    container = _open_input(Path(path))
    try:
        stream = container.streams.video[0]
        keyframes, packets = [], 0
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            if packet.is_keyframe:
                keyframes.append((packets, packet.pts))
            packets += 1
    finally:
        container.close()
    if not keyframes:
        return [(0, None)]
    cuts = []
    for i in range(1, count):
        wanted = packets * i / count
        best = min(keyframes, key=lambda k: abs(k[0] - wanted))[1]
        if best not in cuts and best != keyframes[0][1]:
            cuts.append(best)
    cuts.sort()
    starts = [keyframes[0][1], *cuts]
    return [(start, starts[i + 1] if i + 1 < len(starts) else None) for i, start in enumerate(starts)]


def upscale_video(input, output, *, state, overwrite: bool = False, progress: bool = True, **options):
    """:func:`srhub.video.upscale_video` with the video cut into one segment per process and joined on the main one."""
    from . import video

    input, output = Path(input), Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists (use --overwrite)")
    segments = keyframe_segments(input, state.num_processes)
    folder = output.parent / f".{output.name}.segments"
    if state.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    state.wait_for_everyone()
    info = video.probe_video(input)
    bar = _Progress(folder, state, total=info.frames or None, desc=f"upscaling {input.name}", unit="frame",
                    enabled=progress)  # fmt: skip
    parts = [folder / f"segment-{i:04d}.mkv" for i in range(len(segments))]
    reports, error = [], None
    try:
        for i in range(state.process_index, len(segments), state.num_processes):
            reports.append(video.upscale_video(input, parts[i], segment=segments[i], progress=False,
                                               on_frames=bar.add, **options))  # fmt: skip
    except Exception as failure:  # noqa: BLE001 - every process must reach the barrier below
        error = failure
    state.wait_for_everyone()
    bar.close()
    from accelerate.utils import gather_object

    failures = gather_object([None if error is None else f"{type(error).__name__}: {error}"])
    frames = sum(r.frames for r in reports)
    totals = gather_object([frames])
    result = None
    try:
        if any(failures):
            if error is not None:
                raise error
            raise video.VideoError(f"{input}: another process failed: {next(f for f in failures if f)}")
        if state.is_main_process:
            join_segments(input, parts, output)
            first = reports[0]
            result = video.VideoReport(output, sum(totals), first.seconds, first.width, first.height, first.path)
    finally:
        state.wait_for_everyone()
        if state.is_main_process:
            shutil.rmtree(folder, ignore_errors=True)
    return result


def join_segments(input: Path, parts: list[Path], output: Path) -> None:
    """Write ``output``: the video packets of ``parts`` in order (no re-encoding) and every other stream,
    the chapters and metadata of ``input``; packets interleaved by time. Atomic, like ``upscale_video``."""
    import av

    from .video import _add_streams, discard_partial

    partial = output.with_name(f".{output.stem}.{uuid.uuid4().hex[:8]}.partial{output.suffix}")
    source = av.open(str(input))
    pieces = [av.open(str(part)) for part in parts]
    target = None
    try:
        target = av.open(str(partial), "w")
        video_out, copied = _add_streams(source, target, source.streams.video[0], video_template=pieces[0].streams.video[0])

        def video_packets():
            # Matroska stores no decoding time (dts) for the first packets of a stream with B-frames
            # (x264's first I and P frames). They get the ticks just before the first stored one, and
            # every dts is kept above the previous segment's last (the encoder restarted at each cut).
            last = None

            def settle(packet, wanted):
                nonlocal last
                dts = wanted if last is None else max(wanted, last + 1)
                packet.dts = min(dts, packet.pts) if packet.pts is not None else dts
                last = packet.dts
                return packet, video_out

            for piece in pieces:
                pending = []
                for packet in piece.demux(piece.streams.video[0]):
                    if packet.size == 0:
                        continue
                    if packet.dts is None and packet.pts is not None:
                        pending.append(packet)
                        continue
                    for i, early in enumerate(pending):
                        yield settle(early, packet.dts - (len(pending) - i))
                    pending = []
                    yield settle(packet, packet.dts)
                for i, early in enumerate(pending):  # a segment too short to store any dts
                    yield settle(early, min(p.pts for p in pending) - (len(pending) - i))

        def other_packets():
            for packet in source.demux([s for s in source.streams if s.index in copied]):
                if packet.size == 0 or packet.dts is None:
                    continue
                yield packet, copied[packet.stream.index]

        def timed(packets):
            for order, (packet, stream) in enumerate(packets):
                yield float(packet.dts * packet.time_base), order, packet, stream

        streams = [timed(video_packets())]
        if copied:
            streams.append(timed(other_packets()))
        for _, _, packet, stream in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
            packet.stream = stream
            target.mux(packet)
        target.close()
        target = None
        os.replace(partial, output)
    except BaseException:
        discard_partial(target, partial)
        raise
    finally:
        source.close()
        for piece in pieces:
            piece.close()
