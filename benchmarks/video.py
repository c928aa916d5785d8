"""Video upscaling speed: srhub against OpenCV's dnn_superres and ncnn, each runtime in its own process.

For each case the same clip (frames panned across photos-43 pictures, resized to the
low resolution and encoded as H.264 CRF 16) is given to every runtime, each in a fresh
``python benchmarks/video.py --worker ...`` process with the same thread count:

* **SR fps**: the frames decoded first, then only the super-resolution stage timed
  (srhub: the same frame path ``upscale_video`` uses, YUV planes in and out for luma
  models; OpenCV: ``DnnSuperResImpl.upsample`` on BGR frames, which also runs the
  network on Y and resizes chroma bicubically; ncnn: the released graph on RGB).
* **end-to-end fps**: decode + SR + encode into H.264 yuv420p CRF 18 (preset given by
  ``--preset``). srhub runs ``srhub.upscale_video``, whose three stages overlap in
  threads; the peers run the obvious serial loop (decode a frame, upsample, encode).
* **mean abs/255**: srhub's fast path against its own float32 eager output (luma
  models: the Y plane of the frame path; others: RGB), the acceptance bound being 0.5.

Cases: espcn-x3 and fsrcnn-x3 (640x360 -> 1920x1080) against OpenCV's ESPCN_x3.pb /
FSRCNN_x3.pb (``../shared/peers/opencv-dnn-superres``), realesr-animevideov3-x4
(480x270 -> 1920x1080) against ncnn on the released graph.

    python benchmarks/video.py                          # all cases, 2 threads, 24 frames
    python benchmarks/video.py --cases espcn-x3 --frames 48 --threads 2
    python benchmarks/video.py --rss                    # RSS over a synthetic 2-minute 720p clip (espcn-x2)

Timings on a shared machine are noisy: compare runtimes within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from srhub.accel import cpu_description  # noqa: E402
DATASETS = Path(os.environ.get("SRHUB_DATASETS", ROOT.parent / "shared" / "datasets"))
PEERS = Path(os.environ.get("SRHUB_PEERS", ROOT.parent / "shared" / "peers"))
# name -> (low-resolution size, peer runtime, peer model file)
CASES = {
    "espcn-x3": ((640, 360), "opencv", "opencv-dnn-superres/ESPCN_x3.pb"),
    "fsrcnn-x3": ((640, 360), "opencv", "opencv-dnn-superres/FSRCNN_x3.pb"),
    "realesr-animevideov3-x4": ((480, 270), "ncnn", None),
}




# ---------------------------------------------------------------------- the test clip
def make_clip(path: Path, size: tuple[int, int], frames: int) -> Path:
    """``frames`` frames panning across photos-43 pictures, resized to ``size``, as H.264 CRF 16."""
    import av
    import numpy as np
    from PIL import Image

    photos = sorted((DATASETS / "photos-43").glob("*.png"))[:4]
    if not photos:
        sys.exit(f"no photos under {DATASETS / 'photos-43'} (set SRHUB_DATASETS)")
    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "16", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        per_photo = -(-frames // len(photos))
        index = 0
        for photo in photos:
            image = Image.open(photo).convert("RGB")
            scale = max(width * 1.25 / image.width, height * 1.1 / image.height)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
            for step in range(per_photo):
                if index == frames:
                    break
                left = round((image.width - width) * step / max(1, per_photo - 1))
                crop = np.asarray(image.crop((left, 0, left + width, height)))
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="rgb24")
                frame.pts = index
                out.mux(stream.encode(frame))
                index += 1
        out.mux(stream.encode(None))
    return path


def decode_all(path: Path) -> list:
    import av

    with av.open(str(path)) as container:
        return list(container.decode(video=0))


# ---------------------------------------------------------------------- workers (one process each)
def worker_srhub(args: argparse.Namespace) -> dict:
    import torch

    import srhub
    from srhub.video import _LumaFrames, _RGBFrames, is_luma_model, upscale_video

    torch.set_num_threads(args.threads)
    model = srhub.load(args.model).eval()
    frames = decode_all(Path(args.clip))
    width, height = frames[0].width * model.scale, frames[0].height * model.scale
    if is_luma_model(model):
        fast = _LumaFrames(model, fmt="yuv420p", size=(height, width), precision="auto", device="cpu", fast=True)
        exact = _LumaFrames(model, fmt="yuv420p", size=(height, width), precision="fp32", device="cpu", fast=False)
    else:
        options = {"fmt": "yuv420p", "size": (height, width), "deep": False, "device": "cpu", "tile": 0, "tile_overlap": 0}
        fast = _RGBFrames(model, precision="auto", fast=True, **options)
        exact = _RGBFrames(model, precision="fp32", fast=False, **options)
    batches = [frames[i : i + args.batch_size] for i in range(0, len(frames), args.batch_size)]
    fast(batches[0])  # warm-up: export, compile, static-shape compile
    fast(batches[0])
    started = time.perf_counter()
    outputs = [fast(batch) for batch in batches]
    sr_seconds = time.perf_counter() - started
    # Quality: the fast path's output planes against float32 eager PyTorch's, on the first batch.
    import numpy as np

    differences = []
    for got, want in zip(outputs[0], exact(batches[0])):
        a = got.to_ndarray(format="rgb24").astype(np.float32) if not is_luma_model(model) else got.to_ndarray()[:height].astype(np.float32)
        b = want.to_ndarray(format="rgb24").astype(np.float32) if not is_luma_model(model) else want.to_ndarray()[:height].astype(np.float32)
        differences.append(float(np.abs(a - b).mean()))
    with tempfile.TemporaryDirectory() as folder:
        report = upscale_video(args.clip, Path(folder) / "out.mp4", model=model, preset=args.preset,
                               batch_size=args.batch_size, progress=False)  # fmt: skip
    return {"sr_fps": len(frames) / sr_seconds, "e2e_fps": report.fps, "mean_abs": max(differences), "path": report.path}


def _encode_serially(frames, upsample, out_path: Path, rate: int, preset: str) -> float:
    """The peers' end-to-end loop: decode (already timed in), upsample, encode; returns seconds."""
    import av

    started = time.perf_counter()
    with av.open(str(out_path), "w") as out:
        stream = None
        with av.open(str(frames)) as source:
            for frame in source.decode(video=0):
                sr = upsample(frame)
                if stream is None:
                    stream = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": preset})
                    stream.height, stream.width = sr.shape[:2]
                    stream.pix_fmt = "yuv420p"
                new = av.VideoFrame.from_ndarray(sr, format="bgr24" if sr.shape[2] == 3 else "rgb24")
                new.pts = frame.pts
                out.mux(stream.encode(new))
        out.mux(stream.encode(None))
    return time.perf_counter() - started


