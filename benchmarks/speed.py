"""Inference speed: srhub's CPU paths against the ``ncnn`` package, side by side in one process.

For each model and input size, runs the ncnn graph (CPU, fp32, no Vulkan, no fp16
storage or arithmetic) and srhub's paths on the same input, interleaving the repeats
(ncnn, srhub, ncnn, srhub, ...) so that load from other processes hits both alike.
Prints the median time, output megapixels per second, the speed ratio to ncnn, and
each output's difference from srhub's float32 PyTorch output (mean abs in 1/255
and PSNR on [0, 1]-clamped outputs).

Inputs are centre crops (64x64 ... 512x512) of a real photo (photos-43/0001,
1200x900), used as the low-resolution image. Models: realesrgan-x4plus and
realesr-animevideov3-x4 (srhub's conversions of the released ncnn weights, compared
with those same ncnn files) and BSRN x4 (deterministic random weights: speed only; no
ncnn graph exists, and pnnx cannot make one since ncnn has no layer for the
``torch.std`` in BSRN's channel attention, so srhub's paths are compared with
float32 PyTorch only).

Paths (``--paths``): ``auto`` is what ``srhub.upscale`` uses by default on this
machine (see ``srhub.accel``); ``torch-fp32`` is float32 PyTorch in channels_last,
timed once, and is the reference output (NCHW eager is slower still). The others
force one runtime and precision: ``torch-cl`` (channels_last, timed like the rest),
``torch-bf16`` (channels_last + bf16 autocast), ``ort`` (ONNX Runtime fp32), ``ov-fp32``, ``ov-bf16`` (OpenVINO),
``ov-mixed`` (OpenVINO, the model's ``mixed_bfloat16()`` copy; RRDBNet only).

``--quality`` times nothing: it runs each path on the 19 Set5/Set14 images at LR size
and prints each output's difference from float32 PyTorch, the median and the worst.

    python benchmarks/speed.py                       # the acceptance sizes, 2 threads
    python benchmarks/speed.py --models realesr-animevideov3-x4 --sizes 64 128 256 512
    python benchmarks/speed.py --paths auto ov-fp32 ov-bf16 ort torch-cl torch-bf16
    python benchmarks/speed.py --quality --models realesrgan-x4plus --paths auto ov-bf16  # on Set5/Set14
    python benchmarks/speed.py --gpu                 # GPU throughput of RRDBNet x4 (needs CUDA)
    python benchmarks/speed.py --isolated --models realcugan-se-x2-denoise1x waifu2x-cunet-x2  # one process each

Real-CUGAN (``realcugan-se-x2-denoise1x``) and waifu2x (``waifu2x-cunet-x2``) run against their
ncnn graphs with the ncnn tools' whole-image padding; ``--isolated`` times ncnn and srhub each in
its own process (``--runtime ncnn`` / ``--runtime srhub``, same inputs and threads).
"""

from __future__ import annotations

import os

