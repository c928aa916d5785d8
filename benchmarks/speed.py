"""Inference speed: srhub's CPU paths against the ``ncnn`` package, each runtime alone in its own process.

For each model and input size, runs the ncnn graph (CPU, fp32, no Vulkan, no fp16
storage or arithmetic) and srhub's paths on the same input, each in a fresh
``python benchmarks/speed.py --worker ...`` process with the same thread count (two
runtimes in one process disturb each other: PyTorch's spinning OpenMP threads slowed
ncnn 10-50x, and even with passive waiting the shared process flattered srhub's
ratios). Prints the CPU model, the median time, output megapixels per second, the speed
ratio to ncnn, and each output's difference from srhub's float32 PyTorch output (mean
abs in 1/255 and PSNR on [0, 1]-clamped outputs).

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
    python benchmarks/speed.py --models realcugan-se-x2-denoise1x waifu2x-cunet-x2

Every runtime (ncnn, and each srhub path) is timed in a process of its own on the same inputs
and thread count. Real-CUGAN (``realcugan-se-x2-denoise1x``) and waifu2x (``waifu2x-cunet-x2``)
run against their ncnn graphs with the ncnn tools' whole-image padding.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import srhub
from srhub.accel import cpu_description  # noqa: E402
from srhub import accel

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




def time_worker(args: argparse.Namespace) -> None:
    """One runtime on one input, alone in this process: writes its output and prints its median time (JSON)."""
    torch.set_num_threads(args.threads)
    model = load_model(args.models[0])
    lq = photo_crop(args.sizes[0])
    start = time.perf_counter()
    if args.worker == "ncnn":
        run = ncnn_runner(args.models[0], args.threads)
    elif args.worker == "torch-fp32":
        run = accel._TorchRunner(model, autocast_bf16=False)  # float32 PyTorch, channels_last: the reference
    else:
        run = path_runner(model, args.worker)[1]
    ready = time.perf_counter() - start
    sr = run(lq)
    run(lq)  # second warm-up: OpenVINO compiles a shape seen twice statically
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run(lq)
        times.append(time.perf_counter() - start)
    np.save(args.output, sr.float().numpy())
    plan = accel.choose_plan(model, device="cpu", precision="auto") if args.worker == "auto" else FORCED.get(args.worker)
    print(json.dumps({"median": statistics.median(times), "ready": ready,
                      "plan": "-" if plan is None else f"{plan.runtime}/{plan.precision}"}))  # fmt: skip


def _run_worker(key: str, name: str, size: int, args: argparse.Namespace, output: Path) -> dict:
    command = [sys.executable, __file__, "--worker", key, "--models", name, "--sizes", str(size),
               "--threads", str(args.threads), "--repeats", str(args.repeats), "--output", str(output)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {result.returncode}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def cpu_benchmark(args: argparse.Namespace) -> None:
    print(f"CPU: {cpu_description()}; {args.threads} thread(s) per runtime, each runtime in its own process; "
          f"torch {torch.__version__}; runtimes: {', '.join(accel.installed_runtimes())}; "
          f"native bf16: {accel.cpu_has_native_bf16()}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    header = f"{'model':24s} {'LR':>7s} {'path':12s} {'plan':18s} {'median s':>9s} {'out MP/s':>9s} {'x ncnn':>7s} {'mean abs/255':>13s} {'PSNR dB':>8s}"
    print(header)
    summary = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            scale = load_model(name).scale
            has_ncnn = name in srhub.pretrained.PRETRAINED and srhub.pretrained.PRETRAINED[name].ncnn_files is not None
            for size in args.sizes or DEFAULT_SIZES.get(name, [64, 96, 256]):
                out_mp = size * size * scale**2 / 1e6
                keys = ["torch-fp32", *(["ncnn"] if has_ncnn else []), *args.paths]
                results, outputs = {}, {}
                for key in keys:
                    output = Path(folder) / f"{key}.npy"
                    results[key] = _run_worker(key, name, size, args, output)
                    if "error" not in results[key]:
                        outputs[key] = torch.from_numpy(np.load(output))
                reference = outputs.get("torch-fp32")
                for key in keys:
                    result = results[key]
                    if "error" in result:
                        print(f"{name:24s} {size:>3d}x{size:<3d} {key:12s} failed: {result['error']}", flush=True)
                        continue
                    seconds = result["median"]
                    ratio = results["ncnn"]["median"] / seconds if "median" in results.get("ncnn", {}) else float("nan")
                    sr = outputs[key]
                    mean_abs = float((sr - reference).abs().mean()) * 255 if reference is not None else float("nan")
                    db = psnr(sr, reference) if reference is not None else float("nan")
                    print(f"{name:24s} {size:>3d}x{size:<3d} {key:12s} {result['plan']:18s} {seconds:9.3f} {out_mp / seconds:9.3f} "
                          f"{ratio:7.2f} {mean_abs:13.4f} {db:8.1f}", flush=True)  # fmt: skip
                    if key == "auto":
                        summary.append((name, size, ratio, mean_abs, db))
    if summary:
        print("\nsrhub default path (auto) vs ncnn: acceptance is >= 1.5x, <= 0.5/255 mean abs, >= 45 dB")
        for name, size, ratio, mean_abs, db in summary:
            ok = (math.isnan(ratio) or ratio >= 1.5) and mean_abs <= 0.5 and db >= 45
            print(f"  {name:24s} {size:>3d}x{size:<3d} {ratio:5.2f}x  {mean_abs:.4f}/255  {db:.1f} dB  {'ok' if ok else 'MISS'}")


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
    parser.add_argument("--gpu", action="store_true", help="measure RRDBNet x4 on the GPU instead")
    parser.add_argument("--gpu-tile", type=int, default=256)
    parser.add_argument("--gpu-batch", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="torch.compile the GPU model")
    parser.add_argument("--cuda-graphs", action="store_true", help="replay the GPU model from a CUDA graph")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense fp16/bf16 peak, if not in the table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one runtime in this process (see cpu_benchmark)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        time_worker(args)
    elif args.gpu:
        gpu_benchmark(args)
    elif args.quality:
        quality_check(args)
    else:
        cpu_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