def worker_opencv(args: argparse.Namespace) -> dict:
    import cv2

    cv2.setNumThreads(args.threads)
    engine = cv2.dnn_superres.DnnSuperResImpl_create()
    engine.readModel(str(PEERS / CASES[args.model][2]))
    engine.setModel(args.model.split("-")[0], int(args.model.rsplit("x", 1)[1]))
    images = [frame.to_ndarray(format="bgr24") for frame in decode_all(Path(args.clip))]
    engine.upsample(images[0])
    started = time.perf_counter()
    for image in images:
        engine.upsample(image)
    sr_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        seconds = _encode_serially(args.clip, lambda f: engine.upsample(f.to_ndarray(format="bgr24")),
                                   Path(folder) / "out.mp4", 25, args.preset)  # fmt: skip
    return {"sr_fps": len(images) / sr_seconds, "e2e_fps": len(images) / seconds, "path": "cv2.dnn_superres"}


def worker_ncnn(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from srhub.convert import ncnn_net
    from srhub.pretrained import PRETRAINED, ncnn_source_files

    param, bin_path = ncnn_source_files(PRETRAINED[args.model])
    net = ncnn_net(param, bin_path, threads=args.threads)

    def upsample(frame) -> np.ndarray:
        rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float().div_(255)
        sr = net(rgb)[0].clamp_(0, 1).mul_(255).round_().byte().permute(1, 2, 0)
        return np.ascontiguousarray(sr.numpy())

    frames = decode_all(Path(args.clip))
    tensors = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1).float().div_(255) for f in frames]
    net(tensors[0])
    started = time.perf_counter()
    for tensor in tensors:
        net(tensor)
    sr_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        seconds = _encode_serially(args.clip, upsample, Path(folder) / "out.mp4", 25, args.preset)
    return {"sr_fps": len(frames) / sr_seconds, "e2e_fps": len(frames) / seconds, "path": "ncnn (CPU fp32)"}