# PyTorch's OpenMP threads spin after each op and starve ncnn's own OpenMP pool in the
# same process (ncnn then runs 10-50x slower); passive waiting makes the comparison fair.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import srhub  # noqa: E402
from srhub import accel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("SRHUB_DATASETS", ROOT.parent / "shared" / "datasets"))
PHOTO = "photos-43/0001_Dragonfly_by_Bolly.png"
DEFAULT_SIZES = {
    "realesrgan-x4plus": [64, 96, 256],
    "realesr-animevideov3-x4": [64, 96, 128, 256, 512],
    "bsrn-x4": [64, 96, 256, 512],
    "bsrn-s-x4": [64, 96, 256, 512],
    "realcugan-se-x2-denoise1x": [64, 128, 256],
    "waifu2x-cunet-x2": [64, 128, 256],
}
FORCED = {
    "torch-cl": accel.Plan("torch", "fp32", "cpu"),
    "torch-bf16": accel.Plan("torch", "bf16", "cpu"),
    "ort": accel.Plan("onnxruntime", "fp32", "cpu"),
    "ov-fp32": accel.Plan("openvino", "fp32", "cpu"),
    "ov-bf16": accel.Plan("openvino", "bf16", "cpu"),
    "ov-mixed": accel.Plan("openvino", "mixed", "cpu"),
}
#: Dense (no sparsity) fp16/bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets.
GPU_PEAK_TFLOPS = {"H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4,
                   "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "RTX 4090": 165.2}  # fmt: skip


def load_model(name: str) -> torch.nn.Module:
    if name == "bsrn-x4":
        torch.manual_seed(0)
        return srhub.BSRN(scale=4).eval()
    if name == "bsrn-s-x4" and name not in srhub.pretrained.PRETRAINED:  # srhub's own trained weights
        from srhub.models.base import load_safetensors

        folder = srhub.pretrained.package_weights_dir()
        record = json.loads(folder.joinpath(f"{name}.json").read_text())
        model = srhub.BSRNS(**record["config"])
        load_safetensors(model, str(folder.joinpath(f"{name}.safetensors")))
        return model.float().eval()
    return srhub.load(name).eval()


def photo_crop(size: int) -> torch.Tensor:
    image = Image.open(DATASETS / PHOTO).convert("RGB")
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
    h, w = pixels.shape[-2:]
    if size > min(h, w):
        sys.exit(f"{size} px is larger than the photo ({w}x{h})")
    top, left = (h - size) // 2, (w - size) // 2
    return pixels[None, :, top : top + size, left : left + size].contiguous()


def ncnn_runner(name: str, threads: int):
    """A callable running the released ncnn graph of ``name`` (with the ncnn tool's own padding and crop for
    Real-CUGAN and waifu2x, see ``srhub.convert.ncnn_tool_net``), or None when there is none."""
    from srhub.convert import ncnn_tool_net
    from srhub.pretrained import PRETRAINED, ncnn_source_files

    spec = PRETRAINED.get(name)
    if spec is None or spec.ncnn_files is None:
        return None
    param, bin_path = ncnn_source_files(spec)
    return ncnn_tool_net(param, bin_path, architecture=spec.architecture, scale=spec.scale, threads=threads)


def path_runner(model: torch.nn.Module, path: str) -> tuple[accel.Plan, accel.Runner]:
    """``(plan, runner)`` for a ``--paths`` entry: "auto" is what ``srhub.upscale`` picks, the rest are ``FORCED``."""
    cpu = torch.device("cpu")
    plan = accel.choose_plan(model, device=cpu, precision="auto") if path == "auto" else FORCED[path]
    return plan, accel.fast_forward(model, model, device=cpu, precision="auto", plan=plan)


def psnr(sr: torch.Tensor, reference: torch.Tensor) -> float:
    mse = float((sr.clamp(0, 1) - reference.clamp(0, 1)).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def cpu_benchmark(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"CPU: {args.threads} thread(s); torch {torch.__version__}; runtimes: {', '.join(accel.installed_runtimes())}; "
          f"native bf16: {accel.cpu_has_native_bf16()}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    records: list[dict] = []
    header = f"{'model':24s} {'LR':>7s} {'path':12s} {'plan':18s} {'median s':>9s} {'out MP/s':>9s} {'x ncnn':>7s} {'mean abs/255':>13s} {'PSNR dB':>8s}"
    print(header)
    summary = []
    for name in args.models:
        model = load_model(name)
        ncnn = ncnn_runner(name, args.threads) if args.runtime in ("both", "ncnn") else None
        reference_net = accel._TorchRunner(model, autocast_bf16=False)  # float32 PyTorch, channels_last
        runners = {}
        for path in args.paths if args.runtime in ("both", "srhub") else []:
            start = time.perf_counter()
            runners[path] = path_runner(model, path)
            print(f"  ({name}: {path} ready in {time.perf_counter() - start:.1f} s)", flush=True)
        for size in args.sizes or DEFAULT_SIZES.get(name, [64, 96, 256]):
            lq = photo_crop(size)
            out_mp = lq.shape[-2] * lq.shape[-1] * model.scale**2 / 1e6
            start = time.perf_counter()
            reference = reference_net(lq)
            eager_s = time.perf_counter() - start
            candidates = dict(runners)
            if ncnn is not None:
                candidates = {"ncnn": (None, ncnn), **candidates}
            outputs = {key: run(lq) for key, (_, run) in candidates.items()}  # warm-up, and the compared outputs
            for _, run in candidates.values():  # second warm-up: OpenVINO compiles a shape seen twice statically
                run(lq)
            times = {key: [] for key in candidates}
            for _ in range(args.repeats):
                for key, (_, run) in candidates.items():
                    start = time.perf_counter()
                    run(lq)
                    times[key].append(time.perf_counter() - start)
            medians = {key: statistics.median(values) for key, values in times.items()}
            rows = [("torch-fp32", None, eager_s, reference)] + [(k, candidates[k][0], medians[k], outputs[k]) for k in candidates]
            for key, seconds in medians.items():
                records.append({"model": name, "size": size, "path": key, "seconds": seconds})
            for key, plan, seconds, sr in rows:
                ratio = medians["ncnn"] / seconds if "ncnn" in medians else float("nan")
                plan_text = "-" if plan is None else f"{plan.runtime}/{plan.precision}"
                mean_abs = float((sr - reference).abs().mean()) * 255
                print(f"{name:24s} {size:>3d}x{size:<3d} {key:12s} {plan_text:18s} {seconds:9.3f} {out_mp / seconds:9.3f} "
                      f"{ratio:7.2f} {mean_abs:13.4f} {psnr(sr, reference):8.1f}", flush=True)  # fmt: skip
                if key == "auto":
                    summary.append((name, size, ratio, mean_abs, psnr(sr, reference)))
    if args.json:
        Path(args.json).write_text(json.dumps(records))
    if summary:
        print("\nsrhub default path (auto) vs ncnn: acceptance is >= 1.5x, <= 0.5/255 mean abs, >= 45 dB")
        for name, size, ratio, mean_abs, db in summary:
            ok = (math.isnan(ratio) or ratio >= 1.5) and mean_abs <= 0.5 and db >= 45
            print(f"  {name:24s} {size:>3d}x{size:<3d} {ratio:5.2f}x  {mean_abs:.4f}/255  {db:.1f} dB  {'ok' if ok else 'MISS'}")


def isolated_benchmark(args: argparse.Namespace) -> None:
    """Each runtime in its own process: ``--runtime ncnn`` then ``--runtime srhub``, same inputs and threads.

    The two child runs print their own tables; this prints the median-time ratios.
    """
    import subprocess
    import tempfile

    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in ("ncnn", "srhub"):
            out = Path(tmp) / f"{runtime}.json"
            command = [sys.executable, __file__, "--runtime", runtime, "--json", str(out), "--threads",
                       str(args.threads), "--repeats", str(args.repeats), "--models", *args.models, "--paths", *args.paths]
            if args.sizes:
                command += ["--sizes", *map(str, args.sizes)]
            print(f"--- {runtime} in its own process", flush=True)
            subprocess.run(command, check=True)
            for row in json.loads(out.read_text()):
                medians[(row["model"], row["size"], row["path"])] = row["seconds"]
    print(f"\nmedian seconds, each runtime in its own process ({args.threads} thread(s)):")
    for (name, size, path), seconds in medians.items():
        if path == "ncnn":
            continue
        ncnn = medians.get((name, size, "ncnn"))
        ratio = f"{ncnn / seconds:5.2f}x ncnn ({ncnn:.3f} s)" if ncnn else "no ncnn graph"
        print(f"  {name:26s} {size:>3d}x{size:<3d} {path:10s} {seconds:8.3f} s  {ratio}")


def quality_check(args: argparse.Namespace) -> None:
    """Each path's output against float32 PyTorch on the 19 Set5/Set14 images at LR size (x1/4 MATLAB bicubic)."""
    from srhub.data import BenchmarkDataset, mod_crop

    torch.set_num_threads(args.threads)
    items = [item for name in ("Set5", "Set14") for item in BenchmarkDataset(name, scale=4, data_root=DATASETS / "benchmark")]
    print(f"{'model':24s} {'path':10s} {'image':14s} {'LR':>9s} {'mean abs/255':>13s} {'PSNR dB':>8s}")
    for name in args.models:
        model = load_model(name)
        reference_net = accel._TorchRunner(model, autocast_bf16=False)
        for path in args.paths:
            plan, run = path_runner(model, path)
            errors = []
            for item in items:
                lq = mod_crop(item.lq, model.size_multiple)[None].contiguous()
                reference, sr = reference_net(lq), run(lq)
                errors.append((float((sr - reference).abs().mean()) * 255, psnr(sr, reference)))
                size = f"{lq.shape[-1]}x{lq.shape[-2]}"
                print(f"{name:24s} {path:10s} {item.name:14s} {size:>9s} {errors[-1][0]:13.4f} {errors[-1][1]:8.1f}", flush=True)
            worst_abs, worst_db = max(e[0] for e in errors), min(e[1] for e in errors)
            over = sum(e[0] > 0.5 for e in errors)
            under = sum(e[1] < 45 for e in errors)
            median_abs = statistics.median(e[0] for e in errors)
            print(f"  {name} {path} ({plan.runtime}/{plan.precision}): median {median_abs:.3f}/255, worst {worst_abs:.3f}/255 "
                  f"and {worst_db:.1f} dB; {over} of {len(errors)} images above 0.5/255, {under} below 45 dB\n")  # fmt: skip


def gpu_peak(name: str) -> float | None:
    for key in sorted(GPU_PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            return GPU_PEAK_TFLOPS[key]
    return None


def gpu_benchmark(args: argparse.Namespace) -> None:
    """RRDBNet x4 on batches of 256x256 LR tiles: fp16/bf16, channels_last, optional compile and CUDA graphs."""
    if not torch.cuda.is_available():
        sys.exit("--gpu needs a CUDA device")
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = args.peak_tflops or gpu_peak(name)
    model = load_model("realesrgan-x4plus")
    tile, batch = args.gpu_tile, args.gpu_batch
    flops = accel.conv_flops(model, (batch, 3, tile, tile))
    print(f"GPU: {name}; dense fp16/bf16 peak {peak or '?'} TFLOP/s; RRDBNet x4, {batch} x {tile}x{tile} tiles, "
          f"{flops / 1e12:.2f} TFLOP per batch (convolutions)")  # fmt: skip
    lq = torch.rand(batch, 3, tile, tile, device=device)
    for dtype in (torch.float16, torch.bfloat16):
        net = accel.make_runner(
            model, model.to(device, dtype).eval(), accel.Plan("torch", "fp16" if dtype == torch.float16 else "bf16", "cuda", cuda_graphs=args.cuda_graphs)
        )
        if args.compile:
            inner = net.net if isinstance(net, accel._CudaGraphRunner) else net
            inner.net = torch.compile(inner.net, mode="max-autotune-no-cudagraphs", dynamic=False)
        x = lq.to(dtype).contiguous(memory_format=torch.channels_last)
        for _ in range(3):
            net(x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.repeats):
            net(x)
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.repeats
        tflops = flops / seconds / 1e12
        share = f"{100 * tflops / peak:.1f}% of peak" if peak else "peak unknown (--peak-tflops)"
        print(f"  {str(dtype):15s} {seconds * 1000:8.1f} ms/batch  {batch * tile * tile * 16 / seconds / 1e6:8.1f} out MP/s  "
              f"{tflops:7.1f} TFLOP/s  {share}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--sizes", nargs="+", type=int, help="LR side lengths (default: per model)")
    parser.add_argument("--paths", nargs="+", default=["auto"], choices=["auto", *FORCED])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quality", action="store_true",
                        help="instead of timing, compare each path with float32 PyTorch on all Set5/Set14 images")
    parser.add_argument("--runtime", choices=["both", "ncnn", "srhub"], default="both",
                        help="time only ncnn or only srhub's paths (one runtime per process)")
    parser.add_argument("--isolated", action="store_true",
                        help="run ncnn and srhub each in its own process (via --runtime) and print the ratios")
    parser.add_argument("--json", help="also write the median times to this JSON file")
    parser.add_argument("--gpu", action="store_true", help="measure RRDBNet x4 on the GPU instead")
    parser.add_argument("--gpu-tile", type=int, default=256)
    parser.add_argument("--gpu-batch", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="torch.compile the GPU model")
    parser.add_argument("--cuda-graphs", action="store_true", help="replay the GPU model from a CUDA graph")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense fp16/bf16 peak, if not in the table")
    args = parser.parse_args()
    if args.gpu:
        gpu_benchmark(args)
    elif args.isolated:
        isolated_benchmark(args)
    elif args.quality:
        quality_check(args)
    else:
        cpu_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