def run_worker(runtime: str, model: str, clip: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", runtime, "--model", model, "--clip", str(clip),
               "--threads", str(args.threads), "--preset", args.preset, "--batch-size", str(args.batch_size)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- memory over a long clip
def rss_run(args: argparse.Namespace) -> None:
    import av
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "long.mp4"
        width, height, fps = 1280, 720, args.rss_fps
        total = int(args.rss_seconds * fps)
        print(f"making a synthetic {args.rss_seconds:g} s {width}x{height} clip at {fps} fps ({total} frames) ...", flush=True)
        y, x = np.mgrid[0:height, 0:width]
        with av.open(str(clip), "w") as out:
            stream = out.add_stream("libx264", rate=fps, options={"crf": "20", "preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(total):
                base = 128 + 90 * np.sin((x + 4 * i) / 23.0) * np.cos((y - 3 * i) / 31.0)
                rgb = np.stack([base, np.roll(base, 40, 1), 255 - base], -1).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        code = (
            "import sys, torch, srhub; torch.set_num_threads(int(sys.argv[3]));"
            "r = srhub.upscale_video(sys.argv[1], sys.argv[2], model=sys.argv[4], preset='ultrafast', progress=False);"
            "print(r.frames, round(r.fps, 2))"
        )
        command = [sys.executable, "-c", code, str(clip), str(Path(folder) / "out.mp4"), str(args.threads), args.rss_model]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        samples = []
        started = time.perf_counter()
        while process.poll() is None:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024
                samples.append((time.perf_counter() - started, rss))
            except (OSError, StopIteration):
                pass
            time.sleep(1.0)
        frames_fps = process.stdout.read().strip()
    if len(samples) < 10:
        sys.exit("the run was too short to sample")
    n = len(samples)
    marks = {f"{p}%": samples[min(n - 1, n * p // 100)] for p in (10, 25, 50, 75, 95)}
    print(f"{args.rss_model} on {total} frames of 1280x720 -> x{args.rss_model.rsplit('x', 1)[1]}, "
          f"{args.threads} threads; frames, fps: {frames_fps}")  # fmt: skip
    print("RSS (MiB) over the run: " + ", ".join(f"{k} ({t:.0f} s): {v:.0f}" for k, (t, v) in marks.items()))
    steady = [v for t, v in samples[n // 10 : n - max(2, n // 50)]]  # past warm-up, before teardown
    print(f"from 10% to the end of the run: min {min(steady):.0f} MiB, max {max(steady):.0f} MiB, "
          f"growth {steady[-1] - steady[0]:+.0f} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=24, help="frames in the test clip (default 24)")
    parser.add_argument("--preset", default="medium", help="x264 preset for the end-to-end runs (default medium)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rss", action="store_true", help="measure RSS over a long synthetic 720p clip instead")
    parser.add_argument("--rss-seconds", type=float, default=120.0)
    parser.add_argument("--rss-fps", type=int, default=10, help="frame rate of the synthetic clip (default 10)")
    parser.add_argument("--rss-model", default="espcn-x2")
    parser.add_argument("--worker", choices=["srhub", "opencv", "ncnn"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work = {"srhub": worker_srhub, "opencv": worker_opencv, "ncnn": worker_ncnn}[args.worker]
        print(json.dumps(work(args)))
        return
    print(f"CPU: {cpu_description()}; {args.threads} threads; load average {os.getloadavg()[0]:.1f}; "
          f"x264 preset {args.preset}; each runtime in its own process")  # fmt: skip
    if args.rss:
        rss_run(args)
        return
    header = f"{'model':24s} {'LR -> HR':>18s} {'runtime':10s} {'SR fps':>7s} {'end-to-end fps':>15s} {'SR x peer':>9s} {'mean abs/255':>12s}  path"
    print(header)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.cases:
            size, peer, _ = CASES[name]
            clip = make_clip(Path(folder) / f"{name}.mp4", size, args.frames)
            scale = int(name.rsplit("x", 1)[1])
            results = {"srhub": run_worker("srhub", name, clip, args), peer: run_worker(peer, name, clip, args)}
            for runtime, result in results.items():
                shape = f"{size[0]}x{size[1]}->{size[0] * scale}x{size[1] * scale}"
                if "error" in result:
                    print(f"{name:24s} {shape:>18s} {runtime:10s} failed: {result['error']}")
                    continue
                ratio = ""
                if runtime == "srhub" and "sr_fps" in results[peer]:
                    ratio = f"{result['sr_fps'] / results[peer]['sr_fps']:.2f}x"
                mean_abs = f"{result['mean_abs']:.3f}" if "mean_abs" in result else ""
                print(f"{name:24s} {shape:>18s} {runtime:10s} {result['sr_fps']:7.1f} {result['e2e_fps']:15.1f} "
                      f"{ratio:>9s} {mean_abs:>12s}  {result['path']}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
